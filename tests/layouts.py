"""Tiny fixture datasets written in the exact public layouts (independent of the synthetic
generators)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")


def png(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)


def write_nih(root: Path, rows, rgba: tuple = (), lists: dict | None = None, size=(20, 16)):
    """rows: (file name, finding labels, patient id). Images go to images_001/images/ and
    images_002/images/ alternately, as in the Kaggle archive; ``rgba`` names RGBA files."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [NIH_HEADER]
    rng = np.random.default_rng(0)
    for k, (name, labels, pid) in enumerate(rows):
        arr = rng.integers(0, 256, size[::-1], dtype=np.uint8)
        folder = root / f"images_{k % 2 + 1:03d}" / "images"
        if name in rgba:
            rgba_arr = np.stack([arr, arr, arr, np.full_like(arr, 255)], -1)
            png(folder / name, rgba_arr, "RGBA")
        else:
            png(folder / name, arr, "L")
        lines.append(f"{name},{labels},{k},{pid},50,M,PA,{size[0]},{size[1]},0.14,0.14")
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    for fname, names in (lists or {}).items():
        (root / fname).write_text("\n".join(names) + "\n")
    return root


def write_idc(root: Path, patients: dict, mirror: bool = True, edge_width: int = 31):
    """patients: pid -> list of (x, y, cls). The last patch of each patient is an edge patch
    narrower than 50 px; ``mirror`` repeats the tree under IDC_regular_ps50_idx5/."""
    rng = np.random.default_rng(1)
    for pid, patches in patients.items():
        for i, (x, y, c) in enumerate(patches):
            w = edge_width if i == len(patches) - 1 else 50
            arr = rng.integers(0, 256, (50, w, 3), dtype=np.uint8)
            name = f"{pid}_idx5_x{x}_y{y}_class{c}.png"
            png(root / pid / str(c) / name, arr, "RGB")
            if mirror:
                m = root / "IDC_regular_ps50_idx5" / pid / str(c)
                m.mkdir(parents=True, exist_ok=True)
                os.link(root / pid / str(c) / name, m / name)
    return root


def write_eyepacs(root: Path, levels: dict, sizes=((40, 30), (36, 52)),
                  test: dict | None = None):
    """levels: '<patient>_<eye>' -> grade; JPEGs of varying sizes in train/ and
    trainLabels.csv. ``test``: '<patient>_<eye>' -> (grade, Usage) for Kaggle's labelled test
    half (test/ and retinopathy_solution.csv, columns image,level,Usage)."""
    rng = np.random.default_rng(2)

    def half(folder, rows, header, csv):
        (root / folder).mkdir(parents=True, exist_ok=True)
        lines = [header]
        for k, (name, value) in enumerate(rows.items()):
            w, h = sizes[k % len(sizes)]
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr, "RGB").save(root / folder / f"{name}.jpeg", quality=95)
            lines.append(",".join([name, *map(str, value if isinstance(value, tuple)
                                              else (value,))]))
        (root / csv).write_text("\n".join(lines) + "\n")

    half("train", levels, "image,level", "trainLabels.csv")
    if test is not None:
        half("test", test, "image,level,Usage", "retinopathy_solution.csv")
    return root


def write_medmnist(root: Path, name="chestmnist.npz", n=(12, 4, 6), n_labels=14, rgb=False):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        shape = (k, 28, 28, 3) if rgb else (k, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (k, n_labels), dtype=np.uint8)
    np.savez(root / name, **arrays)
    return root


def nih_rows(n_patients=30, per_patient=2, seed=0):
    """Rows with realistic label structure: ~half 'No Finding', some multi-label."""
    from ilmoco.data.formats.layouts import NIH_LABELS

    rng = np.random.default_rng(seed)
    rows = []
    for p in range(1, n_patients + 1):
        for f in range(per_patient):
            labs = [n for n in NIH_LABELS if rng.random() < 0.08]
            rows.append((f"{p:08d}_{f:03d}.png", "|".join(labs) or "No Finding", p))
    return rows


def write_dicom(path: Path, stored: np.ndarray, photometric="MONOCHROME2", bits_stored=12,
                signed=False, frames=None, **attributes):
    """A DICOM file of ``stored`` values (uncompressed, explicit VR little endian) written
    with pydicom; ``attributes`` set data elements (RescaleSlope, WindowCenter, ...)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "anon"
    arr = np.asarray(stored).astype(np.int16 if signed else np.uint16)
    ds.set_pixel_data(arr, photometric, bits_stored)
    if frames:
        ds.NumberOfFrames = frames
    for key, value in attributes.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds
