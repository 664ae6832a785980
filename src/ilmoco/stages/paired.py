"""The ``paired`` stage: each method's difference to the baseline on the same resampled test
patients, per label fraction and seed (``evaluation.paired``)."""

from __future__ import annotations

import pandas as pd

from ilmoco.config.settings.bootstrap import BootstrapSettings
from ilmoco.evaluation.metrics import metric_fn
from ilmoco.evaluation.paired import paired_bootstrap
from ilmoco.evaluation.predictions import read_predictions
from ilmoco.io import InputError, read_json, write_csv


def run(*, dataset: str, runs: dict, baseline: str, bootstrap: BootstrapSettings,
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
