"""Read a dataset root in its layout: check the layout, then run the format's reader.

The reader and the layout check are named by import path (the format registry,
``ilmoco.config.formats``): the manifest of one format imports no other format's reader.
Other formats' layout checks run only to say what a wrong root looks like.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ilmoco.data.formats.base import DatasetMeta, require_dir
from ilmoco.imports import load_object
from ilmoco.io import InputError


def read_manifest(fmt: str, reader: str, detect: str, root, options: Mapping | None = None,
                  others: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, DatasetMeta]:
    """Read ``root`` with ``reader`` after ``detect`` says it has format ``fmt``'s layout;
    ``others`` (format -> layout check) name the layout a wrong root has."""
    root = Path(root)
    require_dir(root, fmt)
    if not load_object(detect)(root):
        found = next((name for name, check in (others or {}).items()
                      if name != fmt and load_object(check)(root)), None)
        hint = f"it looks like {found}" if found else "it matches no known layout"
        raise InputError(f"dataset root {root} was declared format {fmt} but {hint}; "
                         "check `root` and `format` in the config")
    df, meta = load_object(reader)(root, **dict(options or {}))
    df["image_id"] = df["image_id"].astype(str)
    df["patient_id"] = df["patient_id"].astype(str)
    return df.reset_index(drop=True), meta
