"""The README's account of a run, written from its results (never typed by hand).

* **Did self-supervised learning happen?** Per dataset and method: the last training
  InfoNCE against its chance level ln(K + 1), the kNN monitor at the last epoch, and the
  block-4 linear probe against the random-init control, and each encoder's best block
  against the control's best block (random features can already solve much of a task).
* **Which method wins?** First what holds in every seed of the seed-variance benchmark
  (``bench/seed_variance.py``; only when its settings are this run's), then per dataset and
  label fraction each method's paired difference to the baseline (same resampled test
  patients): with one seed a difference whose interval excludes zero is *one draw* of the
  training and is labelled so, next to the range the benchmark measured for it; everything
  else is reported as within noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ilmoco.names import RANDOM_INIT
from ilmoco.reporting.seeds import consistent_findings, seed_range


def pretraining_rows(curves: dict, chance: dict, probes: pd.DataFrame) -> pd.DataFrame:
    """``curves``: (dataset, method) -> pretraining metrics.csv frame; ``chance``: method ->
    (InfoNCE of an encoder that learned nothing, label) for the MoCo-based methods."""
    rows = []
    for (dataset, method), df in sorted(curves.items()):
        train = df[df["loss"].notna()] if "loss" in df else df
        knn = [c for c in df.columns if c.startswith("knn_")]
        row = {"dataset": dataset, "method": method}
        if "infonce" in train and len(train):
            row["infonce"] = float(train["infonce"].iloc[-1])
            row["chance"] = float(chance[method][0])
        if knn and df[knn[0]].notna().any():
            row["knn"] = float(df[knn[0]].dropna().iloc[-1])
        here = probes[probes["dataset"] == dataset]
        mine, ctrl = here[here["method"] == method], here[here["method"] == RANDOM_INIT]
        own4, ctrl4 = (f.loc[f["block"] == "block4", "estimate"] for f in (mine, ctrl))
        if len(own4) and len(ctrl4):
            row["probe"], row["random_probe"] = float(own4.iloc[0]), float(ctrl4.iloc[0])
        early = ctrl.loc[ctrl["block"] != "block4", "estimate"]
        if len(early):
            row["random_early"] = float(early.max())
        if len(mine) and len(ctrl):
            row["best_probe"] = float(mine["estimate"].max())
            row["random_best"] = float(ctrl["estimate"].max())
        rows.append(row)
    return pd.DataFrame(rows)


def learning_table(rows: pd.DataFrame, display: dict, datasets: dict) -> str:
    lines = ["| dataset | method | InfoNCE at the end | chance ln(K+1) | kNN monitor | "
             "block-4 probe | random-init block-4 |", "|---|---|---:|---:|---:|---:|---:|"]
    def num(r, key, fmt, scale=1.0):
        v = r.get(key, np.nan)
        return format(v * scale, fmt) if pd.notna(v) else "–"

    for _, r in rows.iterrows():
        lines.append(f"| {datasets.get(r['dataset'], r['dataset'])} | "
                     f"{display.get(r['method'], r['method'])} | {num(r, 'infonce', '.2f')} | "
                     f"{num(r, 'chance', '.2f')} | {num(r, 'knn', '.1f', 100)} | "
                     f"{num(r, 'probe', '.1f', 100)} | {num(r, 'random_probe', '.1f', 100)} |")
    return "\n".join(lines) + "\n"


def learning_sentences(rows: pd.DataFrame, display: dict) -> list[str]:
    """What the pretraining numbers show, with the ranges measured."""
    out = []
    moco_like = rows[rows["infonce"].notna()] if "infonce" in rows else rows.iloc[0:0]
    if len(moco_like):
        below = moco_like["chance"] - moco_like["infonce"]
        out.append(f"Every MoCo pretraining ended with InfoNCE {below.min():.2f}-"
                   f"{below.max():.2f} nats below chance (ln(K+1) = "
                   f"{moco_like['chance'].iloc[0]:.2f}).")
    if "probe" in rows and rows["probe"].notna().any():
        gain = (rows["probe"] - rows["random_probe"]) * 100
        ctrl = rows["random_probe"].dropna() * 100
        out.append(f"The random-init control scores {ctrl.min():.1f}-{ctrl.max():.1f} "
                   f"with a block-4 linear probe; the pretrained encoders beat it by "
                   f"{gain.min():+.1f} to {gain.max():+.1f} points.")
        if "random_early" in rows and rows["random_early"].notna().any():
            early = rows.groupby("dataset")["random_early"].first().dropna() * 100
            out.append("Below block 4 the random-init control already scores up to "
                       + ", ".join(f"{v:.1f} on {d}" for d, v in early.items())
                       + ": that much of each task is readable from random features.")
        if "best_probe" in rows and rows["best_probe"].notna().any():
            best = (rows["best_probe"] - rows["random_best"]).dropna() * 100
            out.append(f"Best block against best block, the pretrained encoders score "
                       f"{best.min():+.1f} to {best.max():+.1f} points from the control.")
        weak = rows[gain < 10]
        if len(weak):
            names = ", ".join(f"{display.get(m, m)} on {d}"
                              for d, m in zip(weak["dataset"], weak["method"]))
            out.append(f"Less than 10 points above the control: {names}.")
    return out


def _cell(r, scale: float = 100) -> str:
    return (f"{r['estimate'] * scale:+.1f} [{r['ci_low'] * scale:+.1f}, "
            f"{r['ci_high'] * scale:+.1f}]")


def _range(lo: float, hi: float) -> str:
    return f"{lo * 100:+.1f} to {hi * 100:+.1f}"


def seed_sentences(summary: pd.DataFrame | None, facts: dict | None, display: dict,
                   datasets: dict, current: bool, wins: pd.DataFrame | None = None
                   ) -> list[str]:
    """What holds in every seed of the seed-variance benchmark: the learning target per
    dataset and method, the paired differences whose interval excludes zero on the same
    side in each seed, and (``wins``, :func:`ilmoco.reporting.seeds.ssl_over_supervised`)
    on how many datasets the best self-supervised fine-tuning beats Supervised per seed.
    Nothing when there is no benchmark for these settings."""
    if summary is None or summary.empty:
        return ["No seed-variance benchmark is recorded for these settings "
                "(bench/seed_variance.py): every difference below is one draw."]
    if not current:
        return ["The seed-variance benchmark on record was measured with other settings "
                f"({facts.get('header', '')}); rerun bench/seed_variance.py: until then "
                "every difference below is one draw."]
    k = int(summary["seeds"].max())
    out = [f"Across {k} seeds of the demo's training (bench/results/seed_variance.csv: "
           f"{facts.get('header', '')}):"]
    if "margin_min" in summary:
        ssl = summary.dropna(subset=["margin_min"])
        worst = ssl.loc[ssl["margin_min"].idxmin()]
        if ssl["target_met"].all():
            out.append(f"every self-supervised encoder's block-4 probe is at least 10 points "
                       f"above the random-init control in every seed (smallest margin "
                       f"{worst['margin_min'] * 100:+.1f}: "
                       f"{display.get(worst['method'], worst['method'])} on "
                       f"{datasets.get(worst['dataset'], worst['dataset'])});")
        else:
            miss = ssl[~ssl["target_met"].astype(bool)].drop_duplicates(["dataset", "method"])
            out.append("below the +10-point learning target in at least one seed: " + ", ".join(
                f"{display.get(m, m)} on {datasets.get(d, d)} (smallest margin "
                f"{lo * 100:+.1f})" for d, m, lo in zip(miss["dataset"], miss["method"],
                                                         miss["margin_min"])) + ";")
    held = consistent_findings(summary)
    for (d, f), g in held.groupby(["dataset", "fraction"], sort=True):
        base = display.get(g["baseline"].iloc[0], g["baseline"].iloc[0])
        up = [f"{display.get(m, m)} ({_range(lo, hi)})" for m, lo, hi, a in zip(
            g["method"], g["difference_min"], g["difference_max"], g["above_in_every_seed"])
            if a]
        down = [f"{display.get(m, m)} ({_range(lo, hi)})" for m, lo, hi, a in zip(
            g["method"], g["difference_min"], g["difference_max"], g["above_in_every_seed"])
            if not a]
        parts = []
        if up:
            parts.append(f"above {base}: {', '.join(up)}")
        if down:
            parts.append(f"below {base}: {', '.join(down)}")
        out.append(f"holds in all {k} seeds on {datasets.get(d, d)} at {f:g} % labels, each "
                   f"seed's interval excluding 0: {'; '.join(parts)};")
    if held.empty:
        out.append("no paired difference excludes zero on the same side in every seed;")
    for f, g in (wins.groupby("fraction", sort=True) if wins is not None else ()):
        n, lo, hi = int(g["datasets"].max()), int(g["ssl_wins"].min()), int(g["ssl_wins"].max())
        on = (f"all {n} datasets" if lo == n else
              f"{lo} of the {n} datasets" if lo == hi else f"{lo} to {hi} of the {n} datasets")
        out.append(f"at {f:g} % labels the best self-supervised method's fine-tuning is above "
                   f"Supervised's on {on} in every seed (smallest gap "
                   f"{g['smallest_gap'].min() * 100:+.1f} points);")
    out[-1] = out[-1].rstrip(";") + "."
    return [" ".join(out)]


def one_class_runs(finetune: pd.DataFrame | None) -> set:
    """(dataset, fraction, method) of the fine-tuning table's cells whose model predicted one
    class in some seed (``finetune.csv``'s ``one_class``)."""
    if finetune is None or "one_class" not in finetune:
        return set()
    hit = finetune[finetune["one_class"].fillna(0) > 0]
    return {(d, float(f), m) for d, f, m in zip(hit["dataset"], hit["fraction"], hit["method"])}


def paired_sentences(paired: pd.DataFrame, display: dict, datasets: dict,
                     level: float = 0.95, seeds: pd.DataFrame | None = None,
                     flat: set | None = None) -> list[str]:
    """Per dataset and fraction: the differences whose interval excludes zero, the rest
    named as within noise. With one seed each such difference is *one draw* of the
    training, and says so, with the range the seed benchmark (``seeds``, a
    ``seed_summary``) measured for it where it measured one. A model that predicted one
    class (``flat``, from :func:`one_class_runs`) is named as such and compared with
    nothing: its score is a constant prediction's."""
    if paired is None or paired.empty:
        return ["No paired comparison was run (one method)."]
    flat = flat or set()
    several = "n_seeds" in paired and paired["n_seeds"].max() > 1
    out, n_real, n_all = [], 0, 0
    for (d, f), g in paired.groupby(["dataset", "fraction"], sort=True):
        baseline = g["baseline"].iloc[0]
        base = display.get(baseline, baseline)
        text = f"{datasets.get(d, d)}, {f:g} % labels, against {base}: "
        if (d, float(f), baseline) in flat:
            out.append(text + f"{base} predicts one class: no comparison.")
            continue
        real, noise, one = [], [], []
        for _, r in g.iterrows():
            name = display.get(r["method"], r["method"])
            if (d, float(f), r["method"]) in flat:
                one.append(name)
                continue
            n_all += 1
            if not (r["ci_low"] > 0 or r["ci_high"] < 0):
                noise.append(name)
                continue
            n_real += 1
            if several:
                real.append(f"{name} {_cell(r)} (excludes 0 across {int(r['n_seeds'])} "
                            "fine-tuning seeds)")
                continue
            lo, hi = (np.nan, np.nan)
            if seeds is not None and not seeds.empty and "fraction" in seeds:
                at = seeds[seeds["fraction"] == f]
                lo, hi = seed_range(at, d, r["method"]) if len(at) else (np.nan, np.nan)
            span = (f"seed range {_range(lo, hi)}" if np.isfinite(lo)
                    else "no seed range measured at this fraction")
            real.append(f"{name} {_cell(r)} (excludes 0 in this run: one draw; {span})")
        text += "; ".join(real) if real else "no difference"
        text += f"; within noise: {', '.join(noise)}" if noise else ""
        text += f"; predicts one class: {', '.join(one)}." if one else "."
        out.append(text)
    what = (f"across {int(paired['n_seeds'].max())} fine-tuning seeds" if several else
            "over test patients, one training run")
    out.insert(0, f"{n_real} of {n_all} paired differences to the baseline have a "
                  f"{100 * level:g} % interval ({what}) that excludes zero; the others are "
                  "within noise.")
    return out


def demo_markdown(*, figure: str, finetune_md: str, rows: pd.DataFrame,
                  paired: pd.DataFrame, display: dict, datasets: dict,
                  level: float = 0.95, seeds: pd.DataFrame | None = None,
                  seed_facts: dict | None = None, seeds_current: bool = False,
                  finetune: pd.DataFrame | None = None,
                  seed_wins: pd.DataFrame | None = None) -> str:
    parts = [f"![fine-tuning, first dataset]({figure})", "",
             "**Did self-supervised learning happen?**", "",
             learning_table(rows, display, datasets), "",
             *[f"* {s}" for s in learning_sentences(rows, display)], "",
             finetune_md.strip(), "", "**Which method wins?**", "",
             *[f"* {s}" for s in seed_sentences(seeds, seed_facts, display, datasets,
                                                seeds_current, seed_wins)],
             *[f"* {s}" for s in paired_sentences(
                 paired, display, datasets, level, seeds if seeds_current else None,
                 one_class_runs(finetune))], ""]
    return "\n".join(parts)
