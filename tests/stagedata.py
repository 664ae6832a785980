"""A tiny prepared dataset (manifest, split, cache) built with the library, no Snakemake, the
typed settings of tiny runs, and the library's pieces by their registry names (a format's
reader and generator, a base's model, a term)."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import yaml

from ilmoco.config.backbones import backbone_ref
from ilmoco.config.bases import BASES
from ilmoco.config.formats import FORMATS
from ilmoco.config.resolve import resolve
from ilmoco.config.settings.pretrain import TermSpec
from ilmoco.config.terms import TERMS
from ilmoco.data.decode import build_cache
from ilmoco.data.readers import read_manifest
from ilmoco.data.split import make_split
from ilmoco.imports import load_object
from ilmoco.io import write_csv, write_json
from ilmoco.models.backbone import build_backbone

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def read_format(fmt: str, root, **options):
    """(manifest, meta) of ``root`` read as format ``fmt``, as the manifest stage reads it."""
    f = FORMATS[fmt]
    return read_manifest(fmt, f.reader, f.detect, root, {"on_missing": "error", **options},
                         {name: spec.detect for name, spec in FORMATS.items()
                          if not spec.generic})


def generate(fmt: str, root, **kwargs) -> None:
    """The synthetic dataset of format ``fmt`` (its registered generator)."""
    load_object(FORMATS[fmt].synthetic)(root, **kwargs)


TERM_DEFAULTS = {"pool": (2, 2, 1, 1), "projector": (8, 8, 8), "lambda_on": 5e-5,
                 "lambda_off": 5e-5, "scale": 1 / 32}


def term(kind="none", weights=(0.25,) * 4, **settings) -> TermSpec:
    """A resolved term of ``kind``: ``weights`` per block and small defaults for the rest of
    its settings (those it does not read are dropped)."""
    spec = TERMS[kind]
    if spec.settings is None:
        return TermSpec(kind, None, model=spec.model)
    values = {**TERM_DEFAULTS, **settings, "weights": tuple(weights)}
    fields = spec.settings.__dataclass_fields__
    return TermSpec(kind, spec.settings(**{k: v for k, v in values.items() if k in fields}),
                    model=spec.model)


def base_model(base: str, settings, term_spec: TermSpec, in_channels: int = 1,
               arch: str = "resnet18", zero_init_residual: bool = True):
    """The model of SSL base ``base`` (its registry entry) on a torchvision backbone."""
    backbone_fn = partial(build_backbone, backbone_ref(arch).builder, arch, in_channels,
                          zero_init_residual)
    return load_object(BASES[base].model)(backbone_fn, settings, term_spec)


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
    raw["finetune"].pop("epochs_by_fraction", None)  # one budget at every fraction
    cfg = merge(merge(raw, TINY), over)
    if variants:
        cfg["variants"] = variants
    if methods:
        cfg["methods"] = methods
    return resolve(validated(cfg))


def prepare(tmp: Path, fmt="eyepacs_dr", n_patients=40, size=16, fractions=(6, 100)):
    root = tmp / "raw"
    generate(fmt, root, n_patients=n_patients, seed=3)
    df, meta = read_format(fmt, root)
    split = make_split(df, meta, seed=0, fractions=fractions)
    paths = {"root": root, "split": tmp / "split.csv", "meta": tmp / "dataset.json",
             "images": tmp / "images.npy", "index": tmp / "index.csv"}
    write_csv(paths["split"], split)
    write_json(paths["meta"], meta.to_dict())
    build_cache(df, meta, root, paths["images"], paths["index"], size=size, progress=False)
    return paths, meta


class Crash(Exception):
    """A training job killed mid-run (tests of resume)."""


def crash_once_at(monkeypatch, step: int) -> None:
    """Make the training loop raise ``Crash`` the first time it reaches global ``step``
    (later runs, e.g. the resumed job, pass it)."""
    from ilmoco.training import loop, runtime

    real_step = runtime.step_generator
    crashed = {"done": False}

    def crashing(seed, at, device):
        if at == step and not crashed["done"]:
            crashed["done"] = True
            raise Crash()
        return real_step(seed, at, device)

    monkeypatch.setattr(loop, "step_generator", crashing)
