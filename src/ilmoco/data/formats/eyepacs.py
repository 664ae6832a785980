"""EyePACS diabetic retinopathy (Kaggle 2015, "diabetic-retinopathy-detection"): both
labelled halves, as the paper's 88,702 images.

    <root>/trainLabels.csv              image,level            (35,126 images)
    <root>/train/<patient>_<left|right>.jpeg
    <root>/retinopathy_solution.csv     image,level,Usage      (53,576 images; Usage is
    <root>/test/<patient>_<left|right>.jpeg                      Public or Private)

Binary label ``referable`` = level >= 2 (moderate or worse); ``level``, ``eye``, the
``half`` (train/test) and Kaggle's ``usage`` (Train, Public, Private) are kept. Both eyes of
a patient share the patient id, so patient-level splits keep them together; the two halves'
patients are disjoint (checked). ``halves`` chooses the halves (default: every half whose
labels file is present).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ilmoco.data.formats.base import (
    DatasetMeta,
    handle_missing,
    require_columns,
    require_dir,
    require_unique_ids,
)
from ilmoco.data.formats.layouts import EYEPACS_HALVES, eyepacs_halves_present
from ilmoco.io import InputError
from ilmoco.runlog import log

HALVES = EYEPACS_HALVES
LABELS_CSV, SOLUTION_CSV = HALVES["train"][0], HALVES["test"][0]
EXTENSIONS = (".jpeg", ".jpg", ".png")


def _read_half(root: Path, half: str, on_missing: str) -> pd.DataFrame:
    csv_name, folder = HALVES[half]
    csv = root / csv_name
    raw = pd.read_csv(csv, dtype=str)
    raw.columns = [c.strip() for c in raw.columns]
    require_columns(raw, ["image", "level"] + (["Usage"] if half == "test" else []), csv)
    raw["image"] = raw["image"].str.strip()
    require_unique_ids(raw["image"], csv)
    level = pd.to_numeric(raw["level"], errors="coerce")
    bad = raw.loc[level.isna() | ~level.isin([0, 1, 2, 3, 4])]
    if len(bad):
        r = bad.iloc[0]
        raise InputError(f"{csv}: unknown label level={r['level']!r} for image {r['image']} "
                         f"({len(bad)} row(s)); levels must be 0-4")
    eye = raw["image"].str.rsplit("_", n=1).str[-1]
    if not eye.isin(["left", "right"]).all():
        first = raw.loc[~eye.isin(["left", "right"]), "image"].iloc[0]
        raise InputError(f"{csv}: image name {first!r} is not <patient>_<left|right>")
    usage = raw["Usage"].str.strip() if half == "test" else pd.Series("Train", index=raw.index)
    if half == "test" and not usage.isin(["Public", "Private"]).all():
        first = usage[~usage.isin(["Public", "Private"])].iloc[0]
        raise InputError(f"{csv}: Usage {first!r} is neither Public nor Private")
    files = {}
    img_dir = root / folder
    if img_dir.is_dir():
        for f in os.scandir(img_dir):
            stem, ext = os.path.splitext(f.name)
            if ext.lower() in EXTENSIONS:
                files[stem] = f"{folder}/{f.name}"
    df = pd.DataFrame({
        "image_id": raw["image"],
        "path": raw["image"].map(lambda s: files.get(s, f"{folder}/{s}.jpeg")),
        "patient_id": raw["image"].str.rsplit("_", n=1).str[0],
        "referable": (level >= 2).astype(int),
        "level": level.astype(int),
        "eye": eye,
        "half": half,
        "usage": usage,
    })
    return handle_missing(df, raw["image"].isin(files.keys()), csv, on_missing)


def read_eyepacs_dr(
    root, on_missing: str = "error", halves: list[str] | tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, DatasetMeta]:
    root = Path(root)
    require_dir(root, "eyepacs_dr")
    present = eyepacs_halves_present(root)
    if not present:
        raise InputError(f"{root}: no {LABELS_CSV} or {SOLUTION_CSV} found; "
                         "is this the EyePACS root?")
    wanted = list(halves) if halves else present
    missing = [h for h in wanted if h not in present]
    if missing:
        raise InputError(f"{root}: halves {missing} requested but "
                         f"{[HALVES[h][0] for h in missing]} not found; set `halves` to "
                         f"{present} or add the files")
    parts = [_read_half(root, h, on_missing) for h in wanted]
    if len(parts) == 2:
        shared = set(parts[0]["patient_id"]) & set(parts[1]["patient_id"])
        if shared:
            raise InputError(f"{root}: patient(s) {sorted(shared)[:3]} appear in both the "
                             f"train and the test half; the Kaggle halves are disjoint")
    df = pd.concat(parts, ignore_index=True)
    log(f"{root}: EyePACS halves {wanted}: " + ", ".join(
        f"{h} {int((df['half'] == h).sum())} images" for h in wanted))
    meta = DatasetMeta(
        format="eyepacs_dr", task="binary", label_columns=["referable"], channels=3,
        n_classes=2, aux_columns=["level", "eye", "half", "usage"],
    )
    return df, meta
