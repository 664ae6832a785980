"""What the formats a user describes (``image_table``, ``image_folder``) share: patient ids
from a column or a regex on the path, official split names, class codes of a one-column
label, and the channel count from sampled image headers."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ilmoco.data.formats.base import BASE_COLUMNS
from ilmoco.data.inspect import describe, sample_rows
from ilmoco.io import InputError
from ilmoco.runlog import log

# Names a split column or folder may use, and the split each means. ``trainval``: train and
# val are drawn from these rows by patient (the official test set is kept).
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validate": "val", "validation": "val", "dev": "val", "test": "test",
               "testing": "test", "trainval": "trainval"}
# Columns the manifest and split.csv use themselves; a table's extra column of that name is
# kept as <name>_orig.
RESERVED = (*BASE_COLUMNS, "split", "official_split")
CHANNEL_SAMPLE = 16


def official_split(values: pd.Series, source, column: str,
                   mapping: Mapping[str, str] | None = None) -> pd.Series:
    """``train``/``val``/``test``/``trainval`` per row from a split column's values
    (``mapping`` first, then the usual names, case-insensitive)."""
    mapping = {str(k): v for k, v in (mapping or {}).items()}
    out = []
    for v in values:
        if pd.isna(v) or str(v).strip() == "":
            raise InputError(f"{source}: blank split in column {column!r}; every row needs "
                             "train, val or test (or a `split_values` entry)")
        v = str(v).strip()
        name = mapping.get(v) or SPLIT_NAMES.get(v.lower())
        if name is None:
            raise InputError(f"{source}: split value {v!r} in column {column!r} is not a split "
                             f"name {sorted(set(SPLIT_NAMES))}; map it with split_values")
        out.append(name)
    return pd.Series(out, index=values.index, name="official_split")


def patients_from_regex(paths: pd.Series, pattern: str, source) -> pd.Series:
    """The patient id of each path: the group named ``patient``, else the first group, else
    the whole match of ``pattern`` (``re.search``)."""
    rx = re.compile(pattern)
    group = "patient" if "patient" in rx.groupindex else (1 if rx.groups else 0)
    out = []
    for p in paths:
        m = rx.search(str(p))
        if m is None or not m.group(group):
            raise InputError(f"{source}: patient_regex '{pattern}' finds no patient id in "
                             f"path {p!r}")
        out.append(m.group(group))
    return pd.Series(out, index=paths.index, name="patient_id")


def require_patients(ids: pd.Series, source, what: str, where: pd.Series | None = None):
    """Refuse an empty patient id, naming where it is."""
    blank = ids.isna() | (ids.astype(str).str.strip() == "")
    if blank.any():
        i = blank.to_numpy().nonzero()[0][0]
        at = where.iloc[i] if where is not None else source
        raise InputError(f"{at}: empty patient id in {what} ({int(blank.sum())} row(s)); "
                         "every image needs its patient")


def no_patient_note(source) -> str:
    note = (f"{source}: no patient_column or patient_regex: each image counts as its own "
            "patient, so a patient's images may land in different splits")
    log("warning: " + note)
    return note


def normalise_value(v) -> str:
    """A label value as text, integral numbers without their '.0' ('1.0' -> '1')."""
    s = str(v).strip()
    try:
        f = float(s)
    except ValueError:
        return s
    return str(int(f)) if f.is_integer() else s


def class_codes(values: pd.Series, classes: Sequence[str] | None, source, column: str,
                where: pd.Series | None = None) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a one-column label and the class names (code k = name k): the
    declared ``classes`` in their order (a value outside them is an error naming it), else
    the values sorted (numerically when they are all integers)."""
    text = values.map(normalise_value)
    if classes is not None:
        names = [normalise_value(c) for c in classes]
        unknown = ~text.isin(names)
        if unknown.any():
            i = unknown.to_numpy().nonzero()[0][0]
            at = where.iloc[i] if where is not None else source
            raise InputError(f"{at}: label {text.iloc[i]!r} in column {column!r} is not one of "
                             f"the declared classes {names} ({int(unknown.sum())} row(s))")
    else:
        found = text.unique().tolist()
        ints = all(re.fullmatch(r"-?\d+", v) for v in found)
        names = [str(v) for v in sorted(int(v) for v in found)] if ints else sorted(found)
        if len(names) < 2:
            raise InputError(f"{source}: column {column!r} holds one class only ({names}); a "
                             "task needs two or more (declare `classes` to name them all)")
        log(f"{source}: classes of {column!r} (code: name): "
            + ", ".join(f"{k}: {n}" for k, n in enumerate(names)))
    code = {n: k for k, n in enumerate(names)}
    return text.map(code).to_numpy(np.int64), names


def detect_channels(root: Path, paths: Sequence[str], source) -> int:
    """1 when every sampled image is grayscale, else 3 (header reads only)."""
    rows = sample_rows(len(paths), CHANNEL_SAMPLE)
    seen = [describe(Path(root) / paths[i])["channels"] for i in rows]
    channels = 3 if any(c == 3 for c in seen) else 1
    log(f"{source}: {channels} channel(s) ({'colour' if channels == 3 else 'grayscale'} in "
        f"{sum(c == channels for c in seen)} of {len(seen)} sampled images); set `channels` "
        "to choose")
    return channels


def check_split_leaks(df: pd.DataFrame, source) -> None:
    """Say so when a patient's images sit in two official splits (a leak between them)."""
    n = df.groupby("patient_id")["official_split"].nunique()
    leaks = n[n > 1]
    if len(leaks):
        log(f"warning: {source}: {len(leaks)} patient(s) have images in two official splits, "
            f"e.g. {list(leaks.index[:3])}; their images leak between those splits")


def keep_columns(df: pd.DataFrame, used: Sequence[str], source) -> list[str]:
    """The table's extra columns (kept as aux columns), renamed ``<name>_orig`` where they
    would clash with a column of the manifest."""
    aux = []
    for c in [c for c in df.columns if c not in used and not c.startswith("_")]:
        name = f"{c}_orig" if c in RESERVED else c
        if name != c:
            log(f"{source}: column {c!r} kept as {name!r} (the manifest uses {c!r} itself)")
            df.rename(columns={c: name}, inplace=True)
        aux.append(name)
    return aux
