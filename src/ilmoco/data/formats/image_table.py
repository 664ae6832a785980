"""``image_table``: your own data as a manifest table plus an image root.

    <root>/<table>                    CSV, TSV (by suffix, ``.gz`` allowed, or ``sep``) or
                                      Parquet; one row per image
    <root>/<path in the table>        PNG, JPEG, TIFF (8 or 16 bit) or DICOM

The configuration names the columns:

* the image: ``path_column`` (relative to ``root``, or absolute), or ``path_template`` built
  from columns, ``{col}`` or a slice ``{col[:2]}`` (MIMIC-CXR-JPG:
  ``files/p{subject_id[:2]}/p{subject_id}/s{study_id}/{dicom_id}.jpg``); ``id_column``
  optionally names the image id (default: the path);
* the patient: ``patient_column``, or ``patient_regex`` on the path (its group ``patient``,
  else its first group); neither = one patient per image, with a warning;
* the labels, ``label_columns``: one column of class names or integers (binary with two
  classes, else multi-class; ``classes`` declares them and their order, a value outside them
  is an error), several 0/1 columns (multi-label), or one column of ``label_separator``-joined
  names (as NIH's ``Finding Labels``; ``classes`` required, ``none_label`` names the value
  meaning none of them);
* uncertain (-1) and blank labels: ``uncertain: ones | zeros | ignore`` (or one per column,
  ``{Edema: ones, Cardiomegaly: zeros}``) and ``blank: zeros | ignore`` (unset: such a label
  is an error naming it). ``ignore`` keeps a multi-label image
  with that label masked (-1: left out of the loss, the metrics and the stratification); for
  a one-column label it drops the image (logged);
* ``split_column`` (optional): an official split kept as it is (train, val/valid/validate,
  test, or ``trainval``: train and val drawn by patient from those rows; ``split_values``
  maps other names);
* ``filters``: rows kept where a column equals a value or one of a list of values;
* ``table`` may list several tables (concatenated, e.g. CheXpert's train.csv and valid.csv;
  each row's table in column ``source_table``), ``join`` adds columns of other tables on key
  columns (``keys``) (MIMIC-CXR-JPG's labels and split on subject_id/study_id/dicom_id).

Every other column is kept (aux columns of the manifest and split.csv). Each step says what
it dropped; bad input is a one-line error naming the file, line, column or value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ilmoco.data.formats.base import (
    DatasetMeta,
    handle_missing,
    require_dir,
    require_unique_ids,
)
from ilmoco.data.formats.generic import (
    RESERVED,
    check_split_leaks,
    class_codes,
    detect_channels,
    keep_columns,
    no_patient_note,
    normalise_value,
    official_split,
    patients_from_regex,
    require_patients,
)
from ilmoco.io import InputError
from ilmoco.runlog import log

SOURCE_TABLE = "source_table"
TEMPLATE_FIELD = re.compile(r"\{([^{}\[\]]+)(?:\[(-?\d*):(-?\d*)\])?\}")


# ------------------------------------------------------------------------------ tables

def table_path(root: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else root / p


def _sep_of(path: Path, sep: str | None) -> str:
    if sep:
        return sep
    suffixes = [s.lower() for s in path.suffixes]
    return "\t" if ".tsv" in suffixes or ".tab" in suffixes else ","


def read_table_file(path: Path, sep: str | None = None) -> pd.DataFrame:
    """A table as text (blank cells NaN, whitespace stripped) with ``_where`` naming each
    row's file and line (CSV/TSV, header = line 1) or row (Parquet)."""
    if not path.is_file():
        raise InputError(f"{path}: table not found; `table` and `join` name files relative to "
                         "the dataset root, or absolute")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError(f"{path}: reading Parquet needs pyarrow: pip install "
                             "pyarrow==26.0.1") from None
        try:
            raw = pd.read_parquet(path)
        except Exception as e:
            raise InputError(f"{path}: cannot read Parquet ({type(e).__name__}: {e})") from None
        df = pd.DataFrame({str(c): raw[c].map(lambda v: None if pd.isna(v)
                                              else normalise_value(v)
                                              if isinstance(v, float) else str(v))
                           for c in raw.columns})
        where = [f"{path} row {i + 1}" for i in range(len(df))]
    else:
        try:
            df = pd.read_csv(path, sep=_sep_of(path, sep), dtype=str, keep_default_na=False,
                             na_values=[""], encoding="utf-8-sig", skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise InputError(f"{path}: the table is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
            msg = " ".join(str(e).split())
            raise InputError(f"{path}: cannot parse the table ({msg}); each row needs as "
                             "many fields as the header") from None
        where = [f"{path} line {i + 2}" for i in range(len(df))]
    df.columns = [str(c).strip() for c in df.columns]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise InputError(f"{path}: column(s) {dup} appear twice in the header")
    df = df.apply(lambda s: s.str.strip() if s.dtype == object or pd.api.types.is_string_dtype(
        s) else s).replace("", np.nan)
    df["_where"] = where
    return df


def require_table_columns(df: pd.DataFrame, columns, source, key: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        shown = [c for c in df.columns if not c.startswith("_")]
        raise InputError(f"{source}: column {missing[0]!r} (from `{key}`) not found; the "
                         f"table's columns are {shown}")


def read_tables(root: Path, table, sep) -> tuple[pd.DataFrame, str]:
    """One or several tables concatenated; several: each row's table in ``source_table``."""
    names = [table] if isinstance(table, str) else list(table)
    parts = []
    for name in names:
        df = read_table_file(table_path(root, name), sep)
        if len(names) > 1:
            if SOURCE_TABLE in df.columns:
                raise InputError(f"{table_path(root, name)}: has a column {SOURCE_TABLE!r}, "
                                 "which names each row's table when several are listed")
            df[SOURCE_TABLE] = name
        parts.append(df)
    first = set(parts[0].columns)
    for name, df in zip(names[1:], parts[1:]):
        if set(df.columns) != first:
            log(f"{table_path(root, name)}: columns differ from {names[0]}'s: "
                f"only here {sorted(set(df.columns) - first)}, "
                f"only there {sorted(first - set(df.columns))} (blank where absent)")
    source = str(table_path(root, names[0])) if len(names) == 1 else \
        f"{root} tables {names}"
    return pd.concat(parts, ignore_index=True), source


def join_tables(df: pd.DataFrame, root: Path, joins, sep, source) -> pd.DataFrame:
    """Add the columns of each joined table on its ``keys`` (``how``: inner, the
    default, drops rows without a match, logged; left keeps them with blank cells)."""
    for j in joins or ():
        path = table_path(root, j["table"])
        other = read_table_file(path, sep).drop(columns="_where")
        on = [j["keys"]] if isinstance(j["keys"], str) else list(j["keys"])
        require_table_columns(df, on, source, "join.keys")
        require_table_columns(other, on, path, "join.keys")
        dup = other.duplicated(on, keep=False)
        if dup.any():
            first = other.loc[dup, on].iloc[0].to_dict()
            raise InputError(f"{path}: {int(dup.sum())} rows share their key {on}, e.g. "
                             f"{first}; a joined table needs one row per key")
        clash = sorted(set(other.columns) & set(df.columns) - set(on))
        if clash:
            raise InputError(f"{path}: column(s) {clash} are in {source} too; join on them "
                             "(`keys`) or drop them from one table")
        how = j.get("how") or "inner"
        merged = df.merge(other, on=on, how="left", indicator="_match")
        unmatched = merged["_match"] == "left_only"
        if unmatched.any():
            example = merged.loc[unmatched, on].iloc[0].to_dict()
            if how == "inner":
                log(f"{path}: {int(unmatched.sum())} row(s) of {source} have no match on {on} "
                    f"(e.g. {example}) and are dropped")
                merged = merged.loc[~unmatched]
            else:
                log(f"{path}: {int(unmatched.sum())} row(s) of {source} have no match on {on} "
                    f"(e.g. {example}); their columns from it are blank")
        df = merged.drop(columns="_match").reset_index(drop=True)
    return df


def apply_filters(df: pd.DataFrame, filters: Mapping | None, source) -> pd.DataFrame:
    """Rows where each filter column equals its value (or one of its values)."""
    for column, wanted in (filters or {}).items():
        require_table_columns(df, [column], source, "filters")
        wanted = list(wanted) if isinstance(wanted, (list, tuple)) else [wanted]
        keep = df[column].map(lambda v: None if pd.isna(v) else normalise_value(v)).isin(
            [normalise_value(w) for w in wanted])
        if not keep.any():
            seen = sorted(df[column].dropna().map(normalise_value).unique())[:10]
            raise InputError(f"{source}: filter {column!r} in {wanted} keeps no row; the "
                             f"column holds {seen}")
        if (~keep).any():
            log(f"{source}: filter {column!r} in {wanted} drops {int((~keep).sum())} of "
                f"{len(df)} rows")
        df = df.loc[keep].reset_index(drop=True)
    return df


def template_paths(df: pd.DataFrame, template: str, source) -> pd.Series:
    """Paths from ``template``: ``{col}`` is the column's value, ``{col[a:b]}`` a slice."""
    fields = TEMPLATE_FIELD.findall(template)
    if not fields:
        raise InputError(f"path_template {template!r} names no column ({{column}})")
    require_table_columns(df, [f[0] for f in fields], source, "path_template")

    def build(row) -> str:
        def sub(m):
            v = row[m.group(1)]
            if pd.isna(v):
                raise InputError(f"{row['_where']}: column {m.group(1)!r} is blank; "
                                 f"path_template {template!r} needs it")
            v = normalise_value(v)
            a, b = m.group(2), m.group(3)
            if a is None:
                return v
            return v[slice(int(a) if a else None, int(b) if b else None)]

        return TEMPLATE_FIELD.sub(sub, template)

    return df.apply(build, axis=1)


# ------------------------------------------------------------------------------ labels

def _missing_policy(values: pd.Series, policy: str | None, key: str, column: str,
                    where: pd.Series, what: str) -> None:
    if policy is None and values.any():
        i = values.to_numpy().nonzero()[0][0]
        raise InputError(f"{where.iloc[i]}: {what} label in column {column!r} "
                         f"({int(values.sum())} row(s)); set {key}: "
                         f"{'ones, zeros' if key == 'uncertain' else 'zeros'} or ignore")


def policy_of(policy, column: str) -> str | None:
    """A policy for every label column, or per column (``{Edema: ones, ...}``)."""
    return policy.get(column) if isinstance(policy, Mapping) else policy


def binary_columns(df: pd.DataFrame, columns, uncertain, blank) -> pd.DataFrame:
    """0/1 columns (multi-label): -1 and blank through their policies; masked = -1."""
    out = {}
    for c in columns:
        uncertain_c = policy_of(uncertain, c)
        blank_cells = df[c].isna()
        num = pd.to_numeric(df[c], errors="coerce")
        bad = ~blank_cells & ~num.isin([0, 1, -1])
        if bad.any():
            i = bad.to_numpy().nonzero()[0][0]
            raise InputError(f"{df['_where'].iloc[i]}: label {df[c].iloc[i]!r} in column {c!r} "
                             "is not 1, 0 or -1 (uncertain) or blank")
        _missing_policy(num == -1, uncertain_c, "uncertain", c, df["_where"],
                        "uncertain (-1)")
        _missing_policy(blank_cells, blank, "blank", c, df["_where"], "blank")
        value = num.fillna(-2).astype(int)
        value = value.where(value != -1,
                            {"ones": 1, "zeros": 0, "ignore": -1}.get(uncertain_c, -1))
        value = value.where(value != -2, {"zeros": 0, "ignore": -1}.get(blank, -1))
        out[c] = value.to_numpy(np.int64)
    return pd.DataFrame(out, index=df.index)


def separated_labels(df: pd.DataFrame, column: str, sep: str, classes, none_label,
                     blank) -> pd.DataFrame:
    """One column of ``sep``-joined class names -> one 0/1 column per class."""
    known = list(classes)
    rows = []
    blank_cells = df[column].isna()
    _missing_policy(blank_cells, blank, "blank", column, df["_where"], "blank")
    for text, where, is_blank in zip(df[column], df["_where"], blank_cells):
        if is_blank:
            rows.append([0 if blank == "zeros" else -1] * len(known))
            continue
        names = [t.strip() for t in str(text).split(sep) if t.strip()]
        unknown = [n for n in names if n not in known and n != none_label]
        if unknown:
            raise InputError(f"{where}: label {unknown[0]!r} in column {column!r} is not one of "
                             f"the declared classes {known}"
                             + (f" or {none_label!r}" if none_label else ""))
        rows.append([int(n in names) for n in known])
    return pd.DataFrame(rows, columns=known, index=df.index, dtype=np.int64)


def single_label(df: pd.DataFrame, column: str, classes, uncertain, blank, source):
    """One column of class names or integers -> codes (rows whose label is ignored are
    dropped), the class names and the rows kept."""
    value = df[column].copy()
    uncertain = policy_of(uncertain, column)
    blank_cells = value.isna()
    _missing_policy(blank_cells, blank, "blank", column, df["_where"], "blank")
    declared = [normalise_value(c) for c in classes] if classes is not None else []
    uncertain_cells = value.map(lambda v: not pd.isna(v) and normalise_value(v) == "-1") \
        & ("-1" not in declared)
    _missing_policy(uncertain_cells, uncertain, "uncertain", column, df["_where"],
                    "uncertain (-1)")
    value[uncertain_cells] = {"ones": "1", "zeros": "0"}.get(uncertain)
    first = declared[0] if declared else "0"
    value[blank_cells] = first if blank == "zeros" else None
    keep = value.notna()
    if not keep.all():
        log(f"{source}: {int((~keep).sum())} image(s) without a label in {column!r} dropped "
            "(uncertain/blank: ignore)")
    codes, names = class_codes(value[keep], classes, source, column, df["_where"][keep])
    return codes, names, keep.to_numpy()


# ------------------------------------------------------------------------------ reader

def read_image_table(
    root, on_missing: str = "error", table=None, sep: str | None = None,
    join: Sequence[Mapping] | None = None, path_column: str | None = None,
    path_template: str | None = None, id_column: str | None = None,
    patient_column: str | None = None, patient_regex: str | None = None,
    label_columns: Sequence[str] | None = None, label_separator: str | None = None,
    none_label: str | None = None, classes: Sequence | None = None,
    uncertain: str | None = None, blank: str | None = None, split_column: str | None = None,
    split_values: Mapping | None = None, filters: Mapping | None = None,
    channels: int | None = None,
) -> tuple[pd.DataFrame, DatasetMeta]:
    root = Path(root)
    require_dir(root, "image_table")
    if not table or not label_columns:
        raise InputError(f"{root}: format image_table needs `table` and `label_columns`")
    df, source = read_tables(root, table, sep)
    df = join_tables(df, root, join, sep, source)
    df = apply_filters(df, filters, source)
    labels = list(label_columns)
    require_table_columns(df, labels, source, "label_columns")
    for key, col in (("path_column", path_column), ("patient_column", patient_column),
                     ("id_column", id_column), ("split_column", split_column)):
        if col:
            require_table_columns(df, [col], source, key)

    if path_template:
        paths = template_paths(df, path_template, source)
    else:
        no_path = df[path_column].isna()
        if no_path.any():
            raise InputError(f"{df['_where'][no_path].iloc[0]}: blank image path in column "
                             f"{path_column!r}")
        paths = df[path_column]

    # labels: one column per class (multi-label), or one column of codes
    used = [c for c in (path_column, patient_column, id_column, split_column) if c] + labels
    if len(labels) > 1:
        task, lab = "multilabel", binary_columns(df, labels, uncertain, blank)
        names, keep = labels, np.ones(len(df), bool)
    elif label_separator:
        lab = separated_labels(df, labels[0], label_separator, classes, none_label, blank)
        task, names, keep = "multilabel", list(lab.columns), np.ones(len(df), bool)
    else:
        codes, names, keep = single_label(df, labels[0], classes, uncertain, blank, source)
        task = "binary" if len(names) == 2 else "multiclass"
        lab = pd.DataFrame({labels[0]: codes}, index=df.index[keep])
    label_names = list(lab.columns)
    clash = [c for c in label_names if c in RESERVED or (c not in used and c in df.columns)]
    if clash:
        raise InputError(f"{source}: label column name {clash[0]!r} is taken (by the manifest or "
                         "another column of the table); rename it")
    df, paths = df.loc[keep], paths[keep]

    out = pd.DataFrame({"image_id": (df[id_column] if id_column else paths).astype(str),
                        "path": paths.astype(str)}, index=df.index)
    notes = []
    if patient_column:
        require_patients(df[patient_column], source, f"column {patient_column!r}", df["_where"])
        out["patient_id"] = df[patient_column].map(normalise_value)
    elif patient_regex:
        out["patient_id"] = patients_from_regex(out["path"], patient_regex, source)
    else:
        notes.append(no_patient_note(source))
        out["patient_id"] = out["image_id"]
    require_unique_ids(out["image_id"], source)
    out = pd.concat([out, lab.loc[df.index]], axis=1)
    if split_column:
        out["official_split"] = official_split(df[split_column], source, split_column,
                                               split_values)
    aux_frame = df.drop(columns=[c for c in used if c in df.columns])
    aux = keep_columns(aux_frame, [], source)
    out = pd.concat([out, aux_frame[aux]], axis=1)

    exists = out["path"].map(lambda p: (root / p).is_file())
    out = handle_missing(out.reset_index(drop=True), exists.reset_index(drop=True), source,
                         on_missing)
    if len(out) == 0:
        raise InputError(f"{source}: no image left to read")
    if split_column:
        check_split_leaks(out, source)
    if channels is None:
        channels = detect_channels(root, list(out["path"]), source)
    meta = DatasetMeta(
        format="image_table", task=task, label_columns=label_names, channels=int(channels),
        n_classes=len(names), aux_columns=aux + (["official_split"] if split_column else []),
        has_official_split=bool(split_column), fixed_split=bool(split_column),
        patient_ids=bool(patient_column or patient_regex), notes=notes,
        classes=list(names) if task != "multilabel" else [],
    )
    log(f"{source}: {len(out)} images, {out['patient_id'].nunique()} patients, task {task} "
        f"({len(names)} {'labels' if task == 'multilabel' else 'classes'})")
    return out, meta


def is_image_table(root) -> bool:
    """Any dataset root may hold an image table (the config describes its layout, and the
    reader checks it): the registry never names this format as what a wrong root looks
    like."""
    return Path(root).is_dir()
