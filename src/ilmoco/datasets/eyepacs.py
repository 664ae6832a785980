"""EyePACS diabetic retinopathy (Kaggle 2015).

    <root>/trainLabels.csv        columns image,level (grade 0-4)
    <root>/train/<patient>_<left|right>.jpeg   (sizes vary)

Binary label ``referable`` = level >= 2 (moderate or worse); ``level`` is kept. Both eyes
of a patient share the patient id, so patient-level splits keep them together.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ilmoco.datasets.base import (
    DatasetMeta,
    handle_missing,
    require_columns,
    require_dir,
    require_unique_ids,
)
from ilmoco.io import InputError

LABELS_CSV = "trainLabels.csv"
EXTENSIONS = (".jpeg", ".jpg", ".png")


def read_eyepacs_dr(
    root, on_missing: str = "error", images_dir: str = "train"
) -> tuple[pd.DataFrame, DatasetMeta]:
    root = Path(root)
    require_dir(root, "eyepacs_dr")
    csv = root / LABELS_CSV
    if not csv.is_file():
        raise InputError(f"{root}: no {LABELS_CSV} found; is this the EyePACS root?")
    raw = pd.read_csv(csv, dtype=str)
    raw.columns = [c.strip() for c in raw.columns]
    require_columns(raw, ["image", "level"], csv)
    raw["image"] = raw["image"].str.strip()
    require_unique_ids(raw["image"], csv)

    level = pd.to_numeric(raw["level"], errors="coerce")
    bad = raw.loc[level.isna() | ~level.isin([0, 1, 2, 3, 4])]
    if len(bad):
        r = bad.iloc[0]
        raise InputError(
            f"{csv}: unknown label level={r['level']!r} for image {r['image']} "
            f"({len(bad)} row(s)); levels must be 0-4"
        )
    eye = raw["image"].str.rsplit("_", n=1).str[-1]
    if not eye.isin(["left", "right"]).all():
        first = raw.loc[~eye.isin(["left", "right"]), "image"].iloc[0]
        raise InputError(f"{csv}: image name {first!r} is not <patient>_<left|right>")

    img_dir = root / images_dir
    files = {}
    if img_dir.is_dir():
        for f in os.scandir(img_dir):
            stem, ext = os.path.splitext(f.name)
            if ext.lower() in EXTENSIONS:
                files[stem] = f"{images_dir}/{f.name}"
    df = pd.DataFrame(
        {
            "image_id": raw["image"],
            "path": raw["image"].map(lambda s: files.get(s, f"{images_dir}/{s}.jpeg")),
            "patient_id": raw["image"].str.rsplit("_", n=1).str[0],
            "referable": (level >= 2).astype(int),
            "level": level.astype(int),
            "eye": eye,
        }
    )
    df = handle_missing(df, raw["image"].isin(files.keys()), csv, on_missing)
    meta = DatasetMeta(
        format="eyepacs_dr", task="binary", label_columns=["referable"], channels=3,
        n_classes=2, aux_columns=["level", "eye"],
    )
    return df, meta
