"""Seeded patient-level train/val/test split and nested, stratified label fractions.

* Split: iterative stratification (Sechidis et al., 2011) over *patients*: rarest label
  first, each patient goes to the split that most lacks that label, so no patient spans two
  splits and label prevalence is kept as far as patients allow. Split sizes count patients.
  Or the split as published lists (:func:`listed_split`, the official repository's files).
* Label fractions (``labeled_<pct>``): one seeded priority order of the train images,
  stratified by each image's rarest label; a fraction is a prefix of that order, so every
  image labelled at 1 % is labelled at 6 % (nested). Optionally the order starts with one
  positive and one negative image per label, so even the smallest fraction has both classes.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import InputError
from ilmoco.names import fraction_column, pct_name

SPLITS = ("train", "val", "test")

def label_matrix(df: pd.DataFrame, meta: DatasetMeta) -> np.ndarray:
    """Binary (n, L) matrix used for stratification (multiclass labels one-hot encoded); a
    masked multi-label entry (-1, an ignored uncertain label) stays -1 and counts as
    neither positive nor negative."""
    if meta.task == "multiclass":
        y = df[meta.label_columns[0]].to_numpy().astype(int)
        return np.eye(meta.n_classes, dtype=np.int8)[y]
    return df[meta.label_columns].to_numpy().astype(np.int8)


def iterative_stratification(
    y: np.ndarray, ratios, rng: np.random.Generator
) -> np.ndarray:
    """Assign each row of binary matrix ``y`` (n, L) to one of ``len(ratios)`` folds.

    Returns fold indices (n,). Fold sizes follow ``ratios`` in rows; label counts per fold
    follow ``ratios`` as closely as the greedy rarest-label-first order allows.
    """
    n, n_labels = y.shape
    ratios = np.asarray(ratios, float) / np.sum(ratios)
    want_rows = ratios * n
    y = (y > 0).astype(np.int8)  # masked labels (-1) are no positives
    want_labels = ratios[:, None] * y.sum(0)[None, :].astype(float)
    fold = np.full(n, -1)
    order = rng.permutation(n)
    remaining = np.ones(n, bool)
    tiebreak = rng.random(len(ratios)) * 1e-9

    def choose(scores_primary, scores_secondary):
        best = np.flatnonzero(np.isclose(scores_primary, scores_primary.max()))
        return int(best[np.argmax(scores_secondary[best] + tiebreak[best])])

    while True:
        counts = (y[remaining] > 0).sum(0)
        active = np.flatnonzero(counts > 0)
        if len(active) == 0:
            break
        lab = active[np.argmin(counts[active])]
        for i in order[remaining[order] & (y[order, lab] > 0)]:
            f = choose(want_labels[:, lab], want_rows)
            fold[i] = f
            remaining[i] = False
            want_labels[f] -= y[i]
            want_rows[f] -= 1
    for i in order[remaining[order]]:
        f = choose(want_rows, want_rows)
        fold[i] = f
        want_rows[f] -= 1
    return fold


def patient_split(
    df: pd.DataFrame, meta: DatasetMeta, ratios=(0.7, 0.2, 0.1), seed: int = 0,
    use_official: bool = False,
) -> pd.Series:
    """Split name per image; patients never span two splits."""
    rng = np.random.default_rng(seed)
    if meta.fixed_split or (use_official and meta.has_official_split):
        if "official_split" not in df.columns:
            raise InputError("split.use_official is set but the dataset has no official split")
        off = df["official_split"].astype(str)
        if meta.fixed_split:
            out = off.rename("split")
            tv = off == "trainval"  # official test kept, train/val drawn by patient
            if tv.any():
                drawn = dataclasses.replace(meta, fixed_split=False, has_official_split=False)
                out = out.copy()
                out.loc[tv] = patient_split(df.loc[tv], drawn, ratios[:2], seed).to_numpy()
            return out
        unlisted = df.loc[~off.isin(["trainval", "test"]), "image_id"]
        if len(unlisted):
            raise InputError(
                f"{len(unlisted)} image(s) in neither train_val_list.txt nor test_list.txt, "
                f"e.g. {list(unlisted.head(3))}; fix the lists or set split.use_official: false"
            )
        out = pd.Series("test", index=df.index, name="split")
        tv = df.loc[off == "trainval"]
        out.loc[tv.index] = patient_split(tv, meta, ratios[:2], seed).to_numpy()
        return out
    y = label_matrix(df, meta)
    codes, patients = pd.factorize(df["patient_id"], sort=True)
    yp = np.zeros((len(patients), y.shape[1]), np.int8)
    np.maximum.at(yp, codes, y)
    if len(patients) < len(ratios):
        raise InputError(
            f"only {len(patients)} patient(s): cannot make a patient-level "
            f"{'/'.join(SPLITS[:len(ratios)])} split; add data"
        )
    fold = iterative_stratification(yp, ratios, rng)
    return pd.Series(np.asarray(SPLITS)[fold[codes]], index=df.index, name="split")


# ------------------------------------------------------------------ published split lists

LIST_CSV_HEADER = ("img_path", "labels")


def read_split_list(path) -> pd.DataFrame:
    """One published split list as rows ``entry`` (the image as the list names it),
    ``labels`` (tuple of ints) and ``line`` (its line in the file).

    Two layouts, told apart by the first line: a CSV with header ``img_path,labels`` (the
    official IDC lists: ``<patient>/<class>/<patch>.png,<label>``), or lines of an image and
    its labels separated by spaces (the official NIH lists, CheXNet's: a file name and 14
    labels 0/1 in the CheXNet order)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the split list ({e})") from None
    numbered = [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        raise InputError(f"{path}: the split list is empty")
    header = [c.strip() for c in numbered[0][1].split(",")]
    rows = []
    if LIST_CSV_HEADER[0] in header:  # (a written index column is ignored)
        if LIST_CSV_HEADER[1] not in header:
            raise InputError(f"{path}: CSV header {header}; a split list has the columns "
                             f"{list(LIST_CSV_HEADER)}")
        at = [header.index(c) for c in LIST_CSV_HEADER]
        for n, text in numbered[1:]:
            fields = text.split(",")
            if len(fields) != len(header):
                raise InputError(f"{path}: line {n} has {len(fields)} fields, the header "
                                 f"{len(header)} ({','.join(header)})")
            rows.append((n, fields[at[0]].strip(), fields[at[1]].split()))
    else:
        for n, text in numbered:
            fields = text.split()
            rows.append((n, fields[0], fields[1:]))
    out = []
    for n, entry, labels in rows:
        try:
            values = tuple(int(v) for v in labels)
        except ValueError:
            raise InputError(f"{path}: line {n}: labels {labels} are not integers") from None
        out.append((entry.replace("\\", "/").removeprefix("./"), values, n))
    return pd.DataFrame(out, columns=["entry", "labels", "line"])


def _match_entries(paths: pd.Series, entries: pd.Series) -> np.ndarray:
    """Manifest row of each list entry, or -1: the entry is the image's path relative to
    the root or a trailing part of it (a file name for NIH, ``<patient>/<class>/<file>`` for
    IDC, whichever folder of the Kaggle archive the file lies in); -2 if ambiguous."""
    parts = paths.astype(str).str.replace("\\", "/", regex=False).str.split("/")
    out = np.full(len(entries), -1)
    depth = entries.str.count("/").to_numpy() + 1
    for d in np.unique(depth):
        keys = parts.map(lambda p, d=d: "/".join(p[-d:]) if len(p) >= d else None)
        index: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key is not None:
                index[key] = -2 if key in index else row
        sel = np.flatnonzero(depth == d)
        out[sel] = [index.get(e, -1) for e in entries.iloc[sel]]
    return out


def _list_names(lists: Mapping[str, str]) -> str:
    """``a, b, c in <folder>`` (one folder) or the three paths."""
    paths = [Path(lists[s]) for s in SPLITS]
    if len({p.parent for p in paths}) == 1:
        return f"({', '.join(p.name for p in paths)} in {paths[0].parent})"
    return f"({', '.join(map(str, paths))})"


def _examples(items, k=3) -> str:
    items = list(items)
    return ", ".join(map(str, items[:k])) + (", ..." if len(items) > k else "")


def listed_split(manifest: pd.DataFrame, meta: DatasetMeta, lists: Mapping[str, str],
                 on_missing: str = "error") -> pd.Series:
    """Split name per manifest row from published train/val/test lists (:func:`read_split_list`),
    "" for an image in no list (kept only under ``on_missing: skip``).

    Every image of the manifest must be in exactly one list and every listed image in the
    manifest (``on_missing: skip`` drops both kinds with a warning); an image in two lists
    and labels that disagree with the manifest's (in ``meta.label_columns`` order) are
    errors. Each problem is one line naming the list file and an image."""
    split = np.full(len(manifest), "", dtype=object)
    source = np.full(len(manifest), "", dtype=object)
    first_line = np.zeros(len(manifest), int)
    y = manifest[meta.label_columns].to_numpy().astype(int)
    for name in SPLITS:
        path = lists[name]
        df = read_split_list(path)
        dup = df["entry"].duplicated(keep=False)
        if dup.any():
            raise InputError(f"{path}: {df.loc[dup, 'entry'].iloc[0]} is listed twice "
                             f"({int(dup.sum())} line(s) with a repeated image); each image "
                             "is listed once")
        rows = _match_entries(manifest["path"], df["entry"])
        if (rows == -2).any():
            raise InputError(f"{path}: {df['entry'][rows == -2].iloc[0]} names more than one "
                             "image of the dataset; give more of its path")
        found = rows >= 0
        same = pd.Series(rows[found]).duplicated(keep=False).to_numpy()
        if same.any():  # two entries naming one image (e.g. by name and by path)
            raise InputError(f"{path}: {df.loc[found, 'entry'].iloc[np.flatnonzero(same)[0]]} "
                             "names an image listed on another line too; each image is "
                             "listed once")
        again = found & (split[np.maximum(rows, 0)] != "")
        if again.any():
            i = np.flatnonzero(again)
            r = rows[i[0]]
            raise InputError(f"{path}: {df['entry'].iloc[i[0]]} is also in {source[r]} "
                             f"(line {first_line[r]}; {len(i)} image(s) of this list are in "
                             "another list too); each image belongs to one split")
        if not found.all():
            missing = df.loc[~found]
            msg = (f"{path}: {missing['entry'].iloc[0]} (line {missing['line'].iloc[0]}) is "
                   f"not an image of the dataset ({len(missing)} listed image(s) missing, "
                   f"e.g. {_examples(missing['entry'])})")
            if on_missing != "skip":
                raise InputError(f"{msg}; restore them, fix the list, or set on_missing: skip"
                                 " for this dataset")
            warnings.warn(f"{msg}; skipped (on_missing: skip)", stacklevel=2)
        df, rows = df.loc[found], rows[found]
        width = len(meta.label_columns)
        bad_width = df["labels"].map(len) != width
        if bad_width.any():
            r = df.loc[bad_width].iloc[0]
            raise InputError(f"{path}: line {r['line']}: {r['entry']} has {len(r['labels'])} "
                             f"label(s); the dataset has {width} ({meta.label_columns})")
        listed = np.array(df["labels"].tolist(), int).reshape(len(df), width)
        differ = (listed != y[rows]).any(1)
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            which = [f"{c}={a} in the list, {b} in the dataset" for c, a, b in
                     zip(meta.label_columns, listed[i], y[rows[i]]) if a != b]
            raise InputError(f"{path}: line {df['line'].iloc[i]}: {df['entry'].iloc[i]} has "
                             f"{'; '.join(which)} ({int(differ.sum())} image(s) whose labels "
                             "disagree); the list and the dataset must agree")
        split[rows], source[rows] = name, str(path)
        first_line[rows] = df["line"].to_numpy()
    unlisted = split == ""
    if unlisted.any():
        msg = (f"{int(unlisted.sum())} of {len(manifest)} image(s) of the dataset are in none "
               f"of the split lists {_list_names(lists)}, e.g. "
               f"{_examples(manifest.loc[unlisted, 'path'])}")
        if on_missing != "skip":
            raise InputError(f"{msg}; fix the lists or set on_missing: skip for this dataset")
        warnings.warn(f"{msg}; left out of the split (on_missing: skip)", stacklevel=2)
    assigned = pd.Series(split, index=manifest.index, name="split")
    listed = assigned[~unlisted]
    per_patient = listed.groupby(manifest.loc[~unlisted, "patient_id"]).nunique()
    shared = per_patient.index[per_patient > 1]
    if len(shared):  # the official lists are patient-disjoint: worth knowing if not
        warnings.warn(f"{len(shared)} patient(s) have images in two splits of the lists, e.g. "
                      f"{_examples(shared)}: the lists split by image there", stacklevel=2)
    return assigned


def _rarest_label_groups(y: np.ndarray) -> np.ndarray:
    prevalence = (y > 0).sum(0).astype(float)
    prevalence[prevalence == 0] = np.inf
    score = np.where(y > 0, prevalence[None, :], np.inf)
    group = np.argmin(score, axis=1)
    group[~(y > 0).any(1)] = y.shape[1]  # images with no positive label
    return group


def stratified_priority(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation whose every prefix keeps each group's share (group = rarest label)."""
    group = _rarest_label_groups(y)
    position = np.empty(len(y))
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        position[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(position, kind="stable")


def label_fractions(
    train: pd.DataFrame, meta: DatasetMeta, pcts, seed: int = 0,
    ensure_each_class: bool = True, on_missing_class: str = "warn",
) -> pd.DataFrame:
    """Boolean ``labeled_<pct>`` columns over ``train`` rows, nested and stratified."""
    n = len(train)
    if n == 0:
        raise InputError("the train split is empty; add data or change split ratios")
    rng = np.random.default_rng(seed + 1_000_003)
    y = label_matrix(train, meta)
    order = stratified_priority(y, rng)
    names = meta.label_columns if meta.task != "multiclass" else [
        f"{meta.label_columns[0]}={k}" for k in range(meta.n_classes)]
    binary_task = meta.task != "multiclass"

    seed_set: list[int] = []
    if ensure_each_class:
        prevalence = (y > 0).sum(0)
        for lab in np.argsort(prevalence, kind="stable"):
            chosen = y[seed_set, lab] if seed_set else np.array([], int)
            for want in ((1, 0) if binary_task else (1,)):
                if (chosen == want).any():
                    continue
                cand = order[y[order, lab] == want]
                if len(cand):
                    seed_set.append(int(cand[0]))
                    chosen = y[seed_set, lab]
    in_seed = np.zeros(n, bool)
    in_seed[seed_set] = True
    priority = np.concatenate([np.asarray(seed_set, int), order[~in_seed[order]]])

    out = {}
    for pct in sorted(pcts):
        target = int(round(n * float(pct) / 100.0))
        if target == 0:
            raise InputError(
                f"label fraction {pct_name(pct)} % of {n} train images leaves no labelled "
                "image; raise the fraction or add data"
            )
        k = max(target, len(seed_set)) if pct < 100 else n
        if k > target and pct < 100:
            warnings.warn(
                f"labeled_{pct_name(pct)}: {k} images instead of {target} to keep one positive "
                "and one negative per label", stacklevel=2)
        mask = np.zeros(n, bool)
        mask[priority[:k]] = True
        out[fraction_column(pct)] = mask
        _check_classes(y[mask], y, names, fraction_column(pct), on_missing_class, binary_task)
    return pd.DataFrame(out, index=train.index)


def _check_classes(y_sub, y_all, names, col, policy, binary_task) -> None:
    problems = []
    for j, name in enumerate(names):
        if (y_all[:, j] > 0).sum() == 0:
            problems.append(f"train has no positive image of {name!r}")
        elif (y_sub[:, j] > 0).sum() == 0:
            problems.append(f"{col} has no positive image of {name!r}")
        elif binary_task and (y_sub[:, j] == 0).sum() == 0 and (y_all[:, j] == 0).any():
            problems.append(f"{col} has no negative image of {name!r}")
    if not problems:
        return
    msg = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
    if policy == "error":
        raise InputError(f"{msg}; lower split.on_missing_class to 'warn' or add data")
    warnings.warn(msg, stacklevel=3)


def labelled_sets(split: pd.DataFrame, pct: float, source) -> dict[str, pd.DataFrame]:
    """Train (labelled at ``pct``), val and test rows of a split; refuses an empty set."""
    col = fraction_column(pct)
    if col not in split.columns:
        raise InputError(f"{source}: no column {col}; add {pct:g} to `fractions`")
    sets = {"train": split[(split["split"] == "train") & split[col].astype(bool)],
            "val": split[split["split"] == "val"], "test": split[split["split"] == "test"]}
    for name, part in sets.items():
        if len(part) == 0:
            raise InputError(f"{source}: the {name} set of {col} is empty; add data")
    return sets


def make_split(
    manifest: pd.DataFrame, meta: DatasetMeta, *, ratios=(0.7, 0.2, 0.1), seed: int = 0,
    fractions=(1, 6, 100), use_official: bool = False, ensure_each_class: bool = True,
    on_missing_class: str = "warn", lists: Mapping[str, str] | None = None,
    on_missing: str = "error",
) -> pd.DataFrame:
    """The ``split.csv`` table: image_id, patient_id, split, labels, aux, labeled_<pct>.

    With ``lists`` (train/val/test -> list file) the split is the lists' (images in none
    of them are left out under ``on_missing: skip``), else the seeded patient-level one."""
    if lists:
        if meta.fixed_split:
            raise InputError(f"split_lists given, but the {meta.format} layout ships its "
                             "own fixed split; remove split_lists")
        split = listed_split(manifest, meta, lists, on_missing)
    else:
        split = patient_split(manifest, meta, ratios, seed, use_official)
    cols = ["image_id", "patient_id"] + meta.label_columns + [
        c for c in meta.aux_columns if c != "official_split"]
    out = manifest[cols].copy()
    out.insert(2, "split", split.to_numpy())
    if lists:
        out = out.loc[out["split"] != ""].reset_index(drop=True)
    train = out.loc[out["split"] == "train"]
    fr = label_fractions(train, meta, fractions, seed, ensure_each_class, on_missing_class)
    for col in fr.columns:
        out[col] = False
        out.loc[fr.index, col] = fr[col].to_numpy()
    return out
