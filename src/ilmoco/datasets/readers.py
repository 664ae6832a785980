"""Readers for the real on-disk layouts; each yields a manifest and its metadata."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ilmoco.datasets.base import DatasetMeta, require_dir
from ilmoco.datasets.eyepacs import present_halves, read_eyepacs_dr
from ilmoco.datasets.idc import looks_like_idc, read_idc_breast
from ilmoco.datasets.medmnist import read_medmnist
from ilmoco.datasets.nih import find_csv, read_nih_cxr14
from ilmoco.io import InputError

READERS = {
    "nih_cxr14": read_nih_cxr14,
    "idc_breast": read_idc_breast,
    "eyepacs_dr": read_eyepacs_dr,
    "medmnist": read_medmnist,
}


def detect_format(root) -> str | None:
    """The layout a root directory looks like, or None."""
    root = Path(root)
    if find_csv(root) is not None:
        return "nih_cxr14"
    if present_halves(root):
        return "eyepacs_dr"
    if any(root.glob("*.npz")):
        return "medmnist"
    if looks_like_idc(root):
        return "idc_breast"
    return None


def read_manifest(fmt: str, root, **options) -> tuple[pd.DataFrame, DatasetMeta]:
    """Read ``root`` as layout ``fmt``; refuse a root that does not look like that layout."""
    if fmt not in READERS:
        raise InputError(f"unknown dataset format {fmt!r}; known: {sorted(READERS)}")
    root = Path(root)
    require_dir(root, fmt)
    found = detect_format(root)
    if found != fmt:
        hint = f"it looks like {found}" if found else "it matches no known layout"
        raise InputError(
            f"dataset root {root} was declared format {fmt} but {hint}; "
            "check `root` and `format` in the config"
        )
    df, meta = READERS[fmt](root, **options)
    df["image_id"] = df["image_id"].astype(str)
    df["patient_id"] = df["patient_id"].astype(str)
    return df.reset_index(drop=True), meta
