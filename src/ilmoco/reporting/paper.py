"""The paper's published numbers beside a run's.

``data/paper_results.csv`` holds tables 1-5 of Kaku et al. (NeurIPS 2021) as tidy rows
(metric values as fractions, the paper's intervals as printed). A dataset of a run is
compared with the paper's when it is one of the paper's real datasets (its format's registry
entry names the paper's dataset, and it is not synthetic). For each of our results
the comparison gives the difference to the published value and whether the published value
lies inside our interval. Our intervals are percentile bootstraps over patients; the paper's
are standard errors of the replicate mean (for histopathology and retina about 22 times
narrower; for chest with the spread between labels in the sd), so with
``bootstrap.paper_interval`` the paper-style interval of our run is listed as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PAPER_RESULTS = Path(__file__).parent / "paper_results.csv"
KEYS = ["table", "method", "fraction", "block"]


def published() -> pd.DataFrame:
    """The published values, one row per (table, dataset, method, fraction, block)."""
    df = pd.read_csv(PAPER_RESULTS, comment="#", dtype={"block": str})
    df["block"] = df["block"].fillna("")
    return df


def _ours(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Our tidy results in the comparison's keys (one frame for all tables)."""
    frames = []
    for name, df in tables.items():
        if df is None or df.empty:
            continue
        d = df.copy()
        d["table"] = name
        for col in ("fraction", "block"):
            if col not in d.columns:
                d[col] = np.nan if col == "fraction" else ""
        if name == "linear_probe":
            d["block"] = "block4"
        keep = ["dataset", *KEYS, "estimate", "ci_low", "ci_high"]
        keep += [c for c in ("estimate_last", "paper_ci_low", "paper_ci_high") if c in d]
        frames.append(d[keep])
    if not frames:
        return pd.DataFrame(columns=["dataset", *KEYS, "estimate", "ci_low", "ci_high"])
    return pd.concat(frames, ignore_index=True)


def comparison(tables: dict[str, pd.DataFrame], datasets: dict[str, str | None]
               ) -> pd.DataFrame:
    """Rows of our results on the paper's datasets beside the published values.

    ``datasets`` maps each dataset of the run to its paper name or None."""
    ours = _ours(tables)
    ours = ours[ours["dataset"].map(lambda d: datasets.get(d) is not None)].copy()
    cols = ["dataset", "paper_dataset", *KEYS, "ours", "ours_low", "ours_high", "paper",
            "paper_low", "paper_high", "difference", "paper_inside_ours"]
    if ours.empty:
        return pd.DataFrame(columns=cols)
    ours["paper_dataset"] = ours["dataset"].map(datasets)
    pub = published().rename(columns={"dataset": "paper_dataset", "estimate": "paper",
                                      "ci_low": "paper_low", "ci_high": "paper_high"})
    ours["fraction"] = ours["fraction"].astype(float)
    pub["fraction"] = pub["fraction"].astype(float)
    m = ours.merge(pub[["paper_dataset", *KEYS, "paper", "paper_low", "paper_high"]],
                   on=["paper_dataset", *KEYS], how="inner")
    m = m.rename(columns={"estimate": "ours", "ci_low": "ours_low", "ci_high": "ours_high"})
    m["difference"] = m["ours"] - m["paper"]
    m["paper_inside_ours"] = (m["paper"] >= m["ours_low"]) & (m["paper"] <= m["ours_high"])
    extra = [c for c in ("estimate_last", "paper_ci_low", "paper_ci_high") if c in m]
    return m[cols + extra].sort_values(["dataset", "table", "method", "fraction", "block"],
                                       kind="stable").reset_index(drop=True)
