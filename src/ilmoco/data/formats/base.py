"""What every reader returns: a manifest (one row per image) and its metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ilmoco.io import InputError
from ilmoco.runlog import log

# Columns every manifest starts with; label columns follow.
BASE_COLUMNS = ["image_id", "path", "patient_id"]


@dataclass
class DatasetMeta:
    """How downstream stages interpret a manifest.

    task: ``multilabel`` (sigmoid + BCE per label), ``binary`` (2-way softmax) or
    ``multiclass`` (K-way softmax, one integer label column). ``has_official_split``: the
    manifest's ``official_split`` column holds a published split (used with
    ``split.use_official``); ``fixed_split``: that column *is* the split (MedMNIST ships no
    patient ids to draw another; EyePACS ``subset: bin2`` defines its own; rows marked
    ``trainval`` are split into train and val by patient). ``classes``: the class names of
    a one-column task, code k = ``classes[k]`` (empty: the codes are the names).
    """

    format: str
    task: str
    label_columns: list[str]
    channels: int
    n_classes: int
    aux_columns: list[str] = field(default_factory=list)
    has_official_split: bool = False
    fixed_split: bool = False
    patient_ids: bool = True
    notes: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["classes"]:  # written only when set: other formats' dataset.json unchanged
            del d["classes"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DatasetMeta:
        return cls(**d)


def require_columns(df: pd.DataFrame, required: list[str], source: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"{source}: missing required column(s) {missing}; found {list(df.columns)}"
        )


def require_unique_ids(ids: pd.Series, source: Path) -> None:
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise InputError(
            f"{source}: {len(dup)} duplicate image id(s), e.g. {list(dup[:3])}; "
            "each image must be listed once"
        )


def handle_missing(df: pd.DataFrame, exists: pd.Series, source: Path, on_missing: str):
    """Error (default) or drop rows whose image file is absent, naming the first few."""
    n_missing = int((~exists).sum())
    if n_missing == 0:
        return df
    first = list(df.loc[~exists, "path"].head(3))
    if on_missing == "skip":
        log(f"{source}: skipping {n_missing} listed image(s) not found on disk, e.g. {first}")
        return df.loc[exists].reset_index(drop=True)
    raise InputError(
        f"{source}: {n_missing} listed image(s) not found under the dataset root, e.g. {first}; "
        "restore them or set on_missing: skip for this dataset"
    )


def require_dir(root: Path, fmt: str) -> None:
    if not root.is_dir():
        raise InputError(f"dataset root {root} (format {fmt}) does not exist or is not a directory")
    if not any(root.iterdir()):
        raise InputError(f"dataset root {root} (format {fmt}) is empty; point root at the data")
