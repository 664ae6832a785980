"""Percentile-bootstrap intervals over patients, the paper's interval, and intervals across
seeds.

The paper's "95 % CI" (mean ± 1.96·std/√500 of the replicates) is a standard error of the
replicate mean, about 22× too narrow (for chest, whose official sd is taken over the 500 × 14
per-label AUCs, it mixes in the spread between labels instead); here the interval is the
2.5/97.5 percentiles of the replicates, resampling patients (all images of a drawn patient)
when patients have several.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ilmoco.evaluation.metrics import metric_fn, per_label_fn


def resample_weights(groups: np.ndarray, n_resamples: int, rng: np.random.Generator):
    """(B, n) image weights from drawing ``len(unique(groups))`` groups with replacement."""
    codes, uniq = _codes(groups)
    counts = rng.multinomial(len(uniq), np.full(len(uniq), 1 / len(uniq)), size=n_resamples)
    return counts[:, codes].astype(float)


def _codes(groups):
    uniq, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return codes, uniq


def resampled(groups, n_resamples: int, seed: int, chunk: int = 200) -> Iterator[np.ndarray]:
    """The weights of ``n_resamples`` seeded resamples of ``groups``, ``chunk`` rows at a
    time (the same draws for every caller with the same seed)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk):
        yield resample_weights(groups, min(chunk, n_resamples - start), rng)


def bootstrap_replicates(y, p, metric, groups=None, n_resamples: int = 1000, seed: int = 0,
                         chunk: int = 200) -> np.ndarray:
    """``metric`` on ``n_resamples`` resamples of patients (``groups``) or images."""
    y, p = np.asarray(y), np.asarray(p)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    reps = [metric(y, p, W) for W in resampled(groups, n_resamples, seed, chunk)]
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
    metric); reported only to put a run beside the paper's numbers.

    ``metric`` may return (B, L) per-label values (the official chest code: per-label AUCs):
    the mean and sd are then over the whole B x L array, so the spread between labels enters
    the sd, while the √B stays that of the B resamples."""
    y, p = np.asarray(y), np.asarray(p)
    reps = np.concatenate([np.asarray(metric(y, p, W)).reshape(len(W), -1)
                           for W in resampled(np.arange(len(y)), n_resamples, seed)])
    b = int(np.isfinite(reps).any(1).sum())  # resamples with a value
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return {"paper_mean": np.nan, "paper_ci_low": np.nan, "paper_ci_high": np.nan}
    m, half = float(reps.mean()), 1.96 * float(reps.std()) / np.sqrt(b)
    return {"paper_mean": m, "paper_ci_low": m - half, "paper_ci_high": m + half}


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


def metric_interval(y, p, metric: str, threshold: float | None, groups,
                  bootstrap) -> dict:
    """Point estimate and percentile-bootstrap interval over patients (``groups``) or
    images; with ``paper_interval`` also the official mean ± 1.96·sd/√B. ``bootstrap``:
    BootstrapSettings (resamples, seed, level, paper_interval)."""
    fn = metric_fn(metric, threshold)
    ci = bootstrap_ci(y, p, fn, groups, bootstrap.resamples, bootstrap.seed, bootstrap.level)
    if bootstrap.paper_interval:
        spread = fn if bootstrap.paper_interval_spread == "replicates" or threshold is not None \
            else per_label_fn(metric)
        ci.update(paper_interval(y, p, spread, bootstrap.resamples, bootstrap.seed))
    return ci
