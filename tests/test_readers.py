"""Readers on fixture files written in the real Kaggle/MedMNIST layouts, quirks included."""

import numpy as np
import pandas as pd
import pytest
from layouts import nih_rows, write_eyepacs, write_idc, write_medmnist, write_nih
from stagedata import read_format

from ilmoco.data.formats.layouts import NIH_LABELS
from ilmoco.data.split import make_split
from ilmoco.io import InputError


def test_nih_header_quirks_labels_and_paths(tmp_path):
    rows = [("00000001_000.png", "Cardiomegaly|Effusion", 1),
            ("00000001_001.png", "No Finding", 1),
            ("00000002_000.png", "Hernia", 2)]
    write_nih(tmp_path, rows, rgba=("00000002_000.png",))
    df, meta = read_format("nih_cxr14", tmp_path)
    assert meta.task == "multilabel" and meta.label_columns == NIH_LABELS and meta.channels == 1
    assert list(df.columns[:3]) == ["image_id", "path", "patient_id"]
    assert list(df["image_id"]) == ["00000001_000", "00000001_001", "00000002_000"]
    # images_001/images and images_002/images, as in the archive
    assert df["path"].tolist() == ["images_001/images/00000001_000.png",
                                   "images_002/images/00000001_001.png",
                                   "images_001/images/00000002_000.png"]
    assert df["patient_id"].tolist() == ["1", "1", "2"]
    labels = df[NIH_LABELS].to_numpy()
    assert labels[0].sum() == 2 and df.loc[0, "Cardiomegaly"] == 1 and df.loc[0, "Effusion"] == 1
    assert labels[1].sum() == 0  # No Finding = all zeros
    assert df.loc[2, "Hernia"] == 1 and labels[2].sum() == 1
    assert not any(c.startswith("Unnamed") for c in df.columns)  # trailing comma dropped


def test_nih_official_lists(tmp_path):
    rows = nih_rows(4, 1)
    names = [r[0] for r in rows]
    write_nih(tmp_path, rows, lists={"train_val_list.txt": names[:3],
                                     "test_list.txt": names[3:]})
    df, meta = read_format("nih_cxr14", tmp_path)
    assert meta.has_official_split
    assert df["official_split"].tolist() == ["trainval"] * 3 + ["test"]


def test_nih_unknown_label(tmp_path):
    write_nih(tmp_path, [("00000001_000.png", "Cardiomegaly|Pneumonitis", 1)])
    with pytest.raises(InputError,
                       match=r"Data_Entry_2017.csv: unknown label 'Pneumonitis' in row 2"):
        read_format("nih_cxr14", tmp_path)


def test_nih_missing_images_error_and_skip(tmp_path):
    rows = nih_rows(5, 1)
    write_nih(tmp_path, rows)
    for name in (rows[1][0], rows[3][0]):
        next(tmp_path.glob(f"images_*/images/{name}")).unlink()
    with pytest.raises(InputError) as e:
        read_format("nih_cxr14", tmp_path)
    msg = str(e.value)
    assert "2 listed image(s) not found" in msg and rows[1][0] in msg and "\n" not in msg
    df, _ = read_format("nih_cxr14", tmp_path, on_missing="skip")
    assert len(df) == 3 and rows[1][0][:-4] not in set(df["image_id"])


def test_nih_missing_column_and_duplicates(tmp_path):
    write_nih(tmp_path, nih_rows(2, 1))
    csv = tmp_path / "Data_Entry_2017.csv"
    text = csv.read_text()
    csv.write_text(text.replace("Finding Labels", "Findings"))
    with pytest.raises(InputError, match=r"missing required column.*'Finding Labels'"):
        read_format("nih_cxr14", tmp_path)
    lines = text.splitlines()
    csv.write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(InputError, match="duplicate image id"):
        read_format("nih_cxr14", tmp_path)


