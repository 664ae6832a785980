"""Your own data through Snakemake, as a user runs it: bad input stops its job with one line
naming the file, column or value and leaves nothing half-written; `snakemake data_report`
builds the data report alone, on a fixture in the CheXpert layout."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from layouts import write_chexpert, write_dicom, write_medmnist
from PIL import Image
from snakerun import DEMO, SMOKE_CONFIG, planned_jobs, snakemake

pytestmark = pytest.mark.slow


def table_root(root: Path, rows, header="file,patient,diagnosis") -> Path:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    for r in rows:
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8), "L").save(
            root / "img" / r.split(",")[0].split("/")[-1])
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


ROWS = ["img/0.png,p0,a", "img/1.png,p1,b", "img/2.png,p2,a", "img/3.png,p3,b"]


def own(root, **over):
    return {"format": "image_table", "root": str(root), "table": "labels.csv",
            "path_column": "file", "patient_column": "patient", "label_columns": ["diagnosis"],
            "channels": 1, **over}


def bad_inputs(tmp: Path) -> dict:
    """name -> (dataset entry, stage that must fail, what its one error line says)."""
    out = {}
    for name, n in (("mm_short", 3), ("mm_long", 9)):
        root = write_medmnist(tmp / name, n=(6, 2, 6), n_labels=1)
        npz = root / "chestmnist.npz"
        arrays = dict(np.load(npz))
        arrays["test_labels"] = arrays["test_labels"][:1].repeat(n, 0)
        np.savez(npz, **arrays)
        out[name] = ({"format": "medmnist", "root": str(root)}, "manifest",
                     f"{npz}: test_labels has {n} rows but test_images has 6 images")
    rows = {
        "short_row": (ROWS[:1] + ["img/1.png,p1"] + ROWS[2:], {},
                      "labels.csv line 3: blank label in column 'diagnosis'"),
        "long_row": (ROWS[:1] + ["img/1.png,p1,b,extra"] + ROWS[2:], {},
                     "Expected 3 fields in line 3, saw 4"),
        "unknown_column": (ROWS, {"label_columns": ["diagnosys"]},
                           "column 'diagnosys' (from `label_columns`) not found"),
        "outside_classes": (ROWS, {"classes": ["a", "c"]},
                            "labels.csv line 3: label 'b' in column 'diagnosis' is not one of "
                            "the declared classes ['a', 'c']"),
        "empty_patient": (ROWS[:2] + ["img/2.png,,a"] + ROWS[3:], {},
                          "labels.csv line 4: empty patient id in column 'patient'"),
        "missing_image": (ROWS, {}, "1 listed image(s) not found under the dataset root, e.g. "
                                    "['img/3.png']"),
    }
    for name, (lines, over, message) in rows.items():
        root = table_root(tmp / name, [ln for ln in lines if ln.count(",") >= 1])
        (root / "labels.csv").write_text("\n".join(["file,patient,diagnosis", *lines]) + "\n")
        if name == "missing_image":
            (root / "img/3.png").unlink()
        out[name] = (own(root, **over), "manifest", message)
    # DICOMs: a truncated file, and one in a transfer syntax no decoder has
    import pydicom
    from pydicom.uid import MPEG2MPML

    for name in ("dicom_cut", "dicom_mpeg"):
        root = tmp / name
        rows = []
        for i in range(4):
            x = np.random.default_rng(i).integers(0, 4096, (16, 16))
            ds = write_dicom(root / "img" / f"{i}.dcm", x, WindowCenter=2048.0,
                             WindowWidth=4096.0)
            rows.append(f"img/{i}.dcm,p{i},{'ab'[i % 2]}")
        bad = root / "img" / "2.dcm"
        if name == "dicom_cut":
            data = bad.read_bytes()
            bad.write_bytes(data[:len(data) - 100])  # the last pixels missing
            message = f"{bad}: cannot decode DICOM pixel data"
        else:
            ds.file_meta.TransferSyntaxUID = MPEG2MPML
            ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
            ds["PixelData"].VR = "OB"
            ds.save_as(bad, enforce_file_format=True)
            message = (f"{bad}: transfer syntax 'MPEG2 Main Profile / Main Level' "
                       f"({MPEG2MPML}) has no pixel decoder")
        (root / "labels.csv").write_text("\n".join(["file,patient,diagnosis", *rows]) + "\n")
        out[name] = (own(root), "cache", message)
    return out


def test_bad_input_through_the_dag_is_one_line_and_leaves_nothing(tmp_path):
    pytest.importorskip("pydicom")
    cases = bad_inputs(tmp_path / "data")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"use_datasets": list(cases),
                                   "datasets": {n: c[0] for n, c in cases.items()}}))
    work = tmp_path / "work"
    work.mkdir()
    targets = [f"results/{n}/data/{'manifest.csv' if stage == 'manifest' else 'cache/images.npy'}"
               for n, (_, stage, _) in cases.items()]
    r = snakemake("--keep-going", *targets, workdir=work,
                  configfiles=(*SMOKE_CONFIG, cfg), check=False)
    assert r.returncode != 0
    # --keep-going runs every case's job whatever the order; the jobs print concurrently
    # into one console, so a job's line may follow another's text on the same line: split
    # before every "ERROR: " as well as at line ends, then match each error to its case
    text = r.stdout + "\n" + r.stderr
    errors = [e for e in re.split(r"\n|(?=ERROR: )", text) if e.startswith("ERROR: ")]
    for name, (_, stage, message) in cases.items():
        mine = [ln for ln in errors if f"/data/{name}/" in ln]
        assert len(mine) == 1 and message in mine[0], (name, mine, errors)
        data = work / "results" / name / "data"
        if stage == "manifest":
            assert not (data / "manifest.csv").exists() and not (data / "dataset.json").exists()
        else:
            assert (data / "manifest.csv").exists()  # earlier stages kept
            assert not (data / "cache" / "images.npy").exists()
        assert not list(data.rglob("*.tmp")) if data.exists() else True


def test_data_report_alone_on_a_chexpert_fixture(tmp_path):
    train = {p: [("frontal", {"Edema": ["1.0", "0.0", "-1.0"][p % 3],
                              "Cardiomegaly": ["0.0", "1.0"][p % 2]}),
                 ("lateral", {"Edema": "1.0"})] for p in range(1, 25)}
    valid = {64540 + p: [("frontal", {"Edema": "1.0" if p % 2 else "0.0"})]
             for p in range(1, 7)}
    root = write_chexpert(tmp_path / "chexpert", train, valid)
    recipe = yaml.safe_load((Path(__file__).parents[1] / "config/recipes/chexpert.yaml")
                            .read_text())
    entry = recipe["datasets"]["chexpert"]
    entry.update(root=str(root), uncertain="ignore", label_columns=["Edema", "Cardiomegaly"])
    recipe["by_format"] = {"image_table": {"image_size": 16}}
    recipe["data_report"] = {"sample_images": 10, "per_class": 4}
    cfg = tmp_path / "chexpert.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    work = tmp_path / "work"
    work.mkdir()
    jobs = planned_jobs("data_report", workdir=work, configfiles=(*SMOKE_CONFIG, cfg))
    assert jobs == {"manifest": 1, "split": 1, "cache": 1, "data_report": 1}
    snakemake("data_report", workdir=work, configfiles=(*SMOKE_CONFIG, cfg))
    rep = work / "results/data_report"
    split = pd.read_csv(work / "results/chexpert/data/split.csv", dtype={"patient_id": str})
    splits = pd.read_csv(rep / "chexpert/splits.csv").set_index("subset")
    for s in ("train", "val", "test"):
        part = split[split["split"] == s]
        assert splits.loc[s, "images"] == len(part)
        assert splits.loc[s, "patients"] == part["patient_id"].nunique()
    assert splits.loc["test", "images"] == 6  # valid.csv is the test set
    lab = split[(split["split"] == "train") & split["labeled_6"]]
    assert splits.loc["train labeled_6", "images"] == len(lab)
    prev = pd.read_csv(rep / "chexpert/prevalence.csv")
    edema = prev[(prev["label"] == "Edema") & (prev["subset"] == "all")].iloc[0]
    assert edema["ignored"] == (split["Edema"] == -1).sum() == 8  # U-Ignore, 8 uncertain
    assert edema["positives"] == (split["Edema"] == 1).sum()
    # the report writes %.6g (up to 5e-6 relative off, more than approx's default rel 1e-6);
    # here 11 positives of 22 known frontal images: 0.5, exact
    assert edema["prevalence"] == pytest.approx(edema["positives"] / edema["known"])
    files = pd.read_csv(rep / "chexpert/files.csv")
    assert files["sampled"].iloc[0] == 10 and files["of_images"].iloc[0] == len(split)
    assert set(files["type"]) == {"JPEG"} and set(files["mode"]) == {"L"}
    assert files["width_max"].max() == 24 and files["height_max"].max() == 20
    sheet = Image.open(rep / "chexpert/contact_sheet.png")
    assert sheet.format == "PNG" and sheet.width > 200 and sheet.height > 150
    arr = np.asarray(sheet.convert("L"))
    assert arr.std() > 20  # images, not an empty canvas
    summary = (rep / "summary.md").read_text()
    assert "## chexpert (`chexpert`)" in summary and "10 of 30 sampled" in summary
    assert not (work / "results/chexpert/pretrain").exists()  # no training happened


def test_data_report_of_the_embedded_demo_is_planned_alone(tmp_path):
    jobs = planned_jobs("data_report", workdir=tmp_path, configfiles=(DEMO,))
    assert jobs == {"synthetic_data": 3, "manifest": 3, "split": 3, "cache": 3,
                    "data_report": 1}
