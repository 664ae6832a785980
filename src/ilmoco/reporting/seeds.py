"""What survives another seed: the seed-variance benchmark's table
(``bench/seed_variance.py``), summarised per dataset and method.

A run of the demo is one draw of its training: another seed, or another CPU (whose floating
point changes a short training the way a seed does), moves the pretrained encoders' probes
and the paired differences between methods. The benchmark repeats the demo's training for K
seeds; a finding *holds across seeds* here when it holds in every one of them, and only
such findings are stated as results. Everything else is one draw, shown next to the range
the benchmark measured for it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ilmoco.config.settings.fields import digest

MARGIN = 0.10  # the learning target: a pretrained block-4 probe this far above the control


def settings_digest(run_settings) -> str:
    """A digest of everything that determines the demo's training and evaluation except the
    seeds: the benchmark's table is current for a run whose digest is the same."""
    s = run_settings
    return digest({
        "datasets": s.datasets, "methods": s.methods, "fractions": s.fractions,
        "split": s.split, "pretrain": dataclasses.replace(s.pretrain, seed=0),
        "bases": s.bases, "terms": s.terms, "finetune": s.finetune, "probe": s.probe,
        "bootstrap": s.bootstrap, "paired": s.paired})


def read_table(path) -> tuple[pd.DataFrame, dict]:
    """The benchmark's rows and its header facts (date, machine, commit, settings)."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("#")]
    facts = {"header": " ".join(ln.lstrip("# ") for ln in lines)}
    for ln in lines:
        for part in ln.lstrip("# ").split(", "):
            if part.startswith("settings "):
                facts["settings"] = part.split(" ", 1)[1].strip()
            elif part.startswith("seeds "):
                facts["seeds"] = part.split(" ", 1)[1].strip()
    return pd.read_csv(path, comment="#"), facts


def seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and method across seeds: the smallest and largest probe margin over the
    control, whether every seed meets the learning target, and the range of the paired
    difference to the baseline with whether its sign (and its interval's) holds in every
    seed."""
    rows = []
    for (d, m), g in table.groupby(["dataset", "method"], sort=True):
        row = {"dataset": d, "method": m, "seeds": int(g["seed"].nunique())}
        if "margin" in g and g["margin"].notna().any():
            mg = g["margin"].dropna()
            row.update(margin_min=float(mg.min()), margin_max=float(mg.max()),
                       target_met=bool((mg >= MARGIN).all()))
        if "difference" in g and g["difference"].notna().any():
            df = g.dropna(subset=["difference"])
            lo, hi = df["difference_low"], df["difference_high"]
            row.update(baseline=df["baseline"].iloc[0], fraction=float(df["fraction"].iloc[0]),
                       difference_min=float(df["difference"].min()),
                       difference_max=float(df["difference"].max()),
                       above_in_every_seed=bool((lo > 0).all()),
                       below_in_every_seed=bool((hi < 0).all()))
        rows.append(row)
    return pd.DataFrame(rows)


def consistent_findings(summary: pd.DataFrame) -> pd.DataFrame:
    """The paired differences whose interval excludes zero on the same side in every seed."""
    if summary.empty or "above_in_every_seed" not in summary:
        return summary.iloc[0:0]
    keep = summary["above_in_every_seed"].fillna(False) | summary["below_in_every_seed"].fillna(
        False)
    return summary[keep.astype(bool)]


def seed_range(summary: pd.DataFrame, dataset: str, method: str) -> tuple[float, float]:
    """(smallest, largest) paired difference of ``method`` on ``dataset`` across seeds."""
    hit = summary[(summary["dataset"] == dataset) & (summary["method"] == method)]
    if hit.empty or "difference_min" not in hit or not np.isfinite(hit["difference_min"].iloc[0]):
        return np.nan, np.nan
    return float(hit["difference_min"].iloc[0]), float(hit["difference_max"].iloc[0])
