"""Split invariants: patient-disjoint, proportions, nesting, stratification, determinism."""

import warnings

import numpy as np
import pandas as pd
import pytest

from ilmoco.data.formats.base import DatasetMeta
from ilmoco.data.split import iterative_stratification, make_split, pct_name
from ilmoco.io import InputError, write_csv

NAMES = ["a", "b", "c"]


def manifest(n_patients=300, seed=0, prevalence=(0.3, 0.1, 0.02)):
    """Multi-label manifest, 1-4 images per patient, labels correlated within patients."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        base = rng.random(3) < np.asarray(prevalence)
        for i in range(int(rng.integers(1, 5))):
            lab = base & (rng.random(3) < 0.8)
            rows.append((f"p{p}_{i}", f"x/p{p}_{i}.png", f"p{p}", *lab.astype(int)))
    df = pd.DataFrame(rows, columns=["image_id", "path", "patient_id", *NAMES])
    meta = DatasetMeta(format="nih_cxr14", task="multilabel", label_columns=NAMES, channels=1,
                       n_classes=3)
    return df, meta


def binary_manifest(n_patients=200, seed=1, prevalence=0.28):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for i in range(int(rng.integers(1, 8))):
            rows.append((f"q{p}_{i}", f"q{p}_{i}.png", f"q{p}", int(rng.random() < prevalence)))
    df = pd.DataFrame(rows, columns=["image_id", "path", "patient_id", "idc"])
    meta = DatasetMeta(format="idc_breast", task="binary", label_columns=["idc"], channels=3,
                       n_classes=2)
    return df, meta


def test_patient_disjoint_and_proportions():
    df, meta = manifest()
    s = make_split(df, meta, ratios=(0.7, 0.2, 0.1), seed=0, fractions=(1, 6, 100))
    assert (s.groupby("patient_id")["split"].nunique() == 1).all()
    share = s.groupby("split")["patient_id"].nunique() / df["patient_id"].nunique()
    # shares of 300 patients: the 105 with a positive go ~0.7/0.2/0.1 (each split's far under
    # its size), the rest to the neediest split first: each within one patient of ratio x 300
    assert share["train"] == pytest.approx(0.7, abs=1 / 300)
    assert share["val"] == pytest.approx(0.2, abs=1 / 300)
    assert share["test"] == pytest.approx(0.1, abs=1 / 300)
    assert list(s.columns) == ["image_id", "patient_id", "split", *NAMES,
                               "labeled_1", "labeled_6", "labeled_100"]
    assert s["image_id"].tolist() == df["image_id"].tolist()


def test_split_is_stratified_by_patient_labels():
    df, meta = manifest(600)
    s = make_split(df, meta, seed=3)
    pat = s.groupby(["split", "patient_id"])[NAMES].max().groupby("split").sum()
    total = pat.sum()
    for lab in NAMES:
        for split, r in (("train", 0.7), ("val", 0.2), ("test", 0.1)):
            # iterative stratification keeps positive patients within a patient of target
            assert abs(pat.loc[split, lab] - r * total[lab]) <= 2, (lab, split)


def test_fractions_nested_sized_and_only_train():
    df, meta = manifest()
    s = make_split(df, meta, seed=0, fractions=(1, 6, 100))
    train = s["split"] == "train"
    assert not s.loc[~train, ["labeled_1", "labeled_6", "labeled_100"]].any().any()
    assert s.loc[train, "labeled_100"].all()
    assert (s["labeled_1"] <= s["labeled_6"]).all() and (s["labeled_6"] <= s["labeled_100"]).all()
    n = train.sum()
    assert s["labeled_6"].sum() == round(0.06 * n)
    assert s["labeled_1"].sum() >= round(0.01 * n)


def test_smallest_fraction_has_both_classes_of_every_label():
    df, meta = manifest(400, prevalence=(0.3, 0.1, 0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = make_split(df, meta, seed=0, fractions=(1, 6, 100))
    lab = s[s["labeled_1"]]
    train = s[s["split"] == "train"]
    for name in NAMES:
        if train[name].any():
            assert lab[name].any() and (lab[name] == 0).any(), name


def test_fraction_prevalence_is_stratified():
    df, meta = binary_manifest(600)
    s = make_split(df, meta, seed=0, fractions=(6, 100))
    train = s[s["split"] == "train"]
    k = train["labeled_6"].sum()  # 99 of 1650 images
    # a prefix of k of the priority order (positions (rank + U) / n per class; the two seed
    # images are each class's first) holds each class's share of k within one image
    assert train.loc[train["labeled_6"], "idc"].mean() == pytest.approx(train["idc"].mean(),
                                                                        abs=1 / k)


def test_same_seed_identical_file_other_seed_different(tmp_path):
    df, meta = manifest()
    paths = []
    for i, seed in enumerate((5, 5, 6)):
        paths.append(tmp_path / f"s{i}.csv")
        write_csv(paths[-1], make_split(df, meta, seed=seed))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_official_split_keeps_test_list():
    df, meta = manifest(100)
    test_patients = set(df["patient_id"].unique()[:15])
    df["official_split"] = np.where(df["patient_id"].isin(test_patients), "test", "trainval")
    meta.has_official_split = True
    meta.aux_columns = ["official_split"]
    # 85 train patients: labeled_1 is enlarged to keep each label present (warned)
    with pytest.warns(UserWarning, match="labeled_1: 3 images instead of 2"):
        s = make_split(df, meta, seed=0, use_official=True)
    assert set(s.loc[s["split"] == "test", "patient_id"]) == test_patients
    assert (s.groupby("patient_id")["split"].nunique() == 1).all()
    df.loc[0, "official_split"] = ""
    with pytest.raises(InputError, match="in neither train_val_list.txt nor test_list.txt"):
        make_split(df, meta, seed=0, use_official=True)


def test_medmnist_split_kept():
    df, meta = binary_manifest(50)
    df["official_split"] = np.resize(["train", "train", "val", "test"], len(df))
    meta.format, meta.has_official_split, meta.fixed_split = "medmnist", True, True
    s = make_split(df, meta, seed=0, fractions=(100,))
    assert (s["split"] == df["official_split"]).all()


def test_fraction_too_small_is_an_error():
    df, meta = binary_manifest(20)
    with pytest.raises(InputError, match=r"label fraction 0.1 % of \d+ train images leaves no"):
        make_split(df, meta, seed=0, fractions=(0.1, 100))


def test_missing_class_policy():
    df, meta = binary_manifest(100, prevalence=0.0)  # no positive anywhere
    with pytest.warns(UserWarning, match="train has no positive image of 'idc'"):
        make_split(df, meta, seed=0, fractions=(6, 100))
    with pytest.raises(InputError, match="train has no positive image of 'idc'"):
        make_split(df, meta, seed=0, fractions=(6, 100), on_missing_class="error")
    df, meta = binary_manifest(300, prevalence=0.05)
    with pytest.raises(InputError, match="labeled_1 has no positive image of 'idc'"):
        make_split(df, meta, seed=0, fractions=(1, 100), ensure_each_class=False,
                   on_missing_class="error")


def test_too_few_patients():
    df, meta = binary_manifest(2)
    with pytest.raises(InputError, match="only 2 patient"):
        make_split(df, meta, seed=0)


def test_iterative_stratification_fold_sizes():
    rng = np.random.default_rng(0)
    y = (rng.random((1000, 5)) < [0.5, 0.2, 0.05, 0.01, 0.3]).astype(np.int8)
    fold = iterative_stratification(y, (0.6, 0.3, 0.1), rng)
    # rows: the 747 with a positive go ~0.6/0.3/0.1 (each fold's far under its size), the
    # other 253 to the neediest fold first: each fold within one row of ratio x 1000
    assert np.bincount(fold).tolist() == pytest.approx([600, 300, 100], abs=1)


def test_pct_names():
    assert [pct_name(p) for p in (1, 6.0, 100, 0.5)] == ["1", "6", "100", "0.5"]
