"""Metrics agree with scikit-learn; the vectorised bootstrap equals explicit resampling and
its percentile CI covers a known AUC about 95 % of the time; KS equals scipy.

Tolerances: the ``pytest.approx`` defaults (rel 1e-6) compare float64 values computed two
ways from the same counts: metrics of <= 400 images (ratios of counts; scikit-learn's AUC a
trapezoid of <= n steps) and a mean of three numbers, ~n u <= 1e-13 apart. One pair or image
miscounted moves a macro AUC over L labels by >= 4 / (L n**2) >= 6e-6 (n = 400, L = 4
classes), an F1, an accuracy or a KS distance by more."""

import numpy as np
import pytest
import tolerances as tol
from scipy.stats import ks_2samp, norm
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from ilmoco.evaluation.bootstrap import bootstrap_ci, mean_ci_across_seeds, resample_weights
from ilmoco.evaluation.ks import ks_distance
from ilmoco.evaluation.metrics import (
    accuracy,
    best_f1_threshold,
    chance_level,
    f1_at_threshold,
    f1_macro,
    macro_auc,
    metric_fn,
    one_class,
    weighted_auc,
)


def binary(n=200, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s = rng.normal(size=n) + y
    if ties:
        s = np.round(s, 1)
    return y, 1 / (1 + np.exp(-s))


@pytest.mark.parametrize("ties", [False, True])
def test_auc_equals_sklearn(ties):
    y, p = binary(ties=ties)
    # float64 AUC <= 1: ours divides exact pair counts once; scikit-learn's trapezoid rounds a
    # few times in each of <= 200 steps of size <= 1 (~4 * 200 u = 9e-14): 1e-12 leaves 10x
    assert float(weighted_auc(y, p)[0]) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_weighted_metrics_equal_explicit_resampling():
    y, p = binary(150, seed=1, ties=True)
    rng = np.random.default_rng(0)
    W = resample_weights(np.arange(len(y)), 5, rng)
    for b in range(5):
        idx = np.repeat(np.arange(len(y)), W[b].astype(int))
        assert weighted_auc(y, p, W)[b] == pytest.approx(roc_auc_score(y[idx], p[idx]))
        assert f1_macro(y, p, W)[b] == pytest.approx(
            f1_score(y[idx], (p[idx] > 0.5).astype(int), average="macro"))
        assert accuracy(y, p, W)[b] == pytest.approx(accuracy_score(y[idx], p[idx] > 0.5))


def test_multilabel_macro_auc_and_f1():
    rng = np.random.default_rng(2)
    y = (rng.random((300, 5)) < [0.4, 0.2, 0.1, 0.05, 0.3]).astype(int)
    p = np.clip(y * 0.3 + rng.random((300, 5)) * 0.7, 0, 1)
    assert float(macro_auc(y, p)[0]) == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert float(f1_macro(y, p)[0]) == pytest.approx(
        f1_score(y, (p > 0.5).astype(int), average="macro", zero_division=0))
    y[:, 3] = 0  # a label with no positive is skipped, as a NaN-mean over labels
    expected = np.mean([roc_auc_score(y[:, j], p[:, j]) for j in (0, 1, 2, 4)])
    assert float(macro_auc(y, p)[0]) == pytest.approx(expected)


def test_multiclass_macro_auc():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4)) + np.eye(4)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(macro_auc(y, p)[0]) == pytest.approx(roc_auc_score(y, p, multi_class="ovr"))
    assert float(f1_macro(y, p)[0]) == pytest.approx(f1_score(y, p.argmax(1), average="macro"))


def test_tuned_threshold_is_the_best_positive_f1():
    y, p = binary(120, seed=4)
    t = best_f1_threshold(y, p)
    best = max(f1_score(y, (p >= c).astype(int)) for c in np.unique(p))
    assert float(f1_at_threshold(y, p, t)[0]) == pytest.approx(best)


def test_patient_resampling_keeps_patients_whole():
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    W = resample_weights(groups, 50, np.random.default_rng(0))
    assert (W[:, 0] == W[:, 1]).all() and (W[:, 3] == W[:, 5]).all()
    assert (W[:, [0, 2, 3]].sum(1) == 3).all()  # three patients drawn per resample


