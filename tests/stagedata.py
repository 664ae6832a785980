"""A tiny prepared dataset (manifest, split, cache) built with the library, no Snakemake, and
the typed settings of tiny runs."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from ilmoco.datasets.readers import read_manifest
from ilmoco.decode import build_cache
from ilmoco.io import write_csv, write_json
from ilmoco.settings import resolve
from ilmoco.split import make_split
from ilmoco.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def validated(cfg: dict) -> dict:
    """``cfg`` with every schema default filled in (what Snakemake's validate yields)."""
    from snakemake.utils import validate

    cfg = copy.deepcopy(cfg)
    validate(cfg, str(SCHEMA))
    return cfg


def demo_config() -> dict:
    return validated(yaml.safe_load((ROOT / "config.yaml").read_text()))


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


TINY = {
    "datasets": {"dr": {"format": "eyepacs_dr", "root": "unused"}},
    "use_datasets": ["dr"],
    "pretrain": {"epochs": 2, "batch_size": 8, "checkpoint_every": 3, "log_every": 2,
                 "val_max_images": 16, "device": "cpu", "progress": "quiet",
                 "moco": {"queue_size": 32, "bn_splits": 2}, "bt": {"projector": [16, 16, 16]},
                 "byol": {"dim": 16, "hidden": 32, "predictor_hidden": 32},
                 "knn": {"enabled": False}},
    "finetune": {"epochs": 4, "patience": 10, "batch_size": 8, "device": "cpu",
                 "log_every": 5, "progress": "quiet"},
    "bootstrap": {"resamples": 50},
}


def tiny_settings(variants: dict | None = None, methods=None, **over):
    """Typed settings of a tiny run on dataset ``dr``: the demo config with ``TINY`` and
    ``over`` (nested dicts merged) on top."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw.pop("datasets"), raw.pop("use_datasets")
    cfg = merge(merge(raw, TINY), over)
    if variants:
        cfg["variants"] = variants
    if methods:
        cfg["methods"] = methods
    return resolve(validated(cfg))


def prepare(tmp: Path, fmt="eyepacs_dr", n_patients=40, size=16, fractions=(6, 100)):
    root = tmp / "raw"
    generate(fmt, root, n_patients=n_patients, seed=3)
    df, meta = read_manifest(fmt, root)
    split = make_split(df, meta, seed=0, fractions=fractions)
    paths = {"root": root, "split": tmp / "split.csv", "meta": tmp / "dataset.json",
             "images": tmp / "images.npy", "index": tmp / "index.csv"}
    write_csv(paths["split"], split)
    write_json(paths["meta"], meta.to_dict())
    build_cache(df, meta, root, paths["images"], paths["index"], size=size, progress=False)
    return paths, meta