def test_idc_mirror_counted_once_and_edge_patches(tmp_path):
    write_idc(tmp_path, {"8863": [(1, 1, 0), (51, 1, 1), (101, 1, 0)],
                         "9010": [(1, 51, 1), (51, 51, 0)]})
    assert (tmp_path / "IDC_regular_ps50_idx5" / "8863" / "1").is_dir()
    df, meta = read_format("idc_breast", tmp_path)
    assert len(df) == 5  # not 10: the mirror folder is the same patches
    assert meta.task == "binary" and meta.label_columns == ["idc"] and meta.channels == 3
    assert df["image_id"].is_unique
    assert set(df["patient_id"]) == {"8863", "9010"}
    row = df.set_index("image_id").loc["8863_idx5_x51_y1_class1"]
    assert row["idc"] == 1 and row["path"] == "8863/1/8863_idx5_x51_y1_class1.png"
    assert not df["path"].str.startswith("IDC_regular").any()


def test_idc_only_mirror_and_bad_names(tmp_path):
    root = tmp_path / "a"
    write_idc(root, {"10": [(1, 1, 0), (51, 1, 1)]})
    import shutil

    shutil.rmtree(root / "10")  # only the mirror copy remains
    df, _ = read_format("idc_breast", root)
    assert len(df) == 2 and df["path"].str.startswith("IDC_regular_ps50_idx5/").all()
    bad = tmp_path / "b"
    write_idc(bad, {"10": [(1, 1, 0)]}, mirror=False)
    (bad / "10" / "0" / "10_idx5_x1_y1_class0.png").rename(bad / "10" / "0" / "10_x1_class0.png")
    with pytest.raises(InputError, match="does not match"):
        read_format("idc_breast", bad)
    wrong = tmp_path / "c"
    write_idc(wrong, {"10": [(1, 1, 0)]}, mirror=False)
    (wrong / "10" / "1").mkdir()
    (wrong / "10" / "0" / "10_idx5_x1_y1_class0.png").rename(
        wrong / "10" / "1" / "10_idx5_x1_y1_class0.png")
    with pytest.raises(InputError, match="class 0 but it sits in 10/1/"):
        read_format("idc_breast", wrong)


def test_eyepacs_referable_and_patients(tmp_path):
    write_eyepacs(tmp_path, {"10_left": 0, "10_right": 2, "13_left": 1, "13_right": 4})
    df, meta = read_format("eyepacs_dr", tmp_path)
    assert df["referable"].tolist() == [0, 1, 0, 1]
    assert df["level"].tolist() == [0, 2, 1, 4]
    assert df["patient_id"].tolist() == ["10", "10", "13", "13"]
    assert df["path"].tolist()[0] == "train/10_left.jpeg"
    assert meta.task == "binary" and meta.label_columns == ["referable"]


def test_eyepacs_reads_both_halves(tmp_path):
    write_eyepacs(tmp_path, {"10_left": 0, "10_right": 2, "13_left": 1, "13_right": 1},
                  test={"1_left": (3, "Public"), "1_right": (0, "Public"),
                        "4_left": (2, "Private"), "4_right": (1, "Private"),
                        "7_left": (0, "Private"), "7_right": (4, "Public")})
    df, meta = read_format("eyepacs_dr", tmp_path)
    assert len(df) == 10 and df["half"].value_counts().to_dict() == {"test": 6, "train": 4}
    test = df[df["half"] == "test"].set_index("image_id")
    assert test["level"].to_dict() == {"1_left": 3, "1_right": 0, "4_left": 2, "4_right": 1,
                                       "7_left": 0, "7_right": 4}
    assert test.loc["4_left", "usage"] == "Private" and test.loc["1_left", "referable"] == 1
    assert test.loc["7_right", "path"] == "test/7_right.jpeg"
    assert set(df.loc[df["half"] == "train", "usage"]) == {"Train"}
    halves = df.groupby("half")["patient_id"].apply(set)
    assert not halves["train"] & halves["test"]  # disjoint patients
    assert {"half", "usage", "level"} <= set(meta.aux_columns)
    only_train, _ = read_format("eyepacs_dr", tmp_path, halves=["train"])
    assert len(only_train) == 4 and set(only_train["half"]) == {"train"}
    only_test, _ = read_format("eyepacs_dr", tmp_path, halves=["test"])
    assert len(only_test) == 6


