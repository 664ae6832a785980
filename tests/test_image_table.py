"""Your own data: the ``image_table`` and ``image_folder`` readers on fixture files in the
exact layouts of CheXpert, MIMIC-CXR-JPG and torchvision's ImageFolder (and a plain CSV +
PNG/JPEG folder, TSV and Parquet), the recipes' configs on them, uncertain and blank labels,
and the checks that labels and images line up in every reader."""

import gzip

import numpy as np
import pandas as pd
import pytest
import yaml
from layouts import (
    MIMIC_LABELS,
    write_chexpert,
    write_idc,
    write_image_folder,
    write_medmnist,
    write_mimic,
)
from PIL import Image
from snakerun import ROOT
from stagedata import read_format, validated

from ilmoco.config.resolve import resolve
from ilmoco.io import ConfigError, InputError


def own_csv(root, rows, header="file,patient,diagnosis,site", images=None, ext=".png"):
    """``labels.csv`` + ``images/<name>``: rows are (name, patient, label, site)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, *_ in rows:
        if images is None or name in images:
            arr = rng.integers(0, 256, (14, 18, 3), dtype=np.uint8)
            Image.fromarray(arr, "RGB").save(root / "images" / name)
    lines = [header] + [",".join(f"images/{r[0]}" if i == 0 else str(v)
                                 for i, v in enumerate(r)) for r in rows]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


OWN = dict(table="labels.csv", path_column="file", patient_column="patient",
           label_columns=("diagnosis",))


def test_csv_with_class_names_multiclass_extra_columns_kept(tmp_path):
    rows = [(f"{i}.jpg" if i % 2 else f"{i}.png", f"p{i // 2}", ["cyst", "nodule", "normal"][i % 3],
             "A" if i < 4 else "B") for i in range(9)]
    own_csv(tmp_path, rows)
    df, meta = read_format("image_table", tmp_path, **OWN)
    assert meta.task == "multiclass" and meta.n_classes == 3
    assert meta.classes == ["cyst", "nodule", "normal"]  # sorted names, code = position
    assert df["diagnosis"].tolist() == [i % 3 for i in range(9)]
    assert df["path"].tolist() == [f"images/{r[0]}" for r in rows]
    assert df["image_id"].tolist() == df["path"].tolist()
    assert df["patient_id"].tolist() == [r[1] for r in rows]
    assert df["site"].tolist() == [r[3] for r in rows] and meta.aux_columns == ["site"]
    assert meta.channels == 3  # RGB images
    # declared classes fix the order; binary when two
    df, meta = read_format("image_table", tmp_path, **{**OWN, "classes": ("normal", "nodule",
                                                                           "cyst")})
    assert df["diagnosis"].tolist() == [(2, 1, 0)[i % 3] for i in range(9)]


def test_integer_labels_binary_and_channels(tmp_path):
    rows = [(f"{i}.png", f"p{i}", i % 2, "x") for i in range(6)]
    own_csv(tmp_path, rows)
    df, meta = read_format("image_table", tmp_path, **OWN, channels=1)
    assert meta.task == "binary" and meta.n_classes == 2 and meta.channels == 1
    assert df["diagnosis"].tolist() == [i % 2 for i in range(6)]


def test_tsv_and_parquet_manifests_read_as_the_csv(tmp_path):
    rows = [(f"{i}.png", f"p{i // 2}", ["a", "b", "c"][i % 3], "s") for i in range(6)]
    own_csv(tmp_path, rows)
    ref, _ = read_format("image_table", tmp_path, **OWN)
    table = pd.read_csv(tmp_path / "labels.csv", dtype=str)
    table.to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    tsv, _ = read_format("image_table", tmp_path, **{**OWN, "table": "labels.tsv"})
    pd.testing.assert_frame_equal(tsv, ref)
    pytest.importorskip("pyarrow")
    table.to_parquet(tmp_path / "labels.parquet")
    pq, _ = read_format("image_table", tmp_path, **{**OWN, "table": "labels.parquet"})
    pd.testing.assert_frame_equal(pq, ref)


def test_parquet_without_pyarrow_names_the_package(tmp_path, monkeypatch):
    import sys

    own_csv(tmp_path, [("0.png", "p0", "a", "s"), ("1.png", "p1", "b", "s")])
    (tmp_path / "labels.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    with pytest.raises(InputError, match=r"labels.parquet: reading Parquet needs pyarrow: pip "
                                         r"install pyarrow==26.0.1$"):
        read_format("image_table", tmp_path, **{**OWN, "table": "labels.parquet"})


def test_patient_regex_and_no_patient_column(tmp_path, capsys):
    rows = [(f"pat{i // 3:02d}_{i}.png", "-", "ab"[i % 2], "s") for i in range(6)]
    own_csv(tmp_path, rows)
    opts = {**OWN, "patient_column": None}
    df, meta = read_format("image_table", tmp_path, **opts, patient_regex=r"pat(\d+)_")
    assert df["patient_id"].tolist() == ["00"] * 3 + ["01"] * 3 and meta.patient_ids
    df, meta = read_format("image_table", tmp_path, **opts)
    assert df["patient_id"].tolist() == df["image_id"].tolist() and not meta.patient_ids
    assert "each image counts as its own patient" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"patient_regex 'zz\(\\d\+\)' finds no patient id in "
                                         r"path 'images/pat00_0.png'"):
        read_format("image_table", tmp_path, **opts, patient_regex=r"zz(\d+)")


def test_chexpert_layout_frontal_filter_and_uncertainty_policies(tmp_path):
    """train.csv / valid.csv as released (blank = not mentioned, -1.0 = uncertain), the Path
    column relative to the folder above CheXpert-v1.0-small/, the patient in the path."""
    train = {1: [("frontal", {"Edema": "1.0", "Cardiomegaly": "-1.0"}),
                 ("lateral", {"Edema": "1.0"})],
             2: [("frontal", {"Edema": "0.0", "Atelectasis": "-1.0"})],
             3: [("frontal", {"No Finding": "1.0"})],
             4: [("frontal", {"Cardiomegaly": "1.0", "Edema": "-1.0"})]}
    valid = {64541: [("frontal", {"Edema": "1.0", "Cardiomegaly": "0.0"})]}
    write_chexpert(tmp_path, train, valid)
    header = (tmp_path / "CheXpert-v1.0-small/train.csv").read_text().splitlines()[0]
    assert header.startswith("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,")
    recipe = yaml.safe_load((ROOT / "config/recipes/chexpert.yaml").read_text())
    entry = recipe["datasets"]["chexpert"]
    entry["root"] = str(tmp_path)
    ds = resolve(validated(recipe)).datasets["chexpert"]
    opts = {k: v for k, v in ds.reader_options.items() if k != "on_missing"}
    labels = list(entry["label_columns"])
    for policy, as_value in (("ones", 1), ("zeros", 0), ("ignore", -1)):
        df, meta = read_format("image_table", tmp_path, **{**opts, "uncertain": policy})
        assert meta.task == "multilabel" and meta.label_columns == labels
        assert meta.channels == 1 and meta.has_official_split
        # frontal views only (the lateral one dropped), both tables, patient from the path
        assert len(df) == 5 and not df["path"].str.contains("lateral").any()
        assert df["patient_id"].tolist() == ["patient00001", "patient00002", "patient00003",
                                             "patient00004", "patient64541"]
        assert df["official_split"].tolist() == ["trainval"] * 4 + ["test"]
        # the independent reading of the same cells: 1.0 -> 1, 0.0/blank -> 0, -1.0 -> policy
        cells = [v for views in (*train.values(), *valid.values())
                 for view, v in views if view == "frontal"]
        expected = [[{"1.0": 1, "0.0": 0, "-1.0": as_value}.get(c.get(n, ""), 0)
                     for n in labels] for c in cells]
        assert df[labels].to_numpy().tolist() == expected
        assert {"Sex", "Age", "AP/PA", "No Finding"} <= set(meta.aux_columns)
    # U-Ignore masks: -1 stays in the manifest for the loss, metrics and split to skip
    assert (df[labels].to_numpy() == -1).sum() == 3


def test_chexpert_uncertain_unset_is_an_error_naming_the_cell(tmp_path):
    write_chexpert(tmp_path, {1: [("frontal", {"Edema": "-1.0"})], 2: [("frontal", {})]},
                   {64541: [("frontal", {})]})
    opts = dict(table=("CheXpert-v1.0-small/train.csv",), path_column="Path",
                patient_regex=r"patient\d+", label_columns=("Edema", "Cardiomegaly"),
                blank="zeros")
    with pytest.raises(InputError, match=r"train.csv line 2: uncertain \(-1\) label in column "
                                         r"'Edema' \(1 row\(s\)\); set uncertain: ones, zeros "
                                         "or ignore"):
        read_format("image_table", tmp_path, **opts)
    with pytest.raises(InputError, match=r"train.csv line 3: blank label in column 'Edema' "
                                         r"\(1 row\(s\)\); set blank: zeros or ignore"):
        read_format("image_table", tmp_path, **{**opts, "blank": None,
                                                "uncertain": {"Edema": "ones"}})


def mimic_fixture(root):
    images = [("aa11", 10000032, 50414267, "PA"), ("aa12", 10000032, 50414267, "LATERAL"),
              ("bb21", 10000764, 57375967, "AP"), ("cc31", 11000001, 52000001, "PA"),
              ("dd41", 19999987, 58000002, "PA")]
    labels = {(10000032, 50414267): {"Edema": "1.0", "Atelectasis": "-1.0"},
              (10000764, 57375967): {"Edema": "0.0", "Cardiomegaly": "1.0"},
              (11000001, 52000001): {"No Finding": "1.0"}}  # 19999987's study has no labels
    splits = {"aa11": "train", "aa12": "train", "bb21": "validate", "cc31": "test",
              "dd41": "train"}
    return write_mimic(root, images, labels, splits)


def test_mimic_cxr_jpg_layout_join_template_and_split(tmp_path):
    mimic_fixture(tmp_path)
    with gzip.open(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", "rt") as fh:
        assert fh.readline().startswith("subject_id,study_id,Atelectasis,Cardiomegaly,")
    recipe = yaml.safe_load((ROOT / "config/recipes/mimic_cxr_jpg.yaml").read_text())
    recipe["datasets"]["mimic"]["root"] = str(tmp_path)
    ds = resolve(validated(recipe)).datasets["mimic"]
    opts = {k: v for k, v in ds.reader_options.items() if k != "on_missing"}
    df, meta = read_format("image_table", tmp_path, **opts)
    # lateral dropped by the filter, 19999987 by the inner join (no label row)
    assert df["image_id"].tolist() == ["aa11", "bb21", "cc31"]
    assert df["path"].tolist() == ["files/p10/p10000032/s50414267/aa11.jpg",
                                   "files/p10/p10000764/s57375967/bb21.jpg",
                                   "files/p11/p11000001/s52000001/cc31.jpg"]
    assert df["patient_id"].tolist() == ["10000032", "10000764", "11000001"]
    assert df["official_split"].tolist() == ["train", "val", "test"]  # validate -> val
    labels = meta.label_columns
    assert set(labels) <= set(MIMIC_LABELS) and meta.task == "multilabel"
    row = dict(zip(labels, df.loc[0, labels]))
    assert row["Edema"] == 1 and row.get("Atelectasis", 1) == 1  # U-Ones in the recipe
    assert df.loc[1, "Edema"] == 0 and df.loc[1, "Cardiomegaly"] == 1
    assert {"ViewPosition", "StudyDate"} <= set(meta.aux_columns)


def test_join_errors_name_the_table_and_key(tmp_path):
    mimic_fixture(tmp_path)
    opts = dict(table="mimic-cxr-2.0.0-metadata.csv.gz", path_template="files/{dicom_id}.jpg",
                label_columns=("Edema",), uncertain="ones", blank="zeros")
    with pytest.raises(InputError, match=r"column 'studyid' \(from `join.keys`\) not found"):
        read_format("image_table", tmp_path, **opts, join=(
            {"table": "mimic-cxr-2.0.0-chexpert.csv.gz", "keys": ["subject_id", "studyid"]},))
    with pytest.raises(InputError, match=r"chexpert.csv.gz: column\(s\) \['study_id'\] are in "
                                         r".*metadata.csv.gz too; join on them"):
        read_format("image_table", tmp_path, **opts, join=(
            {"table": "mimic-cxr-2.0.0-chexpert.csv.gz", "keys": "subject_id"},))
    (tmp_path / "extra.csv").write_text("subject_id,Edema\n10000032,1\n10000032,0\n")
    with pytest.raises(InputError, match=r"extra.csv: 2 rows share their key \['subject_id'\], "
                                         r"e.g. \{'subject_id': '10000032'\}"):
        read_format("image_table", tmp_path, **opts, join=(
            {"table": "extra.csv", "keys": "subject_id"},))


def test_separator_column_as_nih(tmp_path):
    rows = [("0.png", "p0", "Edema|Mass", "s"), ("1.png", "p1", "No Finding", "s"),
            ("2.png", "p2", "Mass", "s")]
    own_csv(tmp_path, rows, header="file,patient,findings,site")
    opts = {**OWN, "label_columns": ("findings",), "label_separator": "|",
            "classes": ("Edema", "Mass"), "none_label": "No Finding"}
    df, meta = read_format("image_table", tmp_path, **opts)
    assert meta.task == "multilabel" and meta.label_columns == ["Edema", "Mass"]
    assert df[["Edema", "Mass"]].to_numpy().tolist() == [[1, 1], [0, 0], [0, 1]]
    with pytest.raises(InputError, match=r"labels.csv line 2: label 'Mass' in column "
                                         r"'findings' is not one of the declared classes "
                                         r"\['Edema'\] or 'No Finding'"):
        read_format("image_table", tmp_path, **{**opts, "classes": ("Edema",)})


def test_split_column_filters_and_the_trainval_rows(tmp_path):
    rows = [(f"{i}.png", f"p{i}", "ab"[i // 4], ["train", "validate", "test", "trainval"][i % 4])
            for i in range(8)]
    own_csv(tmp_path, rows, header="file,patient,diagnosis,part")
    df, meta = read_format("image_table", tmp_path, **OWN, split_column="part")
    assert df["official_split"].tolist() == ["train", "val", "test", "trainval"] * 2
    assert meta.fixed_split and "part" not in df.columns
    from ilmoco.data.split import patient_split

    split = patient_split(df, meta, (0.5, 0.5, 0.0), seed=0)
    official = df["official_split"]
    assert (split[official != "trainval"] == official[official != "trainval"]).all()
    assert set(split[official == "trainval"]) <= {"train", "val"}
    with pytest.raises(InputError, match=r"split value 'holdout' in column 'part' is not a "
                                         "split name"):
        (tmp_path / "labels.csv").write_text((tmp_path / "labels.csv").read_text()
                                             .replace("trainval", "holdout"))
        read_format("image_table", tmp_path, **OWN, split_column="part")
    df, _ = read_format("image_table", tmp_path, **OWN, split_column="part",
                        split_values={"holdout": "test"})
    df, _ = read_format("image_table", tmp_path, **OWN, filters={"part": ["train", "test"]})
    assert len(df) == 4 and set(df["part"]) == {"train", "test"}
    with pytest.raises(InputError, match=r"filter 'part' in \['x'\] keeps no row"):
        read_format("image_table", tmp_path, **OWN, filters={"part": "x"})


@pytest.mark.parametrize("case,edit,message", [
    ("unknown column", dict(label_columns=("diagnosys",)),
     r"labels.csv: column 'diagnosys' \(from `label_columns`\) not found; the table's columns "
     r"are \['file', 'patient', 'diagnosis', 'site'\]"),
    ("label outside classes", dict(classes=("a", "b")),
     r"labels.csv line 4: label 'c' in column 'diagnosis' is not one of the declared "
     r"classes \['a', 'b'\] \(1 row\(s\)\)"),
    ("missing image", dict(), r"labels.csv: 1 listed image\(s\) not found under the dataset "
                              r"root, e.g. \['images/1.png'\]"),
    ("empty patient", dict(), r"labels.csv line 3: empty patient id in column 'patient' "
                              r"\(1 row\(s\)\)"),
    ("row longer than the header", dict(), r"labels.csv: cannot parse the table \(Error "
                                           r"tokenizing data. C error: Expected 4 fields in "
                                           r"line 3, saw 5\)"),
    ("row shorter than the header", dict(), r"labels.csv line 3: blank label in column "
                                            r"'diagnosis'"),
])
def test_bad_tables_are_one_line_errors(tmp_path, case, edit, message):
    rows = [("0.png", "p0", "a", "s"), ("1.png", "p1", "b", "s"), ("2.png", "p2", "c", "s")]
    own_csv(tmp_path, rows, images=None if case != "missing image" else ("0.png", "2.png"))
    csv = tmp_path / "labels.csv"
    text = csv.read_text()
    if case == "empty patient":
        csv.write_text(text.replace("images/1.png,p1,", "images/1.png,,"))
    elif case == "row longer than the header":
        csv.write_text(text.replace("images/1.png,p1,b,s", "images/1.png,p1,b,s,extra"))
    elif case == "row shorter than the header":
        csv.write_text(text.replace("images/1.png,p1,b,s", "images/1.png,p1"))
    with pytest.raises(InputError, match=message) as e:
        read_format("image_table", tmp_path, **{**OWN, **edit})
    assert "\n" not in str(e.value)


def test_image_folder_equals_torchvision_imagefolder(tmp_path, capsys):
    from torchvision.datasets import ImageFolder

    write_image_folder(tmp_path, {"cat": 3, "dog": 4, "emu": 2}, nested=True)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("loose file")
    df, meta = read_format("image_folder", tmp_path)
    ref = ImageFolder(str(tmp_path))
    assert meta.classes == ref.classes and meta.task == "multiclass" and meta.n_classes == 3
    assert [(str(tmp_path / p), y) for p, y in zip(df["path"], df["label"])] == ref.samples
    err = capsys.readouterr().err
    assert "ignored 2 file(s) that are not images" in err and "dog/notes.txt" in err
    with pytest.raises(InputError, match=r"class folder 'emu' is not one of the declared "
                                         r"classes \['cat', 'dog'\]"):
        read_format("image_folder", tmp_path, classes=("cat", "dog"))


def test_image_folder_with_split_folders(tmp_path):
    for split, counts in (("train", {"NORMAL": 3, "PNEUMONIA": 3}),
                          ("test", {"NORMAL": 2, "PNEUMONIA": 1})):
        write_image_folder(tmp_path, counts, split=split, ext=".jpeg")
    df, meta = read_format("image_folder", tmp_path, patient_regex=r"img(\d+)")
    assert meta.task == "binary" and meta.classes == ["NORMAL", "PNEUMONIA"]
    assert meta.fixed_split and meta.channels == 3
    assert df["official_split"].value_counts().to_dict() == {"trainval": 6, "test": 3}
    assert {"train/NORMAL/img000.jpeg", "test/PNEUMONIA/img000.jpeg"} <= set(df["path"])


def test_recipe_for_an_image_folder_validates():
    recipe = yaml.safe_load((ROOT / "config/recipes/image_folder.yaml").read_text())
    ds = resolve(validated(recipe)).datasets[recipe["use_datasets"][0]]
    assert ds.format == "image_folder"


def test_config_cross_key_rules_name_the_key():
    base = {"use_datasets": ["x"], "datasets": {"x": {"format": "image_table", "root": "r",
                                                      "table": "t.csv", "path_column": "p",
                                                      "label_columns": ["a", "b"]}}}
    resolve(validated(base))
    for edit, where in (({"path_template": "{p}.png"}, "datasets.x.path_column"),
                        ({"classes": ["u", "v"]}, "datasets.x.classes"),
                        ({"label_separator": "|"}, "datasets.x.label_separator"),
                        ({"uncertain": {"c": "ones"}}, "datasets.x.uncertain.c"),
                        ({"patient_regex": "("}, "datasets.x.patient_regex"),
                        ({"table": None}, "datasets.x.table")):
        cfg = {**base, "datasets": {"x": {**base["datasets"]["x"], **edit}}}
        with pytest.raises(ConfigError, match=f"config error at {where}"):
            resolve(validated(cfg))
    other = {**base, "datasets": {"x": {"format": "idc_breast", "root": "r",
                                        "table": "t.csv"}}}
    with pytest.raises(ConfigError, match="datasets.x.table: is not read by format idc_breast"):
        resolve(validated(other))


# ------------------------------------------------------------------ every reader lines up

def test_medmnist_labels_shorter_or_longer_than_images(tmp_path):
    write_medmnist(tmp_path, n=(6, 2, 4), n_labels=1)
    npz = tmp_path / "chestmnist.npz"
    arrays = dict(np.load(npz))
    for n in (1, 7):  # 3 shorter, 3 longer than test_images (4)
        arrays["test_labels"] = np.zeros((n, 1), np.uint8)
        np.savez(npz, **arrays)
        with pytest.raises(InputError) as e:
            read_format("medmnist", tmp_path)
        assert str(e.value) == (f"{npz}: test_labels has {n} rows but test_images has 4 "
                                "images; labels and images must line up one to one")


def test_idc_says_what_it_ignores(tmp_path, capsys):
    write_idc(tmp_path, {"8863": [(1, 1, 0), (51, 1, 1)], "9010": [(1, 51, 1), (51, 51, 0)]},
              mirror=False)
    stray = tmp_path / "8863" / "2"
    stray.mkdir()
    for k in range(3):
        Image.new("RGB", (50, 50)).save(stray / f"8863_idx5_x{k}_y1_class2.png")
    df, _ = read_format("idc_breast", tmp_path)
    assert len(df) == 4
    err = capsys.readouterr().err
    assert "ignored 3 patch(es) outside a <patient>/0/ or <patient>/1/ class folder" in err
    assert "8863/2/8863_idx5_x0_y1_class2.png" in err


def test_synthetic_table_of_the_smoke_run(tmp_path):
    """The smoke run's image_table dataset: its config entry reads what the generator
    writes; 12-bit values in 16-bit PNGs; the label is the relation of the two blobs'
    brightness levels, (bottom - top) mod 3, read back from the pixels."""
    from stagedata import generate

    from ilmoco.data.synthetic_table import CLASSES, LEVELS

    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    entry = {**smoke["datasets"]["table_synth"], "root": str(tmp_path)}
    generate("image_table", tmp_path, **entry.pop("synthetic"))
    ds = resolve(validated({"use_datasets": ["t"], "datasets": {"t": entry}})).datasets["t"]
    df, meta = read_format("image_table", tmp_path, **{
        k: v for k, v in ds.reader_options.items() if k != "on_missing"})
    assert meta.task == "multiclass" and meta.classes == list(CLASSES) and meta.channels == 1
    assert df["patient_id"].nunique() == 40 and (df["view"] == "PA").all()
    pairs = {(t, b): (b - t) % 3 for t in range(3) for b in range(3)}
    ratios = {pair: LEVELS[pair[1]] / LEVELS[pair[0]] for pair in pairs}
    for path, label in zip(df["path"], df["finding"]):
        x = np.asarray(Image.open(tmp_path / path)).astype(float)
        assert x.max() <= 4095 and x.max() > 1000  # 12 bits, far above 255
        r = x[16:].max() / x[:16].max()
        nearest = min(ratios, key=lambda p: abs(ratios[p] - r))
        assert pairs[nearest] == label, (path, r)
