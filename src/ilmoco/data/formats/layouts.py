"""What each public layout looks like: its file names, label names and how to recognise it.

Facts only (no reading): the readers, the synthetic generators and the layout checks of the
format registry (``ilmoco.config.formats``) import them from here, so a change inside one
reader reruns only the datasets of that format.
"""

from __future__ import annotations

import os
from pathlib import Path

# NIH ChestX-ray14 (Kaggle "nih-chest-xrays"); labels in the CheXNet / official-code order.
NIH_CSV_NAMES = ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"]
NIH_LABELS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
]  # fmt: skip
NO_FINDING = "No Finding"

# IDC breast histopathology (Kaggle "breast-histopathology-images").
IDC_MIRROR = "IDC_regular_ps50_idx5"

# EyePACS diabetic retinopathy (Kaggle 2015 competition), both labelled halves.
EYEPACS_HALVES = {"train": ("trainLabels.csv", "train"),
                  "test": ("retinopathy_solution.csv", "test")}

def find_nih_csv(root: Path) -> Path | None:
    for name in NIH_CSV_NAMES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def idc_patient_dirs(base: Path) -> list[Path]:
    """Folders ``<patient>/`` holding a ``0/`` or ``1/`` class folder (mirror excluded)."""
    out = []
    for e in sorted(os.scandir(base), key=lambda e: e.name):
        if e.is_dir() and e.name != IDC_MIRROR and (
            os.path.isdir(os.path.join(e.path, "0")) or os.path.isdir(os.path.join(e.path, "1"))
        ):
            out.append(Path(e.path))
    return out


def eyepacs_halves_present(root: Path) -> list[str]:
    return [h for h, (csv, _) in EYEPACS_HALVES.items() if (Path(root) / csv).is_file()]


def is_nih(root) -> bool:
    return find_nih_csv(Path(root)) is not None


def is_eyepacs(root) -> bool:
    return bool(eyepacs_halves_present(Path(root)))


def is_medmnist(root) -> bool:
    return any(Path(root).glob("*.npz"))


def is_idc(root) -> bool:
    root = Path(root)
    return bool(idc_patient_dirs(root)) or (root / IDC_MIRROR).is_dir()
