"""Ignored labels (-1: an uncertain label read with `uncertain: ignore`) leave every place a
label is used: the multi-label loss, the metrics (each label scored on its known entries,
against scikit-learn), the validation loss, the kNN monitor and the stratification of the
split."""

import numpy as np
import pandas as pd
import pytest


def test_masked_labels_leave_loss_metrics_and_stratification():
    import torch
    from sklearn.metrics import roc_auc_score

    from ilmoco.data.formats.base import DatasetMeta
    from ilmoco.data.split import iterative_stratification, label_matrix
    from ilmoco.evaluation.metrics import accuracy, f1_macro, macro_auc
    from ilmoco.training.heads import loss_fn, prediction_loss

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (60, 3))
    y[rng.random((60, 3)) < 0.2] = -1
    p = rng.random((60, 3))
    known = y >= 0
    expected = np.mean([roc_auc_score(y[known[:, j], j], p[known[:, j], j]) for j in range(3)])
    # float64 AUCs of <= 54 known entries: pair counts against scikit-learn's trapezoid,
    # ~4 * 54 u = 2e-14 apart; approx's default rel 1e-6 is far above
    assert macro_auc(y, p)[0] == pytest.approx(expected)
    from sklearn.metrics import f1_score

    f1 = np.mean([f1_score(y[known[:, j], j], p[known[:, j], j] > 0.5) for j in range(3)])
    assert f1_macro(y, p)[0] == pytest.approx(f1)  # ratios of counts: one rounding each
    acc = np.mean([((p[i] > 0.5) == y[i])[known[i]].mean() for i in range(60) if known[i].any()])
    assert accuracy(y, p)[0] == pytest.approx(acc)  # means of 60 shares: ~60 u ~ 7e-15
    # the loss: mean BCE over known entries only
    logits = torch.randn(60, 3, dtype=torch.float64)
    yt = torch.from_numpy(y)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[yt >= 0], yt[yt >= 0].double())
    # float64 BCE means over the same 143 known entries, summed in other orders:
    # tol.sum_rtol(143) = 3e-14 of the mean; approx's default rel 1e-6 is far above
    assert loss_fn(logits, yt, "multilabel", masked=True).item() == pytest.approx(bce.item())
    probs = torch.sigmoid(logits).numpy()
    ce = -(y * np.log(probs) + (1 - y) * np.log(1 - probs))[known].mean()
    # the same float64 formula on the same probabilities and 143 entries (the clip to
    # [1e-7, 1 - 1e-7] idle: |logit| < 16): equal up to a rounding or two
    assert prediction_loss(y, probs, "multilabel") == pytest.approx(ce)
    # stratification: a masked entry is no positive (the same folds as with it set to 0)
    meta = DatasetMeta("image_table", "multilabel", ["a", "b", "c"], 1, 3)
    m = label_matrix(pd.DataFrame(y, columns=["a", "b", "c"]), meta)
    a = iterative_stratification(m, (0.5, 0.3, 0.2), np.random.default_rng(1))
    b = iterative_stratification(np.where(m < 0, 0, m), (0.5, 0.3, 0.2),
                                 np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)


def test_masked_labels_in_the_knn_monitor():
    from ilmoco.evaluation.knn import knn_scores

    rng = np.random.default_rng(1)
    bank, queries = rng.normal(size=(20, 8)), rng.normal(size=(5, 8))
    y = rng.integers(0, 2, (20, 2))
    y[:5, 0] = -1
    s = knn_scores(bank, y, queries, k=20, temperature=1.0, task="multilabel", n_classes=2)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    w = np.exp(q @ b.T)
    keep = y[:, 0] >= 0
    expected = (w[:, keep] * y[keep, 0]).sum(1) / w[:, keep].sum(1)
    # float64 weighted votes over 20 neighbours: ~20 u ~ 2e-15, inside the default rtol 1e-7
    np.testing.assert_allclose(s[:, 0], expected)