def test_bootstrap_ci_coverage_of_a_known_auc():
    """Scores N(d,1) vs N(0,1): the true AUC is Phi(d / sqrt 2)."""
    d, n, sims = 1.0, 120, 200
    true_auc = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(0)
    hits = 0
    for s in range(sims):
        y = np.r_[np.ones(n // 2), np.zeros(n // 2)].astype(int)
        score = rng.normal(size=n) + d * y
        r = bootstrap_ci(y, score, macro_auc, n_resamples=400, seed=s)
        hits += r["ci_low"] <= true_auc <= r["ci_high"]
    assert 0.89 <= hits / sims <= 0.99


def test_bootstrap_is_seeded_and_wider_than_the_paper_formula():
    y, p = binary(300, seed=5)
    a = bootstrap_ci(y, p, macro_auc, n_resamples=500, seed=1)
    b = bootstrap_ci(y, p, macro_auc, n_resamples=500, seed=1)
    assert a == b and a["ci_low"] < a["estimate"] < a["ci_high"]
    reps = macro_auc(y, p, resample_weights(np.arange(300), 500, np.random.default_rng(1)))
    paper_half_width = 1.96 * reps.std() / np.sqrt(500)
    assert (a["ci_high"] - a["ci_low"]) / 2 > 10 * paper_half_width


def test_ks_equals_scipy():
    rng = np.random.default_rng(6)
    a, b = rng.random(100), rng.random(80) ** 2
    assert ks_distance(a, b)["ks"] == pytest.approx(ks_2samp(a, b).statistic)
    A, B = rng.random((100, 3)), rng.random((100, 3)) ** 1.5
    expected = np.mean([ks_2samp(A[:, j], B[:, j]).statistic for j in range(3)])
    assert ks_distance(A, B)["ks"] == pytest.approx(expected)


def test_mean_ci_across_seeds():
    r = mean_ci_across_seeds([0.8, 0.82, 0.78])
    assert r["estimate"] == pytest.approx(0.8) and r["n_seeds"] == 3
    assert r["ci_low"] < 0.8 < r["ci_high"]
    one = mean_ci_across_seeds([0.7])
    assert one["n_seeds"] == 1 and np.isnan(one["ci_low"])


def test_paper_interval_is_the_official_standard_error():
    """mean ± 1.96·sd/√B of image-level bootstrap replicates, as the official code."""
    from ilmoco.evaluation.bootstrap import paper_interval, resample_weights

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    p = np.clip(y * 0.3 + rng.normal(0.35, 0.2, 80), 0, 1)
    r = paper_interval(y, p, macro_auc, n_resamples=300, seed=4)
    W = resample_weights(np.arange(80), 300, np.random.default_rng(4))
    reps = []
    for w in W:
        idx = np.repeat(np.arange(80), w.astype(int))
        reps.append(roc_auc_score(y[idx], p[idx]))
    reps = np.array(reps)
    half = 1.96 * reps.std() / np.sqrt(300)
    # each replicate an AUC of 80 images (<= 4 * 80 u = 4e-14 apart, as above); their mean
    # and sd over 300 (in the same order) add a few u: 1e-12 leaves 20x
    assert r["paper_mean"] == pytest.approx(reps.mean(), abs=1e-12)
    assert r["paper_ci_low"] == pytest.approx(reps.mean() - half, abs=1e-12)
    assert r["paper_ci_high"] == pytest.approx(reps.mean() + half, abs=1e-12)


def test_the_chest_paper_interval_has_the_spread_between_labels():
    """The official chest code: per-label AUCs of each of B image-level resamples, mean and
    sd over the whole B x L array, mean ± 1.96·sd/√B; re-computed here with scikit-learn on
    the same draws (explicitly resampled images)."""
    from ilmoco.config.settings.bootstrap import BootstrapSettings
    from ilmoco.evaluation.bootstrap import metric_interval, resample_weights

    rng = np.random.default_rng(7)
    n, L, B = 150, 5, 240
    y = (rng.random((n, L)) < [0.2, 0.3, 0.4, 0.25, 0.35]).astype(int)
    strength = np.array([0.2, 0.6, 1.0, 1.6, 2.5])  # labels of very different AUC
    p = 1 / (1 + np.exp(-(y * strength + rng.normal(size=(n, L)))))
    settings = BootstrapSettings(resamples=B, seed=3, level=0.95, paper_interval=True,
                                 paper_interval_spread="labels")
    r = metric_interval(y, p, "macro_auc", None, None, settings)
    W = resample_weights(np.arange(n), B, np.random.default_rng(3))
    auc = np.array([[roc_auc_score(y[idx, j], p[idx, j]) for j in range(L)]
                    for idx in (np.repeat(np.arange(n), w.astype(int)) for w in W)])
    half = 1.96 * auc.std() / np.sqrt(B)
    # 240 x 5 AUCs of 150 images (<= 4 * 150 u = 7e-14 apart, as above); a mean of 1200 values
    # <= 1 in any order adds tol.sum_rtol(1200) = 3e-13, the sd less: 1e-12 leaves 3x
    assert r["paper_mean"] == pytest.approx(auc.mean(), abs=1e-12)
    assert r["paper_ci_low"] == pytest.approx(auc.mean() - half, abs=1e-12)
    assert r["paper_ci_high"] == pytest.approx(auc.mean() + half, abs=1e-12)
    # the same formula on the macro replicates (histopathology, retina) is far narrower
    macro = metric_interval(y, p, "macro_auc", None, None, BootstrapSettings(
        resamples=B, seed=3, level=0.95, paper_interval=True))
    # the same 240 x 5 AUCs (<= 1), as 240 means of 5 labels and as one mean
    assert macro["paper_mean"] == pytest.approx(
        r["paper_mean"], abs=tol.sum_rtol(B * L, "float64"))
    assert macro["paper_ci_high"] - macro["paper_ci_low"] < 0.25 * (
        r["paper_ci_high"] - r["paper_ci_low"])
    # one label: the two are the same
    one = [metric_interval(y[:, 2], p[:, 2], "macro_auc", None, None, BootstrapSettings(
        resamples=B, seed=3, level=0.95, paper_interval=True, paper_interval_spread=s))
        for s in ("replicates", "labels")]
    assert one[0] == one[1]


CASES = {  # task -> (labels, a varying prediction); metric names the task's metrics
    "binary": binary(150, seed=5),
    "multilabel": ((np.random.default_rng(6).random((150, 3)) < 0.3).astype(int),
                   np.random.default_rng(7).random((150, 3))),
    "multiclass": (np.random.default_rng(8).integers(0, 3, 150),
                   np.random.default_rng(9).dirichlet(np.ones(3), 150)),
}


@pytest.mark.parametrize("task,metric", [
    ("binary", "macro_auc"), ("binary", "f1_macro"), ("binary", "accuracy"),
    ("binary", "f1_pos_tuned"), ("multilabel", "macro_auc"), ("multilabel", "f1_macro"),
    ("multiclass", "f1_macro"), ("multiclass", "accuracy")])
def test_a_constant_prediction_is_one_class_and_scores_what_learning_nothing_scores(task,
                                                                                    metric):
    y, p = CASES[task]
    threshold = 0.5 if metric == "f1_pos_tuned" else None
    assert not one_class(metric, y, p, threshold)
    # the majority class of every label (every class, for AUC: one score per label)
    if task == "multiclass":
        flat = np.tile(np.eye(3)[np.bincount(y).argmax()] * 0.8 + 0.1 / 1, (len(y), 1))
    elif metric == "f1_pos_tuned":  # chance_level's: every image called positive
        flat = np.full(len(y), 0.9)
    else:
        flat = np.broadcast_to(np.where(y.mean(0) > 0.5, 0.7, 0.3), p.shape).copy()
    assert one_class(metric, y, flat, threshold)
    score = float(metric_fn(metric, threshold)(y, flat)[0])
    assert score == pytest.approx(chance_level(metric, y))
    # one image on the other side of the decision is no longer a constant prediction
    moved = flat.copy()
    moved[0] = 1 - moved[0] if task != "multiclass" else np.roll(moved[0], 1)
    assert not one_class(metric, y, moved, threshold)
