"""``image_folder``: a folder of class folders, as torchvision's ``ImageFolder``.

    <root>/<class>/**/<image>               the class is the folder name (sorted, as
                                            ImageFolder's ``find_classes``), images found
                                            recursively below it
    <root>/<split>/<class>/**/<image>       the same under train/, val/ (or valid/,
                                            validation/) and test/: kept as the official split
                                            (without val/: train and val drawn by patient
                                            from train/)

Images: ImageFolder's extensions (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp) and DICOM
(.dcm .dicom); other files are ignored, with a count. ``classes`` declares the classes and
their order (a folder outside them is an error); ``patient_regex`` finds the patient in the
relative path (default: one patient per image, with a warning).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ilmoco.data.dicom import SUFFIXES as DICOM_SUFFIXES
from ilmoco.data.formats.base import DatasetMeta, require_dir
from ilmoco.data.formats.generic import (
    SPLIT_NAMES,
    check_split_leaks,
    detect_channels,
    no_patient_note,
    patients_from_regex,
)
from ilmoco.io import InputError
from ilmoco.runlog import log

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
              *DICOM_SUFFIXES)
LABEL = "label"


def _subdirs(d: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))


def _loose_files(d: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(d) if e.is_file())


def split_folders(root: Path) -> dict[str, str] | None:
    """``{folder: split}`` when every folder at the root is a split name, else None."""
    dirs = _subdirs(root)
    if not dirs or not all(d.lower() in SPLIT_NAMES for d in dirs):
        return None
    splits = {d: SPLIT_NAMES[d.lower()] for d in dirs}
    if "test" not in splits.values():
        raise InputError(f"{root}: split folders {dirs} but none is test/; add one, or move "
                         "the class folders up to the root to draw a split")
    if "val" not in splits.values():
        splits = {d: "trainval" if s == "train" else s for d, s in splits.items()}
    return splits


def is_image_folder(root) -> bool:
    """A root with folders (the reader checks that they are class or split folders)."""
    root = Path(root)
    try:
        dirs = _subdirs(root)
    except OSError:
        return False
    return bool(dirs)


def read_image_folder(root, on_missing: str = "error", classes: Sequence | None = None,
                      patient_regex: str | None = None, channels: int | None = None
                      ) -> tuple[pd.DataFrame, DatasetMeta]:
    root = Path(root)
    require_dir(root, "image_folder")
    splits = split_folders(root)
    bases = {root / d: s for d, s in splits.items()} if splits else {root: None}
    if splits:
        log(f"{root}: split folders {splits} kept as the official split")
    found = sorted({c for b in bases for c in _subdirs(b)})
    if classes is not None:
        names = [str(c) for c in classes]
        stray = [c for c in found if c not in names]
        if stray:
            raise InputError(f"{root}: class folder {stray[0]!r} is not one of the declared "
                             f"classes {names}")
    else:
        names = found
    if len(names) < 2:
        raise InputError(f"{root}: {len(names)} class folder(s) {names}; expected "
                         "<root>/<class>/<image> with two or more classes")
    rows, ignored = [], []
    for base, split in bases.items():
        ignored += [str((base / f).relative_to(root)) for f in _loose_files(base)]
        for k, name in enumerate(names):
            cdir = base / name
            if not cdir.is_dir():
                if split is None:
                    raise InputError(f"{cdir}: declared class {name!r} has no folder")
                log(f"{root}: split folder {base.name}/ has no class {name!r}")
                continue
            n_before = len(rows)
            for dirpath, dirnames, files in os.walk(cdir, followlinks=True):
                dirnames.sort()
                for f in sorted(files):
                    rel = str((Path(dirpath) / f).relative_to(root))
                    if f.startswith(".") or Path(f).suffix.lower() not in EXTENSIONS:
                        ignored.append(rel)
                    else:
                        rows.append((rel, rel, k, split))
            if len(rows) == n_before:
                raise InputError(f"{cdir}: class folder holds no image ({' '.join(EXTENSIONS)})")
    if ignored:
        log(f"{root}: ignored {len(ignored)} file(s) that are not images in a class folder, "
            f"e.g. {ignored[:3]}")
    df = pd.DataFrame(rows, columns=["image_id", "path", LABEL, "official_split"])
    notes = []
    if patient_regex:
        df.insert(2, "patient_id", patients_from_regex(df["path"], patient_regex, root))
    else:
        notes.append(no_patient_note(root))
        df.insert(2, "patient_id", df["image_id"])
    if splits:
        check_split_leaks(df, root)
    else:
        df = df.drop(columns="official_split")
    if channels is None:
        channels = detect_channels(root, list(df["path"]), root)
    log(f"{root}: {len(df)} images in {len(names)} classes "
        + ", ".join(f"{n} {int((df[LABEL] == k).sum())}" for k, n in enumerate(names)))
    meta = DatasetMeta(
        format="image_folder", task="binary" if len(names) == 2 else "multiclass",
        label_columns=[LABEL], channels=int(channels), n_classes=len(names),
        aux_columns=["official_split"] if splits else [], has_official_split=bool(splits),
        fixed_split=bool(splits), patient_ids=bool(patient_regex), notes=notes,
        classes=names,
    )
    return df, meta
