"""Metrics, percentile-bootstrap confidence intervals and the KS distance.

Every metric accepts resampling weights ``W`` (B, n): W[b, i] is how often image i appears in
bootstrap resample b. A resample is thus one row of counts, and all B resamples are scored
with array operations (an AUC over B resamples is a handful of cumulative sums), not a
Python loop over scikit-learn calls. With ``W=None`` each metric is the plain metric, equal
to scikit-learn's (tested).

Prediction shapes: binary tasks pass ``p`` (n,) = P(positive); multi-label ``p`` (n, L) of
per-label probabilities with ``y`` (n, L); multi-class ``p`` (n, K) with integer ``y`` (n,).

The paper's "95 % CI" (mean ± 1.96·std/√500 of the replicates) is a standard error of the
replicate mean, about 22× too narrow; here the interval is the 2.5/97.5 percentiles of the
replicates, resampling patients (all images of a drawn patient) when patients have several.
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


def task_of(y: np.ndarray, p: np.ndarray) -> str:
    if p.ndim == 1:
        return "binary"
    return "multilabel" if y.ndim == 2 else "multiclass"


def macro_auc(y, p, W=None) -> np.ndarray:
    """Binary: AUC of P(positive). Multi-label: mean over labels of each label's AUC (labels
    without both classes are skipped). Multi-class: one-vs-rest macro AUC."""
    y, p = np.asarray(y), np.asarray(p)
    task = task_of(y, p)
    if task == "binary":
        return weighted_auc(y, p, W)
    cols = range(p.shape[1])
    per = [weighted_auc(y[:, j] if task == "multilabel" else (y == j), p[:, j], W) for j in cols]
    per = np.stack(per, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per, axis=1)


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
        return np.mean([weighted_f1(y[:, j], pred[:, j], W, 1) for j in range(y.shape[1])], 0)
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
    else:
        correct = ((p > 0.5).astype(int) == y).mean(1)
    return (W @ correct.astype(float)) / W.sum(1)


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


def resample_weights(groups: np.ndarray, n_resamples: int, rng: np.random.Generator):
    """(B, n) image weights from drawing ``len(unique(groups))`` groups with replacement."""
    codes, uniq = _codes(groups)
    counts = rng.multinomial(len(uniq), np.full(len(uniq), 1 / len(uniq)), size=n_resamples)
    return counts[:, codes].astype(float)


def _codes(groups):
    uniq, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return codes, uniq


def bootstrap_replicates(y, p, metric, groups=None, n_resamples: int = 1000, seed: int = 0,
                         chunk: int = 200) -> np.ndarray:
    """``metric`` on ``n_resamples`` resamples of patients (``groups``) or images."""
    y, p = np.asarray(y), np.asarray(p)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    reps = []
    for start in range(0, n_resamples, chunk):
        W = resample_weights(groups, min(chunk, n_resamples - start), rng)
        reps.append(metric(y, p, W))
    return np.concatenate(reps) if reps else np.array([])


def percentile_interval(reps: np.ndarray, level: float) -> tuple[float, float]:
    ok = np.isfinite(reps)
    a = (1 - level) / 2 * 100
    if not ok.any():
        return np.nan, np.nan
    lo, hi = np.percentile(reps[ok], [a, 100 - a])
    return float(lo), float(hi)


def bootstrap_ci(
    y, p, metric, groups=None, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
    chunk: int = 200,
) -> dict:
    """Point estimate and percentile CI of ``metric`` over resamples of patients (``groups``)
    or of images (``groups=None``)."""
    y, p = np.asarray(y), np.asarray(p)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    point = float(metric(y, p)[0])
    reps = bootstrap_replicates(y, p, metric, groups, n_resamples, seed, chunk)
    lo, hi = percentile_interval(reps, level)
    return {"estimate": point, "ci_low": lo, "ci_high": hi,
            "n_resamples": int(n_resamples), "n_valid_resamples": int(np.isfinite(reps).sum()),
            "n_images": int(len(y)), "n_groups": int(len(np.unique(groups.astype(str)))),
            "level": level, "seed": int(seed)}


def paper_interval(y, p, metric, n_resamples: int = 500, seed: int = 0) -> dict:
    """The official code's "95 % CI": mean ± 1.96·sd/√B of B image-level bootstrap
    replicates (a standard error of the replicate mean, not a confidence interval of the
    metric); reported only to put a run beside the paper's numbers."""
    reps = bootstrap_replicates(y, p, metric, None, n_resamples, seed)
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return {"paper_mean": np.nan, "paper_ci_low": np.nan, "paper_ci_high": np.nan}
    m, half = float(reps.mean()), 1.96 * float(reps.std()) / np.sqrt(len(reps))
    return {"paper_mean": m, "paper_ci_low": m - half, "paper_ci_high": m + half}


def ks_distance(p_a: np.ndarray, p_b: np.ndarray) -> dict:
    """Two-sample Kolmogorov–Smirnov statistic between predicted-probability distributions;
    per label (or class) for multi-column predictions, then averaged."""
    from scipy.stats import ks_2samp  # imported here: scipy.stats costs ~1 s per job

    p_a, p_b = np.asarray(p_a), np.asarray(p_b)
    if p_a.ndim == 1:
        r = ks_2samp(p_a, p_b)
        return {"ks": float(r.statistic), "pvalue": float(r.pvalue), "per_label": [
            float(r.statistic)]}
    per = [ks_2samp(p_a[:, j], p_b[:, j]) for j in range(p_a.shape[1])]
    return {"ks": float(np.mean([r.statistic for r in per])),
            "pvalue": float(np.min([r.pvalue for r in per])),
            "per_label": [float(r.statistic) for r in per]}


def mean_ci_across_seeds(values, level: float = 0.95) -> dict:
    """Mean and t-interval across seeds (n = 1: the value, no interval)."""
    from scipy import stats

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": 0}
    m = float(v.mean())
    if len(v) == 1:
        return {"estimate": m, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": 1}
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return {"estimate": m, "ci_low": m - half, "ci_high": m + half, "n_seeds": len(v)}


def chance_level(metric: str, y) -> float:
    """The score of an uninformative classifier: AUC 0.5; for F1 and accuracy, always
    predicting each label's majority class (the positive class for the tuned F1)."""
    if metric == "macro_auc":
        return 0.5
    y = np.asarray(y)
    if y.ndim == 2:  # multi-label: per label, then the mean
        return float(np.mean([chance_level(metric, y[:, j]) for j in range(y.shape[1])]))
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


def metric_interval(y, p, metric: str, threshold: float | None, groups,
                  bootstrap) -> dict:
    """Point estimate and percentile-bootstrap interval over patients (``groups``) or
    images; with ``paper_interval`` also the official mean ± 1.96·sd/√B. ``bootstrap``:
    BootstrapSettings (resamples, seed, level, paper_interval)."""
    fn = metric_fn(metric, threshold)
    ci = bootstrap_ci(y, p, fn, groups, bootstrap.resamples, bootstrap.seed, bootstrap.level)
    if bootstrap.paper_interval:
        ci.update(paper_interval(y, p, fn, bootstrap.resamples, bootstrap.seed))
    return ci
