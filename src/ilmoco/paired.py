"""Paired comparisons: is a method's gain over a baseline more than test-set noise?

Both methods are evaluated on the same test images, so their metrics are compared on the
same resampled patients: in each bootstrap draw b the patient counts W_b weight both,

    Δ_b = metric(y, p_A; W_b) − metric(y, p_B; W_b),

and the interval is the percentile interval of Δ_b. Sharing the draws removes the variation
of "which patients happened to be in the test set" that both methods have in common, so the
paired interval is much narrower than the difference of two unpaired intervals suggests. A
method against itself gives Δ_b = 0 in every draw. With several seeds, the per-seed
differences give a t-interval across seeds (``tables.aggregate_seeds``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ilmoco.io import InputError, read_json, write_csv
from ilmoco.predictions import read_predictions
from ilmoco.settings import BootstrapSettings
from ilmoco.stats import metric_fn, percentile_interval, resample_weights


def paired_bootstrap(y, p_a, p_b, metric_a, metric_b, groups=None, n_resamples: int = 1000,
                     seed: int = 0, level: float = 0.95, chunk: int = 200) -> dict:
    """Point difference metric_a(y, p_a) − metric_b(y, p_b) and its paired percentile
    interval; ``groups`` (patient ids) are resampled, else images."""
    y = np.asarray(y)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    point = float(metric_a(y, p_a)[0] - metric_b(y, p_b)[0])
    diffs = []
    for start in range(0, n_resamples, chunk):
        W = resample_weights(groups, min(chunk, n_resamples - start), rng)
        diffs.append(metric_a(y, p_a, W) - metric_b(y, p_b, W))
    diffs = np.concatenate(diffs) if diffs else np.array([])
    lo, hi = percentile_interval(diffs, level)
    ok = diffs[np.isfinite(diffs)]
    return {"estimate": point, "ci_low": lo, "ci_high": hi,
            "p_better": float((ok > 0).mean()) if len(ok) else float("nan"),
            "n_resamples": int(n_resamples), "n_valid_resamples": int(len(ok))}


def run_paired(*, dataset: str, runs: dict, baseline: str, bootstrap: BootstrapSettings,
               out_csv: str) -> pd.DataFrame:
    """Each method's difference to ``baseline`` per (fraction, seed).

    ``runs`` maps (method, fraction, seed) -> (predictions.csv, metrics.json)."""
    rows = []
    for (method, pct, seed), (pred, met) in sorted(runs.items()):
        base = runs.get((baseline, pct, seed))
        if base is None:
            raise InputError(f"paired.baseline {baseline!r} has no run at {pct:g} % seed {seed}")
        if method == baseline:
            continue
        df_a, y, p_a = read_predictions(pred)
        df_b, _, p_b = read_predictions(base[0])
        if not df_a["image_id"].equals(df_b["image_id"]):
            raise InputError(f"{pred}: test images differ from the baseline run's")
        m_a, m_b = read_json(met), read_json(base[1])
        fn_a = metric_fn(m_a["metric"], m_a.get("threshold"))
        fn_b = metric_fn(m_b["metric"], m_b.get("threshold"))
        groups = df_a["patient_id"].to_numpy() if m_a.get("bootstrap_unit") == "patient" \
            else None
        r = paired_bootstrap(y, p_a, p_b, fn_a, fn_b, groups, bootstrap.resamples,
                             bootstrap.seed, bootstrap.level)
        rows.append({"dataset": dataset, "method": method, "baseline": baseline,
                     "fraction": float(pct), "seed": int(seed), "metric": m_a["metric"], **r})
    df = pd.DataFrame(rows)
    write_csv(out_csv, df, float_format="%.6g")
    return df
