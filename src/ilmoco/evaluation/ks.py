"""The Kolmogorov-Smirnov distance between two models' predicted-probability distributions."""

from __future__ import annotations

import numpy as np


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
