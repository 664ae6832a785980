"""Read a dataset root in its public layout: check the layout, then the format's reader.

The reader module of a format is imported only when that format is read, so the manifest of
one format does not depend on another format's reader (``formats.READER_MODULES``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd

from ilmoco.datasets.base import DatasetMeta, require_dir
from ilmoco.datasets.formats import READER_MODULES, detect_format
from ilmoco.io import InputError

__all__ = ["detect_format", "read_manifest"]


def read_manifest(fmt: str, root, **options) -> tuple[pd.DataFrame, DatasetMeta]:
    """Read ``root`` as layout ``fmt``; refuse a root that does not look like that layout."""
    if fmt not in READER_MODULES:
        raise InputError(f"unknown dataset format {fmt!r}; known: {sorted(READER_MODULES)}")
    root = Path(root)
    require_dir(root, fmt)
    found = detect_format(root)
    if found != fmt:
        hint = f"it looks like {found}" if found else "it matches no known layout"
        raise InputError(
            f"dataset root {root} was declared format {fmt} but {hint}; "
            "check `root` and `format` in the config"
        )
    reader = importlib.import_module(f"ilmoco.datasets.{READER_MODULES[fmt]}")
    df, meta = getattr(reader, f"read_{fmt}")(root, **options)
    df["image_id"] = df["image_id"].astype(str)
    df["patient_id"] = df["patient_id"].astype(str)
    return df.reset_index(drop=True), meta
