"""The paper's five result tables, as tidy CSV plus Markdown and LaTeX (booktabs).

Tidy CSV: one row per dataset × method × fraction (× block) with estimate, ci_low, ci_high
and n_seeds. With one seed the interval is the run's bootstrap CI; with several, the mean
and a t-interval across seeds. Wide Markdown/LaTeX: methods as columns, the best value of
each row in bold (highest, or lowest for KS), cells ``82.4 [80.1, 84.0]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ilmoco.config import METHOD_NAMES
from ilmoco.io import read_json, write_csv, write_text
from ilmoco.stats import mean_ci_across_seeds

TIDY = ["estimate", "ci_low", "ci_high", "n_seeds"]
METHOD_ORDER = list(METHOD_NAMES)


def aggregate_seeds(df: pd.DataFrame, keys: list[str], value="estimate") -> pd.DataFrame:
    """Collapse seeds: one seed keeps its own CI, several give a mean and t-interval."""
    rows = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        if len(g) == 1:
            r = g.iloc[0]
            agg = {"estimate": r[value], "ci_low": r.get("ci_low", np.nan),
                   "ci_high": r.get("ci_high", np.nan), "n_seeds": 1}
        else:
            agg = mean_ci_across_seeds(g[value].to_numpy())
        rows.append({**dict(zip(keys, key)), **agg})
    return pd.DataFrame(rows, columns=keys + TIDY)


def finetune_table(metrics_files) -> pd.DataFrame:
    recs = [read_json(f) for f in metrics_files]
    df = pd.DataFrame([{k: r[k] for k in ("dataset", "method", "fraction", "seed", "metric",
                                          "estimate", "ci_low", "ci_high")} for r in recs])
    return _order(aggregate_seeds(df, ["dataset", "metric", "fraction", "method"]))


def probe_tables(probe_files) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.concat([pd.read_csv(f) for f in probe_files], ignore_index=True)
    layer = _order(aggregate_seeds(df, ["dataset", "metric", "block", "method"]))
    linear = layer[layer["block"] == "block4"].drop(columns="block").reset_index(drop=True)
    return linear, layer


def feature_reuse_table(cka_files, finetune: pd.DataFrame) -> pd.DataFrame:
    df = pd.concat([pd.read_csv(f) for f in cka_files], ignore_index=True)
    df = df.rename(columns={"cka": "estimate"})
    out = aggregate_seeds(df, ["dataset", "fraction", "block", "method"])
    ft = finetune.set_index(["dataset", "fraction", "method"])
    idx = list(zip(out["dataset"], out["fraction"], out["method"]))
    out["finetuned_metric"] = [ft["estimate"].get(i, np.nan) for i in idx]
    out["metric"] = [ft["metric"].get(i, "") for i in idx]
    return _order(out)


def ks_table(ks_files) -> pd.DataFrame:
    df = pd.concat([pd.read_csv(f) for f in ks_files], ignore_index=True)
    df = df.rename(columns={"ks": "estimate"})
    df["ci_low"] = df["ci_high"] = np.nan
    out = aggregate_seeds(df, ["dataset", "reference", "fraction", "method"])
    return _order(out)


def _order(df: pd.DataFrame) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    keys = [c for c in ("dataset", "fraction", "block") if c in df.columns]
    df = df.assign(_m=df["method"].map(rank))
    return df.sort_values(keys + ["_m"], kind="stable").drop(columns="_m").reset_index(
        drop=True)


# ------------------------------------------------------------------ rendering

def fmt_cell(est, lo, hi, scale: float, digits: int) -> str:
    if not np.isfinite(est):
        return "–"
    s = f"{est * scale:.{digits}f}"
    if np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
    return s


def wide(df: pd.DataFrame, rows: list[str], scale: float, digits: int,
         better: str = "max") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, bold) tables: rows × methods, bold marking the best estimate of each row."""
    methods = [m for m in METHOD_ORDER if m in set(df["method"])]
    est = df.pivot_table(index=rows, columns="method", values="estimate", sort=False)
    est = est.reindex(columns=methods)
    cells = pd.DataFrame(index=est.index, columns=methods, dtype=object)
    for _, r in df.iterrows():
        key = tuple(r[c] for c in rows) if len(rows) > 1 else r[rows[0]]
        cells.loc[key, r["method"]] = fmt_cell(r["estimate"], r["ci_low"], r["ci_high"],
                                               scale, digits)
    pick = est.max(axis=1) if better == "max" else est.min(axis=1)
    bold = est.eq(pick, axis=0) & est.notna()
    cells = cells.fillna("–")
    cells.columns = [METHOD_NAMES[m] for m in methods]
    bold.columns = cells.columns
    return cells, bold


