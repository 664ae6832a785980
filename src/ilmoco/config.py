"""Resolve per-dataset settings from the (schema-validated) config.

Settings a dataset entry leaves unset come from its format: the metric (macro AUC for NIH
and EyePACS, macro F1 for IDC, as the paper reports), the augmentation preset, and the image
size (``image_size_by_format``, which the ``paper`` preset sets to 512/255/299 px).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

FORMAT_DEFAULTS = {
    "nih_cxr14": {"metric": "macro_auc", "augment": "chest"},
    "idc_breast": {"metric": "f1_macro", "augment": "histo"},
    "eyepacs_dr": {"metric": "macro_auc", "augment": "retina"},
    "medmnist": {"metric": "macro_auc", "augment": "chest"},
}
METHOD_NAMES = {"supervised": "Supervised", "moco": "MoCo", "moco_mse": "MoCo+MSE",
                "moco_bt": "MoCo+BT"}
SSL_METHODS = ("moco", "moco_mse", "moco_bt")


def pct_name(pct: float) -> str:
    """1 -> '1', 6.0 -> '6', 0.5 -> '0.5' (the suffix of ``labeled_<pct>``)."""
    return f"{float(pct):g}"


def fraction_column(pct: float) -> str:
    return f"labeled_{pct_name(pct)}"


def dataset_settings(config: dict, name: str) -> dict:
    ds = dict(config["datasets"][name])
    fmt = ds["format"]
    defaults = FORMAT_DEFAULTS[fmt]
    ds["name"] = name
    ds["metric"] = ds.get("metric") or defaults["metric"]
    ds["augment"] = ds.get("augment") or defaults["augment"]
    if not ds.get("image_size"):
        ds["image_size"] = int(config["image_size_by_format"][fmt])
    return ds


def reader_options(ds: dict) -> dict:
    opts = {"on_missing": ds.get("on_missing", "error")}
    if ds["format"] == "eyepacs_dr" and ds.get("images_dir"):
        opts["images_dir"] = ds["images_dir"]
    if ds["format"] == "medmnist" and ds.get("file"):
        opts["file"] = ds["file"]
    return opts


def git_revision(start: Path | str = ".") -> str:
    """The repository's commit hash (with '+dirty' when modified), or 'unknown'."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=start, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=start, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
