"""A tiny prepared dataset (manifest, split, cache) built with the library, no Snakemake."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from ilmoco.cache import build_cache
from ilmoco.datasets import read_manifest
from ilmoco.io import write_csv, write_json
from ilmoco.split import make_split
from ilmoco.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]


def schema_defaults() -> dict:
    """The config with every schema default filled in (what Snakemake's validate yields)."""
    from snakemake.utils import validate

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(cfg, str(ROOT / "workflow/schemas/config.schema.yaml"))
    return cfg


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


def tiny_pretrain_cfg(**over) -> dict:
    cfg = copy.deepcopy(schema_defaults()["pretrain"])
    cfg.update(epochs=2, batch_size=8, checkpoint_every=3, log_every=2, val_max_images=16,
               device="cpu")
    cfg["moco"].update(queue_size=32, bn_splits=2)
    cfg["bt"].update(projector=[16, 16, 16])
    cfg.update(over)
    return cfg


def tiny_finetune_cfg(**over) -> dict:
    cfg = copy.deepcopy(schema_defaults()["finetune"])
    cfg.update(epochs=4, patience=10, batch_size=8, device="cpu", log_every=5)
    cfg.update(over)
    return cfg
