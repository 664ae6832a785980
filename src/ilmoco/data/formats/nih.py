"""NIH ChestX-ray14 in its Kaggle layout.

    <root>/Data_Entry_2017.csv            (header ends with a trailing comma and splits
                                           ``OriginalImage[Width,Height]`` into two columns)
    <root>/images_001/images/00000001_000.png ... images_012/images/...
    <root>/train_val_list.txt, test_list.txt (optional official split)

Labels are ``|``-joined finding names, ``No Finding`` meaning none of the 14.
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
from ilmoco.data.formats.layouts import NIH_CSV_NAMES, NIH_LABELS, NO_FINDING, find_nih_csv
from ilmoco.io import InputError


def index_images(root: Path) -> dict[str, str]:
    """Map file name -> path relative to root, over ``images*/images/`` and ``images/``."""
    found: dict[str, str] = {}
    dirs = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and entry.name.startswith("images"):
            inner = Path(entry.path) / "images"
            dirs.append(inner if inner.is_dir() else Path(entry.path))
    for d in dirs:
        for f in sorted(os.scandir(d), key=lambda e: e.name):
            if f.name.lower().endswith(".png"):
                rel = str(Path(f.path).relative_to(root))
                if f.name in found:
                    raise InputError(
                        f"{root}: image {f.name} appears twice ({found[f.name]} and {rel})"
                    )
                found[f.name] = rel
    return found


def parse_labels(findings: pd.Series, source: Path) -> pd.DataFrame:
    known = set(NIH_LABELS)
    out = {name: [] for name in NIH_LABELS}
    for i, text in enumerate(findings.astype(str)):
        names = [t.strip() for t in text.split("|") if t.strip()]
        unknown = [n for n in names if n not in known and n != NO_FINDING]
        if unknown:
            raise InputError(
                f"{source}: unknown label {unknown[0]!r} in row {i + 2} ('Finding Labels'); "
                f"known labels are {NIH_LABELS} and {NO_FINDING!r}"
            )
        present = set(names)
        for name in NIH_LABELS:
            out[name].append(int(name in present))
    return pd.DataFrame(out, index=findings.index)


def read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def read_nih_cxr14(root, on_missing: str = "error") -> tuple[pd.DataFrame, DatasetMeta]:
    root = Path(root)
    require_dir(root, "nih_cxr14")
    csv = find_nih_csv(root)
    if csv is None:
        raise InputError(f"{root}: no {NIH_CSV_NAMES[0]} found; is this the NIH ChestX-ray14 "
                         "root?")
    try:
        raw = pd.read_csv(csv, dtype=str, index_col=False)
    except Exception as e:
        raise InputError(f"{csv}: cannot parse CSV ({e})") from None
    raw = raw.loc[:, [c for c in raw.columns if not c.startswith("Unnamed")]]
    raw.columns = [c.strip() for c in raw.columns]
    require_columns(raw, ["Image Index", "Finding Labels", "Patient ID"], csv)
    raw = raw.dropna(subset=["Image Index"]).reset_index(drop=True)
    require_unique_ids(raw["Image Index"], csv)

    images = index_images(root)
    names = raw["Image Index"].str.strip()
    df = pd.DataFrame(
        {
            "image_id": names.str.replace(r"\.png$", "", regex=True),
            "path": names.map(lambda n: images.get(n, f"images/{n}")),
            "patient_id": raw["Patient ID"].str.strip().map(lambda p: str(int(p))),
        }
    )
    df = pd.concat([df, parse_labels(raw["Finding Labels"], csv)], axis=1)
    for col in ("Follow-up #", "View Position"):
        if col in raw.columns:
            df[col.replace(" #", "").replace(" ", "_").lower()] = raw[col].str.strip()
    df = handle_missing(df, names.isin(images.keys()), csv, on_missing)

    meta = DatasetMeta(
        format="nih_cxr14", task="multilabel", label_columns=list(NIH_LABELS), channels=1,
        n_classes=len(NIH_LABELS), aux_columns=[c for c in ("follow-up", "view_position")
                                               if c in df.columns],
    )
    train_list, test_list = root / "train_val_list.txt", root / "test_list.txt"
    if train_list.is_file() and test_list.is_file():
        trainval, test = read_list(train_list), read_list(test_list)
        fname = df["image_id"] + ".png"
        df["official_split"] = fname.map(
            lambda f: "test" if f in test else ("trainval" if f in trainval else "")
        )
        meta.has_official_split = True
        meta.aux_columns.append("official_split")
    return df, meta
