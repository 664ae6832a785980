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
    """Per dataset, method and fraction across seeds: the smallest and largest probe margin
    over the control, whether every seed meets the learning target, and the range of the
    paired difference to the baseline with whether its sign (and its interval's) holds in
    every seed. A seed whose model (or the baseline's) predicted one class is no evidence
    of a sign: such a difference holds in no seed."""
    table = table if "fraction" in table else table.assign(fraction=np.nan)
    flat = _flat(table)
    rows = []
    for (d, m, f), g in table.groupby(["dataset", "method", "fraction"], sort=True,
                                      dropna=False):
        row = {"dataset": d, "method": m, "fraction": float(f),
               "seeds": int(g["seed"].nunique())}
        if "margin" in g and g["margin"].notna().any():
            mg = g["margin"].dropna()
            row.update(margin_min=float(mg.min()), margin_max=float(mg.max()),
                       target_met=bool((mg >= MARGIN).all()))
        if "difference" in g and g["difference"].notna().any():
            df = g.dropna(subset=["difference"])
            ok = np.array([not ({(d, m, f, k), (d, b, f, k)} & flat)
                           for k, b in zip(df["seed"], df["baseline"])])
            lo, hi = df["difference_low"], df["difference_high"]
            row.update(baseline=df["baseline"].iloc[0],
                       difference_min=float(df["difference"].min()),
                       difference_max=float(df["difference"].max()),
                       above_in_every_seed=bool(((lo > 0) & ok).all()),
                       below_in_every_seed=bool(((hi < 0) & ok).all()))
        rows.append(row)
    return pd.DataFrame(rows)


def _flat(table: pd.DataFrame) -> set:
    """(dataset, method, fraction, seed) of the fine-tunings that predicted one class."""
    if "one_class" not in table:
        return set()
    hit = table[table["one_class"].fillna(False).astype(bool)]
    return set(zip(hit["dataset"], hit["method"], hit["fraction"], hit["seed"]))


def ssl_over_supervised(table: pd.DataFrame, supervised: str = "supervised") -> pd.DataFrame:
    """Per fraction and seed: on how many datasets the best self-supervised method's
    fine-tuned estimate is above Supervised's (a model that predicted one class counts as
    no result), and by how much at the least."""
    flat = _flat(table)
    rows = []
    for (f, k), g in table.groupby(["fraction", "seed"], sort=True):
        wins, gaps = 0, []
        for d, h in g.groupby("dataset", sort=True):
            keep = [(d, m, f, k) not in flat for m in h["method"]]
            h = h[keep]
            sup = h.loc[h["method"] == supervised, "finetune"]
            ssl = h.loc[h["probe"].notna(), "finetune"] if "probe" in h else h.iloc[0:0]
            if len(ssl) and (sup.empty or ssl.max() > sup.iloc[0]):
                wins += 1
            if len(ssl) and len(sup):
                gaps.append(float(ssl.max() - sup.iloc[0]))
        rows.append({"fraction": float(f), "seed": int(k), "datasets": g["dataset"].nunique(),
                     "ssl_wins": wins, "smallest_gap": min(gaps) if gaps else np.nan})
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