def test_eyepacs_halves_errors(tmp_path):
    write_eyepacs(tmp_path, {"10_left": 0, "10_right": 2})
    with pytest.raises(InputError, match=r"halves \['test'\] requested but "
                                         r"\['retinopathy_solution.csv'\] not found"):
        read_format("eyepacs_dr", tmp_path, halves=["test"])
    write_eyepacs(tmp_path, {"10_left": 0, "10_right": 2}, test={"10_left": (1, "Public")})
    with pytest.raises(InputError, match="appear in both the train and the test half"):
        read_format("eyepacs_dr", tmp_path)
    write_eyepacs(tmp_path / "u", {"2_left": 0}, test={"3_left": (1, "Hidden")})
    with pytest.raises(InputError, match="Usage 'Hidden' is neither Public nor Private"):
        read_format("eyepacs_dr", tmp_path / "u")


def test_eyepacs_bad_level_and_missing(tmp_path):
    write_eyepacs(tmp_path, {"10_left": 0, "10_right": 7})
    with pytest.raises(InputError, match=r"unknown label level='7' for image 10_right"):
        read_format("eyepacs_dr", tmp_path)
    write_eyepacs(tmp_path, {"10_left": 0, "10_right": 1})
    (tmp_path / "train" / "10_right.jpeg").unlink()
    with pytest.raises(InputError, match="1 listed image"):
        read_format("eyepacs_dr", tmp_path)


# jama16-retina-replication's bin2 (eyepacs.sh), the official code's EyePACS set
JAMA16 = {"negatives": 71_548, "kept_negatives": 48_784, "positives": 17_154,
          "train": (40_688, 16_458), "test": (8_096, 696)}


def test_bin2_has_the_jama16_counts_on_the_full_dataset():
    from ilmoco.data.formats.eyepacs import bin2

    n0, n1 = JAMA16["negatives"], JAMA16["positives"]
    df = pd.DataFrame({"image_id": [f"{i}_{'left' if i % 2 else 'right'}"
                                    for i in range(n0 + n1)],
                       "referable": np.r_[np.zeros(n0, int), np.ones(n1, int)]})
    n = pd.crosstab(bin2(df), df["referable"])
    assert (n.loc["train"] + n.loc["val"]).tolist() == list(JAMA16["train"])
    assert n.loc["test"].tolist() == list(JAMA16["test"])
    assert n.loc[""].tolist() == [n0 - JAMA16["kept_negatives"], 0]  # every grade >= 2 kept
    train = n.loc["train"] + n.loc["val"]
    assert (n.loc["val"] == (train * 0.2).round()).all()  # a fifth of train, per class


def test_bin2_on_a_fixture_keeps_the_proportions_and_splits_by_image(tmp_path):
    rng = np.random.default_rng(5)
    grades = rng.choice(5, size=240, p=[0.72, 0.07, 0.15, 0.03, 0.03])
    names = [f"{p}_{eye}" for p in range(1, 121) for eye in ("left", "right")]
    write_eyepacs(tmp_path, {n: int(g) for n, g in zip(names[:100], grades[:100])},
                  test={n: (int(g), "Public") for n, g in zip(names[100:], grades[100:])})
    df, meta = read_format("eyepacs_dr", tmp_path, subset="bin2")
    n0, n1 = int((grades < 2).sum()), int((grades >= 2).sum())
    kept = round(n0 * JAMA16["kept_negatives"] / JAMA16["negatives"])
    train0 = round(kept * JAMA16["train"][0] / JAMA16["kept_negatives"])
    train1 = round(n1 * JAMA16["train"][1] / JAMA16["positives"])
    n = df.groupby(["official_split", "referable"]).size().unstack(fill_value=0)
    assert (n.loc["train"] + n.loc["val"]).tolist() == [train0, train1]
    assert n.loc["test"].tolist() == [kept - train0, n1 - train1]
    assert n.loc["val"].tolist() == [round(train0 * 0.2), round(train1 * 0.2)]
    assert len(df) == kept + n1 and set(df["level"][df["referable"] == 1]) <= {2, 3, 4}
    # the test set's prevalence is jama16's (7.9 %), far below train's (28.8 %)
    assert n.loc["test", 1] / n.loc["test"].sum() < 0.5 * (n1 - n.loc["test", 1]) / (
        len(df) - n.loc["test"].sum())
    assert meta.fixed_split and "official_split" in meta.aux_columns
    # split by image, not by patient: some patients have an eye in two splits
    per_patient = df.groupby("patient_id")["official_split"].nunique()
    assert (per_patient > 1).any()
    s = make_split(df, meta, fractions=(6, 100))
    assert (s["split"] == df["official_split"]).all()
    assert not s.loc[s["split"] != "train", "labeled_6"].any()
    again, _ = read_format("eyepacs_dr", tmp_path, subset="bin2")
    assert again.equals(df)  # the construction is seeded
    whole, _ = read_format("eyepacs_dr", tmp_path, subset="all")
    assert len(whole) == 240 and "official_split" not in whole


