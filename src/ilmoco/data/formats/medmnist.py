"""MedMNIST ``.npz`` files (e.g. ``chestmnist.npz``): arrays, not image files.

The files ship their own train/val/test split and no patient ids; the split stage keeps
their split (``official_split``) and each image counts as its own patient.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ilmoco.data.formats.base import DatasetMeta, require_dir
from ilmoco.io import InputError
from ilmoco.runlog import log

CHESTMNIST_LABELS = [
    "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
    "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia",
]  # fmt: skip
SPLITS = ("train", "val", "test")


def find_npz(root: Path, file: str | None) -> Path:
    if file:
        p = root / file
        if not p.is_file():
            raise InputError(f"{p}: MedMNIST file not found")
        return p
    found = sorted(root.glob("*.npz"))
    if len(found) != 1:
        raise InputError(
            f"{root}: expected exactly one MedMNIST .npz, found {len(found)}; set `file:`"
        )
    return found[0]


def load_arrays(npz_path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(npz_path) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise InputError(f"{npz_path}: cannot read MedMNIST archive ({e})") from None


def image_opener(root) -> Callable[[str], Image.Image]:
    """Opens manifest rows ``<file>.npz#<split>/<i>`` (arrays, not files) as images; each
    archive is read once."""
    root, arrays, lock = Path(root), {}, threading.Lock()

    def open_row(p: str) -> Image.Image:
        fname, key = p.split("#")
        with lock:  # the cache's threads would otherwise race to load the archive
            if fname not in arrays:
                arrays[fname] = load_arrays(root / fname)
        split, i = key.split("/")
        a = arrays[fname][f"{split}_images"][int(i)]
        return Image.fromarray(a.astype(np.uint8), "RGB" if a.ndim == 3 else "L")

    return open_row


def read_medmnist(root, on_missing: str = "error", file: str | None = None):
    root = Path(root)
    require_dir(root, "medmnist")
    npz = find_npz(root, file)
    arrays = load_arrays(npz)
    for s in SPLITS:
        for kind in ("images", "labels"):
            if f"{s}_{kind}" not in arrays:
                raise InputError(f"{npz}: missing array '{s}_{kind}'; not a MedMNIST file")
        n_img, n_lab = len(arrays[f"{s}_images"]), len(arrays[f"{s}_labels"])
        if n_img != n_lab:
            raise InputError(f"{npz}: {s}_labels has {n_lab} rows but {s}_images has {n_img} "
                             "images; labels and images must line up one to one")
    labels = np.concatenate([arrays[f"{s}_labels"].reshape(len(arrays[f"{s}_labels"]), -1)
                             for s in SPLITS])
    n_labels = labels.shape[1]
    if n_labels > 1:
        task = "multilabel"
        names = CHESTMNIST_LABELS if n_labels == 14 else [f"label_{i}" for i in range(n_labels)]
        n_classes = n_labels
    else:
        k = int(labels.max()) + 1
        task = "binary" if k <= 2 else "multiclass"
        names = ["label"]
        n_classes = max(k, 2)
    rows = []
    for s in SPLITS:
        for i in range(len(arrays[f"{s}_images"])):
            rows.append((f"{s}_{i:06d}", f"{npz.name}#{s}/{i}", f"{s}_{i:06d}", s))
    df = pd.DataFrame(rows, columns=["image_id", "path", "patient_id", "official_split"])
    lab = pd.DataFrame(labels.astype(int), columns=names)
    df = pd.concat([df, lab], axis=1)
    img = arrays["train_images"]
    channels = 3 if img.ndim == 4 and img.shape[-1] == 3 else 1
    log(f"{npz}: MedMNIST keeps its own train/val/test split; no patient ids (one per image)")
    meta = DatasetMeta(
        format="medmnist", task=task, label_columns=names, channels=channels, n_classes=n_classes,
        aux_columns=["official_split"], has_official_split=True, fixed_split=True,
        patient_ids=False,
        notes=["MedMNIST split kept as shipped; images count as their own patients"],
    )
    return df, meta
