"""The authors' published split lists (``datasets.<name>.split_lists``) on fixtures written in
the two official formats: the split equals the lists, each inconsistency is one line naming
the list file and the image, and label fractions stay inside the train list."""

import warnings

import pandas as pd
import pytest
from layouts import nih_rows, write_idc, write_idc_split_csvs, write_nih, write_nih_split_lists
from stagedata import read_format

from ilmoco.data.split import make_split, read_split_list
from ilmoco.io import InputError


@pytest.fixture(scope="module")
def nih(tmp_path_factory):
    """An NIH root (Kaggle layout) and the three official lists of its 40 patients, 70/10/20
    by patient like the authors'."""
    root = tmp_path_factory.mktemp("nih")
    rows = nih_rows(n_patients=40, per_patient=2, seed=4)
    write_nih(root, rows)
    by_patient = {}
    for name, _, pid in rows:
        by_patient.setdefault(pid, []).append(name)
    pids = sorted(by_patient)
    parts = {"train": pids[:28], "val": pids[28:32], "test": pids[32:]}
    splits = {s: [f for p in ps for f in by_patient[p]] for s, ps in parts.items()}
    return root, rows, splits


def split_of(df, meta, lists, **kw):
    return make_split(df, meta, fractions=(6, 100), lists=lists, **kw)


def test_nih_split_equals_the_official_lists(nih, tmp_path):
    root, rows, splits = nih
    lists = write_nih_split_lists(tmp_path / "official", rows, splits)
    df, meta = read_format("nih_cxr14", root)
    s = split_of(df, meta, lists)
    got = {k: set(g["image_id"] + ".png") for k, g in s.groupby("split")}
    assert got == {k: set(v) for k, v in splits.items()}
    assert len(s) == len(df)
    # label fractions are drawn inside the train list, nested
    assert not s.loc[s["split"] != "train", ["labeled_6", "labeled_100"]].any().any()
    assert s.loc[s["split"] == "train", "labeled_100"].all()
    assert (s["labeled_6"] <= s["labeled_100"]).all() and s["labeled_6"].sum() >= 3


def test_the_two_list_formats_are_read(tmp_path):
    txt = tmp_path / "a_list.txt"
    txt.write_text("00000001_000.png 0 1 0\n\n00000002_000.png 1 0 0\n")
    csv = tmp_path / "a_split.csv"
    csv.write_text("img_path,labels\n9075/0/9075_idx5_x1_y2_class0.png,0\n")
    a, b = read_split_list(txt), read_split_list(csv)
    assert a["entry"].tolist() == ["00000001_000.png", "00000002_000.png"]
    assert a["labels"].tolist() == [(0, 1, 0), (1, 0, 0)] and a["line"].tolist() == [1, 3]
    assert b.to_dict("records") == [{"entry": "9075/0/9075_idx5_x1_y2_class0.png",
                                     "labels": (0,), "line": 2}]
    indexed = tmp_path / "b_split.csv"  # a CSV written with its index column
    indexed.write_text(",img_path,labels\n0,9075/1/9075_idx5_x1_y2_class1.png,1\n")
    assert read_split_list(indexed)["entry"].tolist() == ["9075/1/9075_idx5_x1_y2_class1.png"]
    bad = tmp_path / "bad_list.txt"
    bad.write_text("00000001_000.png 0 x\n")
    with pytest.raises(InputError, match=r"bad_list.txt: line 1: labels \['0', 'x'\] are not"):
        read_split_list(bad)


def idc_fixture(root):
    patients = {p: [(i * 50, 100, int(i % 3 == 0)) for i in range(4)]
                for p in ("8863", "9075", "10253", "12626", "13616", "16014")}
    write_idc(root, patients, mirror=True)
    return patients


def test_idc_split_equals_the_official_csvs_whatever_the_mirror(tmp_path):
    """IDC patches are matched by <patient>/<class>/<file> (the Kaggle archive's mirror
    folder, where the reader finds some patches only, does not matter)."""
    root = tmp_path / "idc"
    patients = idc_fixture(root)
    # a patient only under IDC_regular_ps50_idx5/: its manifest paths carry that prefix
    import shutil

    shutil.rmtree(root / "16014")
    parts = {"train": ["8863", "9075", "10253", "12626"], "val": ["13616"], "test": ["16014"]}
    splits = {s: [(p, x, y, c) for p in ps for x, y, c in patients[p]]
              for s, ps in parts.items()}
    lists = write_idc_split_csvs(tmp_path / "official", splits)
    df, meta = read_format("idc_breast", root)
    assert df.loc[df["patient_id"] == "16014", "path"].str.startswith(
        "IDC_regular_ps50_idx5/").all()
    s = split_of(df, meta, lists)
    got = s.groupby("split")["patient_id"].agg(lambda v: sorted(set(v))).to_dict()
    assert got == {k: sorted(v) for k, v in parts.items()}
    assert len(s) == sum(len(v) for v in patients.values())


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_a_listed_image_the_dataset_lacks(nih, tmp_path):
    root, rows, splits = nih
    extra = dict(splits, test=splits["test"] + ["00099999_000.png"])
    rows = rows + [("00099999_000.png", "No Finding", 99999)]
    lists = write_nih_split_lists(tmp_path, rows, extra)
    df, meta = read_format("nih_cxr14", root)
    with pytest.raises(InputError) as e:
        split_of(df, meta, lists)
    msg = one_line(e)
    assert msg.startswith(lists["test"]) and "00099999_000.png" in msg
    assert "not an image of the dataset (1 listed image(s) missing" in msg
    with pytest.warns(UserWarning, match="00099999_000.png .* skipped"):
        s = split_of(df, meta, lists, on_missing="skip")
    assert len(s) == len(df)