def test_medmnist_keeps_its_split(tmp_path):
    write_medmnist(tmp_path)
    df, meta = read_format("medmnist", tmp_path)
    assert meta.task == "multilabel" and len(meta.label_columns) == 14
    assert df["official_split"].value_counts().to_dict() == {"train": 12, "test": 6, "val": 4}
    assert (df["patient_id"] == df["image_id"]).all() and not meta.patient_ids
    z = np.load(tmp_path / "chestmnist.npz")
    assert (df.loc[df["official_split"] == "val", meta.label_columns].to_numpy()
            == z["val_labels"]).all()


def test_medmnist_binary(tmp_path):
    write_medmnist(tmp_path, "breastmnist.npz", n_labels=1)
    df, meta = read_format("medmnist", tmp_path)
    assert meta.task == "binary" and meta.label_columns == ["label"]


@pytest.mark.parametrize("setup,fmt,match", [
    ("empty", "nih_cxr14", "is empty"),
    ("missing", "idc_breast", "does not exist"),
    ("junk", "eyepacs_dr", "matches no known layout"),
    ("nih", "eyepacs_dr", "it looks like nih_cxr14"),
])
def test_root_errors(tmp_path, setup, fmt, match):
    root = tmp_path / "root"
    if setup != "missing":
        root.mkdir()
    if setup == "junk":
        (root / "notes.txt").write_text("hello")
    if setup == "nih":
        write_nih(root, nih_rows(2, 1))
    with pytest.raises(InputError, match=match):
        read_format(fmt, root)


def test_each_layout_check_recognises_its_own_layout_only(tmp_path):
    from ilmoco.config.formats import FORMATS
    from ilmoco.imports import load_object

    roots = {"nih_cxr14": write_nih(tmp_path / "n", nih_rows(1, 1)),
             "idc_breast": write_idc(tmp_path / "i", {"1": [(1, 1, 0)]}),
             "eyepacs_dr": write_eyepacs(tmp_path / "e", {"1_left": 0}),
             "medmnist": write_medmnist(tmp_path / "m")}
    for fmt, root in roots.items():
        found = [name for name, f in FORMATS.items()
                 if name in roots and load_object(f.detect)(root)]
        assert found == [fmt], (fmt, found)
    # a table may sit beside any images: image_table takes every root (its reader checks
    # the table), so it is generic and never offered as a wrong root's look-alike
    table = FORMATS["image_table"]
    assert table.generic and all(load_object(table.detect)(r) for r in roots.values())


def test_manifest_ids_are_strings(tmp_path):
    write_eyepacs(tmp_path, {"007_left": 0, "007_right": 0})
    df, _ = read_format("eyepacs_dr", tmp_path)
    assert df["patient_id"].tolist() == ["007", "007"]  # not the integer 7
    assert isinstance(df, pd.DataFrame)
