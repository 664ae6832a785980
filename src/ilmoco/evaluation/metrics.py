"""Metrics on test (or validation) predictions, each computable under bootstrap weights.

Every metric accepts resampling weights ``W`` (B, n): W[b, i] is how often image i appears in
bootstrap resample b. A resample is thus one row of counts, and all B resamples are scored
with array operations (an AUC over B resamples is a handful of cumulative sums), not a
Python loop over scikit-learn calls. With ``W=None`` each metric is the plain metric, equal
to scikit-learn's (tested).

Prediction shapes: binary tasks pass ``p`` (n,) = P(positive); multi-label ``p`` (n, L) of
per-label probabilities with ``y`` (n, L); multi-class ``p`` (n, K) with integer ``y`` (n,).
"""

from __future__ import annotations

import warnings

import numpy as np

from ilmoco.io import InputError

METRICS = ("macro_auc", "f1_macro", "f1_pos_tuned", "accuracy")


def _weights(W, n):
    return np.ones((1, n)) if W is None else np.asarray(W, float)


def weighted_auc(y: np.ndarray, s: np.ndarray, W=None) -> np.ndarray:
    """ROC AUC (ties count 1/2) for each row of weights W (B, n); NaN where a class is absent."""
    W = _weights(W, len(y))
    order = np.argsort(s, kind="mergesort")
    y, s, W = np.asarray(y)[order].astype(float), np.asarray(s)[order], W[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    neg = np.add.reduceat(W * (1 - y), starts, axis=1)
    pos = np.add.reduceat(W * y, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(1)
    den = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _f1(tp, fp, fn):
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, W, positive: int) -> np.ndarray:
    t, p = (np.asarray(y_true) == positive), (np.asarray(y_pred) == positive)
    tp = W @ (t & p).astype(float)
    fp = W @ (~t & p).astype(float)
    fn = W @ (t & ~p).astype(float)
    return _f1(tp, fp, fn)


def known_label(y: np.ndarray, j: int, W):
    """Label ``j`` of a multi-label ``y`` without its ignored entries (-1): (y_j, kept rows or
    None when every entry is known, the weights of the kept rows)."""
    col = y[:, j]
    if not (col < 0).any():
        return col, None, W
    keep = col >= 0
    return col[keep], keep, (None if W is None else np.asarray(W, float)[:, keep])


def task_of(y: np.ndarray, p: np.ndarray) -> str:
    if p.ndim == 1:
        return "binary"
    return "multilabel" if y.ndim == 2 else "multiclass"


def macro_auc(y, p, W=None) -> np.ndarray:
    """Binary: AUC of P(positive). Multi-label: mean over labels of each label's AUC (labels
    without both classes are skipped, and each label's ignored entries, -1, left out).
    Multi-class: one-vs-rest macro AUC."""
    y, p = np.asarray(y), np.asarray(p)
    task = task_of(y, p)
    if task == "binary":
        return weighted_auc(y, p, W)
    per = []
    for j in range(p.shape[1]):
        if task == "multilabel":
            yj, keep, Wj = known_label(y, j, W)
            per.append(weighted_auc(yj, p[:, j] if keep is None else p[keep, j], Wj))
        else:
            per.append(weighted_auc(y == j, p[:, j], W))
    per = np.stack(per, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per, axis=1)


def per_label_auc(y, p, W=None) -> np.ndarray:
    """(B, L) AUC of each label (multi-label), or of the task as one column (binary,
    multi-class): the values whose mean is :func:`macro_auc`."""
    y, p = np.asarray(y), np.asarray(p)
    if task_of(y, p) != "multilabel":
        return macro_auc(y, p, W)[:, None]
    return np.stack([weighted_auc(y[:, j], p[:, j], W) for j in range(p.shape[1])], 1)


def per_label_f1(y, p, W=None) -> np.ndarray:
    """(B, L) F1 at 0.5 of each label (multi-label), or :func:`f1_macro` as one column."""
    y, p = np.asarray(y), np.asarray(p)
    if task_of(y, p) != "multilabel":
        return f1_macro(y, p, W)[:, None]
    W = _weights(W, len(y))
    pred = (p > 0.5).astype(int)
    return np.stack([weighted_f1(y[:, j], pred[:, j], W, 1) for j in range(y.shape[1])], 1)


def per_label_fn(name: str):
    """``f(y, p, W=None) -> (B, L)``: the per-label values a macro metric averages (the
    official chest interval's array), or the metric itself as one column."""
    if name == "macro_auc":
        return per_label_auc
    if name == "f1_macro":
        return per_label_f1
    return lambda y, p, W=None: metric_fn(name)(y, p, W)[:, None]


def f1_macro(y, p, W=None) -> np.ndarray:
    """Macro F1 of argmax predictions (binary: P(pos) > 0.5), as the official code reports;
    multi-label: mean over labels of each label's F1 at 0.5."""
    y, p = np.asarray(y), np.asarray(p)
    W = _weights(W, len(y))
    task = task_of(y, p)
    if task == "binary":
        pred = (p > 0.5).astype(int)
        return (weighted_f1(y, pred, W, 0) + weighted_f1(y, pred, W, 1)) / 2
    if task == "multilabel":
        pred = (p > 0.5).astype(int)
        per = []
        for j in range(y.shape[1]):
            yj, keep, Wj = known_label(y, j, W)
            per.append(weighted_f1(yj, pred[:, j] if keep is None else pred[keep, j], Wj, 1))
        return np.mean(per, 0)
    pred = p.argmax(1)
    return np.mean([weighted_f1(y, pred, W, k) for k in range(p.shape[1])], 0)


def f1_at_threshold(y, p, threshold: float, W=None) -> np.ndarray:
    """Positive-class F1 of ``P(pos) >= threshold`` (binary tasks)."""
    W = _weights(W, len(y))
    return weighted_f1(np.asarray(y), (np.asarray(p) >= threshold).astype(int), W, 1)


def best_f1_threshold(y, p) -> float:
    """The threshold on P(pos) that maximises positive-class F1 on (validation) data."""
    y, p = np.asarray(y).astype(float), np.asarray(p)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    tp, fp = np.cumsum(ys), np.cumsum(1 - ys)
    last = np.r_[ps[1:] != ps[:-1], True]  # predicting positive for every p >= ps[i]
    f1 = np.where(last, 2 * tp / np.maximum(tp + fp + ys.sum(), 1e-12), -1)
    return float(ps[int(np.argmax(f1))])


def accuracy(y, p, W=None) -> np.ndarray:
    y, p = np.asarray(y), np.asarray(p)
    W = _weights(W, len(y))
    task = task_of(y, p)
    if task == "binary":
        correct = (p > 0.5).astype(int) == y
    elif task == "multiclass":
        correct = p.argmax(1) == y
    elif (y < 0).any():  # multi-label with ignored entries: the known labels of each image
        known = y >= 0
        hits = (((p > 0.5).astype(int) == y) & known).sum(1)
        n_known = known.sum(1)
        correct = np.where(n_known > 0, hits / np.maximum(n_known, 1), 0.0)
        return (W @ correct) / (W @ (n_known > 0).astype(float))
    else:
        correct = ((p > 0.5).astype(int) == y).mean(1)
    return (W @ correct.astype(float)) / W.sum(1)


def selection_metric(metric: str) -> str:
    """The metric that selects an epoch or monitors training: the metric itself, or macro
    F1 for the tuned F1 (whose threshold is chosen only after selection)."""
    return "f1_macro" if metric == "f1_pos_tuned" else metric


def metric_fn(name: str, threshold: float | None = None):
    """``f(y, p, W=None) -> (B,)`` for a metric name from the config."""
    if name == "macro_auc":
        return macro_auc
    if name == "f1_macro":
        return f1_macro
    if name == "accuracy":
        return accuracy
    if name == "f1_pos_tuned":
        if threshold is None:
            raise ValueError("f1_pos_tuned needs a threshold chosen on validation")
        return lambda y, p, W=None: f1_at_threshold(y, p, threshold, W)
    raise ValueError(f"unknown metric {name!r}; known: {METRICS}")


def chance_level(metric: str, y) -> float:
    """The score of an uninformative classifier: AUC 0.5; for F1 and accuracy, always
    predicting each label's majority class (the positive class for the tuned F1)."""
    if metric == "macro_auc":
        return 0.5
    y = np.asarray(y)
    if y.ndim == 2:  # multi-label: per label (its known entries), then the mean
        if metric == "f1_macro":  # each label's positive-class F1, as f1_macro scores it
            pi = [float((y[y[:, j] >= 0, j] == 1).mean()) for j in range(y.shape[1])]
            return float(np.mean([2 * q / (1 + q) if q > 0.5 else 0.0 for q in pi]))
        return float(np.mean([chance_level(metric, y[y[:, j] >= 0, j])
                              for j in range(y.shape[1])]))
    classes, counts = np.unique(y, return_counts=True)
    if metric == "accuracy":
        return float(counts.max() / counts.sum())
    if metric == "f1_pos_tuned":
        pi = float((y == 1).mean())
        return 2 * pi / (1 + pi)
    majority = classes[np.argmax(counts)]
    pred = np.full(len(y), majority)
    n_classes = max(2, len(classes))
    per = [_f1(np.sum((y == c) & (pred == c)), np.sum((y != c) & (pred == c)),
               np.sum((y == c) & (pred != c))) for c in range(n_classes)]
    return float(np.mean(per))


def decisions(metric: str, y, p, threshold: float | None = None) -> np.ndarray:
    """What the metric reads from the predictions: the class each image is given (F1,
    accuracy: P(pos) > 0.5, the tuned threshold, argmax; per label for multi-label), or for
    AUC the scores themselves (only their order counts)."""
    y, p = np.asarray(y), np.asarray(p)
    if metric == "macro_auc":
        return p
    if metric == "f1_pos_tuned":
        return (p >= threshold).astype(int)
    return p.argmax(1) if task_of(y, p) == "multiclass" else (p > 0.5).astype(int)


def one_class(metric: str, y, p, threshold: float | None = None) -> bool:
    """Whether a model's predictions are a constant prediction to its metric: one class for
    every image (per label, for every label), or for AUC one score per label, so that the
    metric is :func:`chance_level`'s, whatever the model learned elsewhere."""
    d = decisions(metric, y, p, threshold)
    d = d.reshape(len(d), -1)
    return bool(len(d)) and bool((d == d[:1]).all())


def check_metric(metric: str, y_val) -> None:
    """Refuse a metric the labels cannot have (called before training, not after it)."""
    if metric == "f1_pos_tuned" and (np.asarray(y_val).ndim != 1
                                     or len(np.unique(y_val)) > 2):
        raise InputError("metric f1_pos_tuned needs a binary task (one positive class); "
                         "use macro_auc or f1_macro for this dataset")


def tuned_threshold(metric: str, y_val, p_val) -> float | None:
    """The positive-class threshold chosen on validation (``f1_pos_tuned`` only); ``p_val``
    may be a function computing the validation probabilities only when needed."""
    if metric != "f1_pos_tuned":
        return None
    check_metric(metric, y_val)
    return best_f1_threshold(y_val, p_val() if callable(p_val) else p_val)
