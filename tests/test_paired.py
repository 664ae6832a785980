"""Paired bootstrap differences against an independent computation on fixed draws."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ilmoco.evaluation.bootstrap import resample_weights
from ilmoco.evaluation.metrics import macro_auc
from ilmoco.evaluation.paired import paired_bootstrap


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p_a = np.clip(y * 0.3 + rng.normal(0.35, 0.2, n), 0, 1)
    p_b = np.clip(y * 0.15 + rng.normal(0.42, 0.2, n), 0, 1)
    groups = np.repeat(np.arange(n // 2), 2)  # two images per patient
    return y, p_a, p_b, groups


def test_matches_an_independent_loop_over_the_same_draws():
    y, p_a, p_b, groups = data()
    r = paired_bootstrap(y, p_a, p_b, macro_auc, macro_auc, groups, n_resamples=200, seed=5,
                         level=0.9)
    # the same draws: the generator and patient weights the function uses
    W = resample_weights(groups, 200, np.random.default_rng(5))
    diffs = []
    for w in W:
        idx = np.repeat(np.arange(len(y)), w.astype(int))  # each drawn image, repeated
        if len(set(y[idx])) < 2:
            continue
        diffs.append(roc_auc_score(y[idx], p_a[idx]) - roc_auc_score(y[idx], p_b[idx]))
    diffs = np.array(diffs)
    # two float64 AUCs of 60 images, each ~4 * 60 u = 3e-14 from scikit-learn's (pair counts
    # against a trapezoid): far inside approx's default rel 1e-6
    assert r["estimate"] == pytest.approx(roc_auc_score(y, p_a) - roc_auc_score(y, p_b))
    # percentiles of 200 such differences (each <= 6e-14 from the other side's; the
    # interpolation adds a few u): 1e-12 leaves 15x
    assert r["ci_low"] == pytest.approx(np.percentile(diffs, 5), abs=1e-12)
    assert r["ci_high"] == pytest.approx(np.percentile(diffs, 95), abs=1e-12)
    # a share of the same 200 signs: equal unless a difference lies within rounding of 0
    # (the smallest |difference| here is 1e-3)
    assert r["p_better"] == pytest.approx((diffs > 0).mean())
    assert r["n_valid_resamples"] == len(diffs)


def test_a_method_against_itself_is_exactly_zero():
    y, p_a, _, groups = data(seed=1)
    r = paired_bootstrap(y, p_a, p_a, macro_auc, macro_auc, groups, n_resamples=300)
    assert (r["estimate"], r["ci_low"], r["ci_high"]) == (0.0, 0.0, 0.0)


def test_pairing_narrows_the_interval():
    """Two close methods: the paired interval of the difference is narrower than the gap
    between their separate intervals' ends would suggest."""
    from ilmoco.evaluation.bootstrap import bootstrap_ci

    y, p_a, _, groups = data(n=200, seed=2)
    p_b = np.clip(p_a + np.random.default_rng(3).normal(0, 0.03, len(y)), 0, 1)
    r = paired_bootstrap(y, p_a, p_b, macro_auc, macro_auc, groups, n_resamples=400)
    a = bootstrap_ci(y, p_a, macro_auc, groups, 400)
    b = bootstrap_ci(y, p_b, macro_auc, groups, 400)
    unpaired_width = (a["ci_high"] - a["ci_low"]) + (b["ci_high"] - b["ci_low"])
    assert r["ci_high"] - r["ci_low"] < 0.5 * unpaired_width
