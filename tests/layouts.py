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


def write_nih_split_lists(folder: Path, rows, splits: dict, names=None) -> dict:
    """The official NIH split lists (chest_xray_14_{train,val,test}_list.txt): one line per
    image, ``<file> <14 labels 0/1>`` separated by spaces, the labels in the CheXNet order.
    ``rows``: (file name, finding labels, patient) as for :func:`write_nih`; ``splits``:
    split -> the file names it lists; ``names``: list file names (default the official)."""
    from ilmoco.data.formats.layouts import NIH_LABELS

    labels = {name: findings.split("|") for name, findings, _ in rows}
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, files in splits.items():
        path = folder / (names or {}).get(split, f"chest_xray_14_{split}_list.txt")
        path.write_text("".join(
            f"{f} " + " ".join(str(int(lab in labels[f])) for lab in NIH_LABELS) + "\n"
            for f in files))
        out[split] = str(path)
    return out


def write_idc_split_csvs(folder: Path, splits: dict) -> dict:
    """The official IDC split lists ({train,val,test}_split.csv): header ``img_path,labels``,
    one row ``<patient>/<class>/<patch file>.png,<class>`` per patch. ``splits``: split ->
    (patient, x, y, class) tuples."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, patches in splits.items():
        path = folder / f"{split}_split.csv"
        path.write_text("img_path,labels\n" + "".join(
            f"{pid}/{c}/{pid}_idx5_x{x}_y{y}_class{c}.png,{c}\n" for pid, x, y, c in patches))
        out[split] = str(path)
    return out


# ------------------------------------------------------------------ your own data

CHEXPERT_LABELS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
                   "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
                   "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
                   "Support Devices"]
CHEXPERT_HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)


def write_chexpert(root: Path, train: dict, valid: dict, size=(24, 20)):
    """CheXpert-v1.0-small as unpacked: ``CheXpert-v1.0-small/{train,valid}.csv`` whose
    ``Path`` column is relative to the folder holding CheXpert-v1.0-small/, and
    ``train/patient<5 digits>/study<n>/view<k>_<frontal|lateral>.jpg``. ``train``/``valid``:
    patient number -> list of (view, {label: '1.0' | '0.0' | '-1.0'}) per image (study 1;
    unlisted labels blank, as in the release)."""
    base = root / "CheXpert-v1.0-small"
    rng = np.random.default_rng(5)
    for half, patients in (("train", train), ("valid", valid)):
        lines = [CHEXPERT_HEADER]
        for pid, views in patients.items():
            for k, (view, labels) in enumerate(views, start=1):
                rel = f"CheXpert-v1.0-small/{half}/patient{pid:05d}/study1/view{k}_{view}.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                arr = rng.integers(0, 256, size[::-1], dtype=np.uint8)
                Image.fromarray(arr, "L").save(root / rel, quality=95)
                frontal = view == "frontal"
                cells = [labels.get(n, "") for n in CHEXPERT_LABELS]
                lines.append(",".join([rel, "Female", "68", "Frontal" if frontal else "Lateral",
                                       "AP" if frontal else "", *cells]))
        (base / f"{half}.csv").write_text("\n".join(lines) + "\n")
    return root


MIMIC_LABELS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity",
                "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax",
                "Support Devices"]
MIMIC_META_COLUMNS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                      "ViewPosition", "Rows", "Columns", "StudyDate", "StudyTime",
                      "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
                      "PatientOrientationCodeSequence_CodeMeaning"]


def write_mimic(root: Path, images, labels: dict, splits: dict, size=(20, 24)):
    """MIMIC-CXR-JPG 2.0.0 as distributed: ``mimic-cxr-2.0.0-{metadata,chexpert,split}.csv.gz``
    at the root, ``files/p<2 digits>/p<subject>/s<study>/<dicom_id>.jpg``. ``images``:
    (dicom_id, subject_id, study_id, ViewPosition); ``labels``: (subject, study) -> {label:
    '1.0' | '0.0' | '-1.0'}; ``splits``: dicom_id -> train | validate | test."""
    import pandas as pd

    rng = np.random.default_rng(6)
    meta = []
    for dicom_id, subject, study, view in images:
        rel = root / f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom_id}.jpg"
        rel.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8), "L").save(rel)
        meta.append([dicom_id, subject, study, "CHEST (PA AND LAT)", view, size[1], size[0],
                     21800506, 213014.531, "CHEST (PA AND LAT)",
                     "postero-anterior" if view == "PA" else "lateral", "Erect"])
    pd.DataFrame(meta, columns=MIMIC_META_COLUMNS).to_csv(
        root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    rows = [[s, t, *[lab.get(n, "") for n in MIMIC_LABELS]] for (s, t), lab in labels.items()]
    pd.DataFrame(rows, columns=["subject_id", "study_id", *MIMIC_LABELS]).to_csv(
        root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    split_rows = [[d, t, s, splits[d]] for d, s, t, _ in images]
    pd.DataFrame(split_rows, columns=["dicom_id", "study_id", "subject_id", "split"]).to_csv(
        root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    return root


def write_image_folder(root: Path, counts: dict, split: str | None = None, ext=".png",
                       nested: bool = False):
    """``<root>[/<split>]/<class>/<image>`` (torchvision ImageFolder); ``counts``: class ->
    number of images; ``nested`` puts every second image one folder deeper."""
    rng = np.random.default_rng(7)
    base = root / split if split else root
    for cls, n in counts.items():
        for i in range(n):
            sub = base / cls / ("deeper" if nested and i % 2 else "")
            sub.mkdir(parents=True, exist_ok=True)
            arr = rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)
            Image.fromarray(arr, "RGB").save(sub / f"img{i:03d}{ext}")
    return root


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
