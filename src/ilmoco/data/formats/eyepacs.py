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

``subset: bin2`` reads instead the set the official code used, the jama16 replication's
"bin2" (its ``eyepacs.sh``): the halves pooled, a seeded shuffle of the grade 0-1 images of
which 48,784 are kept, every grade >= 2 image kept, and an image-level split, train 40,688 +
16,458 (a fifth of it validation) and test 8,096 + 696 (:func:`bin2`). The manifest then
holds only those images and their split (``official_split``, fixed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


@dataclass(frozen=True)
class Bin2:
    """jama16's bin2 counts on the 88,702 labelled images (17,154 of grade >= 2), and the
    seed of its shuffle (``shuf`` with seed 42 there; numpy's generator here, so the counts
    are jama16's but not the very images)."""

    negatives: int = 71_548  # grade 0-1 images of both halves
    kept_negatives: int = 48_784
    positives: int = 17_154
    train_negatives: int = 40_688
    train_positives: int = 16_458
    val_share: float = 0.2  # of train, by image (jama16's validation TFRecords)
    seed: int = 42


BIN2 = Bin2()


def _first(k: float, n: int) -> int:
    return min(n, int(round(k)))


def bin2(df: pd.DataFrame, counts: Bin2 = BIN2) -> pd.Series:
    """The bin2 split of an EyePACS manifest: "train", "val", "test", or "" (not kept).

    On the full 88,702 images the counts are jama16's; on other data each is scaled by the
    same factor (negatives kept: n0 x 48,784 / 71,548, of them train: x 40,688 / 48,784;
    positives in train: n1 x 16,458 / 17,154; validation: a fifth of each class's train
    images, rounded). Images are drawn by image (not patient), from the image ids in sorted
    order, so the split depends only on which images there are."""
    rng = np.random.default_rng(counts.seed)
    out = pd.Series("", index=df.index, name="split", dtype=object)
    ordered = df.sort_values("image_id", kind="stable")
    pos = ordered.index[ordered["referable"] == 1]
    neg = ordered.index[ordered["referable"] == 0]
    neg = neg[rng.permutation(len(neg))]
    neg = neg[:_first(len(neg) * counts.kept_negatives / counts.negatives, len(neg))]
    pos = pos[rng.permutation(len(pos))]
    for cls, n_train in ((neg, len(neg) * counts.train_negatives / counts.kept_negatives),
                         (pos, len(pos) * counts.train_positives / counts.positives)):
        k = _first(n_train, len(cls))
        train, test = cls[:k], cls[k:]
        train = train[rng.permutation(len(train))]
        n_val = _first(len(train) * counts.val_share, len(train))
        out.loc[train[:n_val]], out.loc[train[n_val:]], out.loc[test] = "val", "train", "test"
    return out


def read_eyepacs_dr(
    root, on_missing: str = "error", halves: list[str] | tuple[str, ...] | None = None,
    subset: str | None = None,
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
    if subset == "bin2":
        split = bin2(df)
        df = df.assign(official_split=split).loc[split != ""].reset_index(drop=True)
        meta.aux_columns.append("official_split")
        meta.has_official_split = meta.fixed_split = True
        meta.notes.append("subset bin2 (jama16): an image-level split")
        counts = df.groupby(["official_split", "referable"]).size()
        log(f"{root}: bin2 keeps {len(df)} images: " + ", ".join(
            f"{s} {int(counts.get((s, 0), 0))} + {int(counts.get((s, 1), 0))}"
            for s in ("train", "val", "test")) + " (grade 0-1 + grade >= 2)")
    elif subset not in (None, "all"):
        raise InputError(f"{root}: unknown EyePACS subset {subset!r}; use all or bin2")
    return df, meta