def to_markdown(cells: pd.DataFrame, bold: pd.DataFrame) -> str:
    names = list(cells.index.names)
    head = "| " + " | ".join(names + list(cells.columns)) + " |"
    sep = "|" + "|".join(["---"] * len(names) + ["---:"] * len(cells.columns)) + "|"
    lines = [head, sep]
    for key, row in cells.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        vals = [f"**{v}**" if bold.loc[key if len(key) > 1 else key[0], c] else v
                for c, v in row.items()]
        lines.append("| " + " | ".join([_label(n, k) for n, k in zip(names, key)] + vals) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def to_latex(cells: pd.DataFrame, bold: pd.DataFrame, caption: str, label: str) -> str:
    names = list(cells.index.names)
    spec = "l" * len(names) + "r" * len(cells.columns)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption)}}}",
           rf"\label{{tab:{label}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(_tex_escape(c) for c in names + list(cells.columns)) + r" \\",
           r"\midrule"]
    for key, row in cells.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        vals = []
        for c, v in row.items():
            main, _, ci = v.partition(" [")
            tex = rf"\textbf{{{main}}}" if bold.loc[key if len(key) > 1 else key[0], c] \
                else main
            if ci:
                tex += rf" {{\scriptsize[{ci.rstrip(']')}]}}"
            vals.append(tex)
        out.append(" & ".join([_tex_escape(_label(n, k)) for n, k in zip(names, key)] + vals)
                   + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _label(name: str, v) -> str:
    """Row-label text: fractions as percentages, everything else as is."""
    if name == "fraction":
        return f"{float(v):g} %"
    return str(v)


SPECS: dict[str, dict] = {
    "finetune": dict(rows=["dataset", "metric", "fraction"], scale=100, digits=1,
                     caption="Fine-tuned test metric (x100) with 95 % CI, by label fraction"),
    "linear_probe": dict(rows=["dataset", "metric"], scale=100, digits=1,
                         caption="Linear probe on frozen block-4 features (x100), 95 % CI"),
    "layer_probe": dict(rows=["dataset", "metric", "block"], scale=100, digits=1,
                        caption="Layer-wise linear probes on frozen block 1-4 features (x100)"),
    "feature_reuse": dict(rows=["dataset", "fraction", "block"], scale=1, digits=3,
                          caption="Feature reuse: CKA between the pretrained and the "
                                  "fine-tuned encoder per block, 95 % bootstrap interval"),
    "ks_distance": dict(rows=["dataset", "reference", "fraction"], scale=1, digits=3,
                        better="min",
                        caption="KS distance of test probabilities to the reference model "
                                "fine-tuned on 100 % labels (lower = closer)"),
}


def render(name: str, tidy: pd.DataFrame, out_dir, extra_md: Callable | None = None) -> None:
    """Write ``<name>.csv``, ``<name>.md`` and ``<name>.tex`` under ``out_dir``."""
    spec = SPECS[name]
    out_dir = Path(out_dir)
    write_csv(out_dir / f"{name}.csv", tidy, float_format="%.6g")
    if tidy.empty:
        write_text(out_dir / f"{name}.md", "_no results_\n")
        write_text(out_dir / f"{name}.tex", "% no results\n")
        return
    cells, bold = wide(tidy, spec["rows"], spec["scale"], spec["digits"],
                       spec.get("better", "max"))
    md = f"**{spec['caption']}**\n\n" + to_markdown(cells, bold)
    if name == "feature_reuse":
        ft = tidy.drop_duplicates(["dataset", "fraction", "method"])
        ftc, ftb = wide(ft.assign(estimate=ft["finetuned_metric"], ci_low=np.nan,
                                  ci_high=np.nan), ["dataset", "metric", "fraction"], 100, 1)
        md += "\nFine-tuned metric of the same runs (x100):\n\n" + to_markdown(ftc, ftb)
    write_text(out_dir / f"{name}.md", md)
    write_text(out_dir / f"{name}.tex", to_latex(cells, bold, spec["caption"], name))


def build_all(*, finetune_metrics, probes, ckas, kss, out_dir) -> dict[str, pd.DataFrame]:
    ft = finetune_table(finetune_metrics)
    linear, layer = probe_tables(probes) if probes else (pd.DataFrame(), pd.DataFrame())
    tables = {
        "finetune": ft, "linear_probe": linear, "layer_probe": layer,
        "feature_reuse": feature_reuse_table(ckas, ft) if ckas else pd.DataFrame(),
        "ks_distance": ks_table(kss) if kss else pd.DataFrame(),
    }
    for name, df in tables.items():
        render(name, df, out_dir)
    return tables
