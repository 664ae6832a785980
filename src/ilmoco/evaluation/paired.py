"""Paired comparisons: is a method's gain over a baseline more than test-set noise?

Both methods are evaluated on the same test images, so their metrics are compared on the
same resampled patients: in each bootstrap draw b the patient counts W_b weight both,

    Δ_b = metric(y, p_A; W_b) − metric(y, p_B; W_b),

and the interval is the percentile interval of Δ_b. Sharing the draws removes the variation
of "which patients happened to be in the test set" that both methods have in common, so the
paired interval is much narrower than the difference of two unpaired intervals suggests. A
method against itself gives Δ_b = 0 in every draw. With several seeds, the per-seed
differences give a t-interval across seeds (``reporting.tables.aggregate_seeds``).
"""

from __future__ import annotations

import numpy as np

from ilmoco.evaluation.bootstrap import percentile_interval, resampled


def paired_bootstrap(y, p_a, p_b, metric_a, metric_b, groups=None, n_resamples: int = 1000,
                     seed: int = 0, level: float = 0.95, chunk: int = 200) -> dict:
    """Point difference metric_a(y, p_a) − metric_b(y, p_b) and its paired percentile
    interval; ``groups`` (patient ids) are resampled, else images."""
    y = np.asarray(y)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    point = float(metric_a(y, p_a)[0] - metric_b(y, p_b)[0])
    diffs = [metric_a(y, p_a, W) - metric_b(y, p_b, W)
             for W in resampled(groups, n_resamples, seed, chunk)]
    diffs = np.concatenate(diffs) if diffs else np.array([])
    lo, hi = percentile_interval(diffs, level)
    ok = diffs[np.isfinite(diffs)]
    return {"estimate": point, "ci_low": lo, "ci_high": hi,
            "p_better": float((ok > 0).mean()) if len(ok) else float("nan"),
            "n_resamples": int(n_resamples), "n_valid_resamples": int(len(ok))}