def test_an_image_in_two_lists(nih, tmp_path):
    root, rows, splits = nih
    twice = dict(splits, val=splits["val"] + splits["train"][:1])
    lists = write_nih_split_lists(tmp_path, rows, twice)
    df, meta = read_format("nih_cxr14", root)
    with pytest.raises(InputError) as e:
        split_of(df, meta, lists, on_missing="skip")  # never skipped
    msg = one_line(e)
    assert msg.startswith(lists["val"]) and splits["train"][0] in msg
    assert f"is also in {lists['train']}" in msg and "each image belongs to one split" in msg


def test_one_image_named_twice_in_a_list(nih, tmp_path):
    root, rows, splits = nih
    df, meta = read_format("nih_cxr14", root)
    first = df["path"].iloc[0]  # images_001/images/<file>: also a name of <file>
    lists = write_nih_split_lists(tmp_path, rows, splits)
    train = lists["train"]
    labels = open(train).read().splitlines()[0].split()[1:]
    with open(train, "a") as fh:
        fh.write(" ".join([first, *labels]) + "\n")
    with pytest.raises(InputError) as e:
        split_of(df, meta, lists)
    assert one_line(e).startswith(f"{train}: ") and "listed on another line too" in str(e.value)


def test_a_label_disagreement(nih, tmp_path):
    root, rows, splits = nih
    lists = write_nih_split_lists(tmp_path, rows, splits)
    path = lists["train"]
    lines = open(path).read().splitlines()
    name, *labels = lines[2].split()
    labels[2] = str(1 - int(labels[2]))  # Effusion, the third CheXNet label
    lines[2] = " ".join([name, *labels])
    open(path, "w").write("\n".join(lines) + "\n")
    df, meta = read_format("nih_cxr14", root)
    with pytest.raises(InputError) as e:
        split_of(df, meta, lists)
    msg = one_line(e)
    assert msg.startswith(f"{path}: line 3: {name} has Effusion={labels[2]} in the list, "
                          f"{1 - int(labels[2])} in the dataset")


def test_images_in_no_list(nih, tmp_path):
    root, rows, splits = nih
    short = dict(splits, test=splits["test"][:-3])
    lists = write_nih_split_lists(tmp_path, rows, short)
    df, meta = read_format("nih_cxr14", root)
    with pytest.raises(InputError) as e:
        split_of(df, meta, lists)
    msg = one_line(e)
    assert msg.startswith(f"3 of {len(df)} image(s) of the dataset are in none of the split "
                          "lists") and splits["test"][-1] in msg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = split_of(df, meta, lists, on_missing="skip")
    assert any("left out of the split" in str(w.message) for w in caught)
    assert len(s) == len(df) - 3 and not set(splits["test"][-3:]) & set(s["image_id"] + ".png")


def test_a_patient_in_two_lists_is_worth_a_warning(nih, tmp_path):
    root, rows, splits = nih
    moved = {"train": splits["train"][:-1], "val": splits["val"] + splits["train"][-1:],
             "test": splits["test"]}
    lists = write_nih_split_lists(tmp_path, rows, moved)
    df, meta = read_format("nih_cxr14", root)
    with pytest.warns(UserWarning, match="1 patient.s. have images in two splits"):
        split_of(df, meta, lists)


def test_the_split_rule_reads_the_lists_and_reruns_when_one_changes(nih, tmp_path):
    """Through Snakemake: the dataset's split is the lists', and editing a list reruns the
    split (the lists are inputs of the rule)."""
    import os
    import time

    from snakerun import planned_jobs, snakemake

    root, rows, splits = nih
    lists = write_nih_split_lists(tmp_path / "lists", rows, splits)
    rel = {k: os.path.relpath(v, root) for k, v in lists.items()}  # relative to the root
    cfg = tmp_path / "nih.yaml"
    cfg.write_text(f"use_datasets: [nih]\nmethods: [supervised]\nfractions: [6, 100]\n"
                   f"datasets:\n  nih: {{format: nih_cxr14, root: {root}, split_lists: "
                   f"{{train: {rel['train']}, val: {rel['val']}, test: {rel['test']}}}}}\n")
    target = "results/nih/data/split.csv"
    work = tmp_path / "work"
    work.mkdir()
    snakemake(target, workdir=work, configfiles=(cfg,))
    s = pd.read_csv(work / target)
    assert set(s.loc[s["split"] == "val", "image_id"] + ".png") == set(splits["val"])
    assert planned_jobs(target, workdir=work, configfiles=(cfg,)) == {}
    time.sleep(1.1)  # an edit: one patient's images move from val to test
    moved = splits["val"][:2]
    write_nih_split_lists(tmp_path / "lists", rows, {"val": splits["val"][2:],
                                                     "test": splits["test"] + moved})
    assert planned_jobs(target, workdir=work, configfiles=(cfg,)) == {"split": 1}
