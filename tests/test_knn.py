"""The pretraining kNN monitor against a direct computation."""

import numpy as np
import pytest

from ilmoco.evaluation.knn import knn_scores


def direct(bank, labels, q, k, t):
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q)
    sim = b @ qn
    top = np.argsort(-sim)[:k]
    w = np.exp(sim[top] / t)
    return (w[:, None] * labels[top]).sum(0) / w.sum()


def test_votes_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    bank, q = rng.normal(size=(30, 5)), rng.normal(size=(4, 5))
    multi = rng.integers(0, 2, (30, 3))
    got = knn_scores(bank, multi, q, k=7, temperature=0.1, task="multilabel", n_classes=3)
    for i in range(4):
        # float64 cosines (~8 u) scaled by 1 / T = 10 in exp, then a weighted mean of 7 0/1
        # votes: <= 2 x 80 u = 2e-14 apart; 1e-12 leaves 50x (rtol=0: the error is absolute)
        np.testing.assert_allclose(got[i], direct(bank, multi, q[i], 7, 0.1), rtol=0,
                                   atol=1e-12)
    binary = rng.integers(0, 2, 30)
    got = knn_scores(bank, binary, q, k=5, temperature=0.07, task="binary", n_classes=2)
    for i in range(4):
        # as above with 1 / T = 14 (~3e-14): far inside approx's default rel 1e-6
        assert got[i] == pytest.approx(direct(bank, np.eye(2)[binary], q[i], 5, 0.07)[1])


def test_separable_classes_score_high():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 40)
    bank = rng.normal(size=(80, 8)) + 3 * y[:, None]
    q = rng.normal(size=(20, 8)) + 3 * np.repeat([0, 1], 10)[:, None]
    s = knn_scores(bank, y, q, k=10, temperature=0.07, task="binary", n_classes=2)
    assert (s[:10] < 0.5).all() and (s[10:] > 0.5).all()
