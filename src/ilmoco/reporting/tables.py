"""The result tables: tidy CSV plus Markdown and LaTeX (booktabs).

Tidy CSV: one row per dataset × method × fraction (× block) with estimate, ci_low, ci_high
and n_seeds. With one seed the interval is the run's bootstrap interval; with several, the
mean and a t-interval across seeds. Wide Markdown/LaTeX: methods as columns (display names
from the configuration), cells ``82.4 [80.1, 84.0]``. A value is marked best (bold) only
where "best" means something (never for CKA or differences), it is the unique best of its
row, and its interval does not overlap any other method's interval in that row.
Differences to a baseline are bold where their paired interval excludes zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ilmoco.evaluation.bootstrap import mean_ci_across_seeds
from ilmoco.io import read_json, write_csv, write_text
from ilmoco.reporting.specs import TABLES, TableSpec, interval_covers

TIDY = ["estimate", "ci_low", "ci_high", "n_seeds"]


def aggregate_seeds(df: pd.DataFrame, keys: list[str], value="estimate",
                    carry: tuple[str, ...] = (), level: float = 0.95) -> pd.DataFrame:
    """Collapse seeds: one seed keeps its own interval, several give a mean and t-interval
    at ``level``; ``carry`` columns are averaged over seeds."""
    rows = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        if len(g) == 1:
            r = g.iloc[0]
            agg = {"estimate": r[value], "ci_low": r.get("ci_low", np.nan),
                   "ci_high": r.get("ci_high", np.nan), "n_seeds": 1}
        else:
            agg = mean_ci_across_seeds(g[value].to_numpy(), level)
        agg.update({c: float(np.nanmean(g[c].to_numpy(float))) if g[c].notna().any()
                    else np.nan for c in carry if c in g})
        rows.append({**dict(zip(keys, key)), **agg})
    return pd.DataFrame(rows, columns=keys + TIDY + [c for c in carry if c in df])


def finetune_table(metrics_files, level: float = 0.95) -> pd.DataFrame:
    """Fine-tuned test metric per dataset × metric × fraction × method; ``estimate_last``
    is the last epoch's value where it was evaluated, ``paper_ci_*`` the paper-style
    interval where it was computed."""
    recs = []
    for f in metrics_files:
        r = read_json(f)
        last = r.get("last_epoch") or {}
        recs.append({**{k: r[k] for k in ("dataset", "method", "fraction", "seed", "metric",
                                           "estimate", "ci_low", "ci_high")},
                     "estimate_last": last.get("estimate", np.nan),
                     "one_class": float(r.get("one_class", False)),
                     "paper_ci_low": r.get("paper_ci_low", np.nan),
                     "paper_ci_high": r.get("paper_ci_high", np.nan)})
    df = pd.DataFrame(recs)
    # one_class: the share of the seeds whose model gave every test image one class
    return aggregate_seeds(df, ["dataset", "metric", "fraction", "method"],
                           carry=("estimate_last", "one_class", "paper_ci_low",
                                  "paper_ci_high"), level=level)


def probe_tables(probe_files, finetune: pd.DataFrame | None = None,
                 supervised_from_finetune: bool = False, level: float = 0.95,
                 linear_files=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(linear probe, layer-wise probe) tables. The linear probe is the block-4 row of the
    layer probes, or the ``--only-ll`` probes (``linear_files``) where the run has them.
    With ``supervised_from_finetune`` the linear probe's supervised row is the supervised
    model fine-tuned on 100 % itself (the paper's Table 1), not a probe of it."""
    df = pd.concat([pd.read_csv(f) for f in probe_files], ignore_index=True)
    layer = aggregate_seeds(df, ["dataset", "metric", "block", "method"], level=level)
    linear = layer[layer["block"] == "block4"].drop(columns="block").reset_index(drop=True)
    if len(linear_files):
        only_ll = pd.concat([pd.read_csv(f) for f in linear_files], ignore_index=True)
        linear = aggregate_seeds(only_ll, ["dataset", "metric", "method"], level=level)
    if supervised_from_finetune and finetune is not None and len(finetune):
        sup = finetune[(finetune["method"] == "supervised") & (finetune["fraction"] == 100)]
        linear = pd.concat([linear[linear["method"] != "supervised"],
                            sup[linear.columns]], ignore_index=True)
    return linear, layer


def feature_reuse_table(cka_files, finetune: pd.DataFrame, level: float = 0.95
                        ) -> pd.DataFrame:
    df = pd.concat([pd.read_csv(f) for f in cka_files], ignore_index=True)
    df = df.rename(columns={"cka": "estimate"})
    out = aggregate_seeds(df, ["dataset", "fraction", "block", "method"], level=level)
    ft = finetune.set_index(["dataset", "fraction", "method"])
    idx = list(zip(out["dataset"], out["fraction"], out["method"]))
    out["finetuned_metric"] = [ft["estimate"].get(i, np.nan) for i in idx]
    out["metric"] = [ft["metric"].get(i, "") for i in idx]
    return out


def ks_table(ks_files, level: float = 0.95) -> pd.DataFrame:
    df = pd.concat([pd.read_csv(f) for f in ks_files], ignore_index=True)
    df = df.rename(columns={"ks": "estimate"})
    df["ci_low"] = df["ci_high"] = np.nan
    return aggregate_seeds(df, ["dataset", "reference", "fraction", "method"], level=level)


def paired_table(paired_files, level: float = 0.95) -> pd.DataFrame:
    frames = [pd.read_csv(f) for f in paired_files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["dataset", "metric", "fraction", "baseline", "method",
                                     *TIDY])
    df = pd.concat(frames, ignore_index=True)
    return aggregate_seeds(df, ["dataset", "metric", "fraction", "baseline", "method"],
                           carry=("p_better",), level=level)


def ordered(df: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Rows sorted by dataset, fraction, block, then the run's method order."""
    rank = {m: i for i, m in enumerate(order)}
    keys = [c for c in ("dataset", "fraction", "block") if c in df.columns]
    df = df.assign(_m=df["method"].map(lambda m: rank.get(m, len(rank))))
    return df.sort_values(keys + ["_m"], kind="stable").drop(columns="_m").reset_index(
        drop=True)


# ------------------------------------------------------------------ rendering

def fmt_cell(est, lo, hi, scale: float, digits: int, signed: bool = False) -> str:
    if not np.isfinite(est):
        return "–"
    sign = "+" if signed else ""
    s = f"{est * scale:{sign}.{digits}f}"
    if np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
    return s


def flat_share(r) -> float:
    """The share of a row's seeds whose model predicted one class (0 where not recorded)."""
    v = r.get("one_class", 0.0)
    return float(v) if pd.notna(v) else 0.0


def one_class_cell(r) -> str:
    """A constant prediction is no result: the cell says so instead of giving its score."""
    n = int(r.get("n_seeds", 1) or 1)
    if n <= 1:
        return "predicts one class"
    return f"predicts one class in {round(flat_share(r) * n)} of {n} seeds"


def best_marks(group: pd.DataFrame, better: str | None) -> set:
    """Methods of one table row to mark: the unique best whose interval overlaps no other's
    (a constant prediction is never best)."""
    if better is None or len(group) < 2:
        return set()
    if "one_class" in group:
        group = group[group["one_class"].fillna(0) == 0]
        if len(group) < 2:
            return set()
    est = group.set_index("method")["estimate"].dropna()
    if est.empty:
        return set()
    best = est.max() if better == "max" else est.min()
    winners = est.index[est == best]
    if len(winners) != 1:
        return set()
    g = group.set_index("method")
    w = winners[0]
    lo, hi = g.loc[w, "ci_low"], g.loc[w, "ci_high"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return set()
    others = g.drop(index=w)
    if not (np.isfinite(others["ci_low"]).all() and np.isfinite(others["ci_high"]).all()):
        return set()
    clear = (lo > others["ci_high"]).all() if better == "max" else (hi < others["ci_low"]).all()
    return {w} if clear else set()


def wide(df: pd.DataFrame, spec: TableSpec, order: list[str], display: dict[str, str]
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, marks) tables: rows × methods in the run's order, marks per :func:`best_marks`
    (for differences: interval excludes 0)."""
    rows = list(spec.rows)
    methods = [m for m in order if m in set(df["method"])]
    methods += sorted(set(df["method"]) - set(methods))
    signed = spec.name == "paired_difference"
    index = pd.MultiIndex.from_frame(df[rows].drop_duplicates()) if len(rows) > 1 else \
        pd.Index(df[rows[0]].drop_duplicates(), name=rows[0])
    cells = pd.DataFrame("–", index=index, columns=methods, dtype=object)
    marks = pd.DataFrame(False, index=index, columns=methods)
    for key, g in df.groupby(rows, sort=False):
        key = key if len(rows) > 1 else key[0]
        for _, r in g.iterrows():
            cells.loc[key, r["method"]] = (
                one_class_cell(r) if flat_share(r) > 0 else
                fmt_cell(r["estimate"], r["ci_low"], r["ci_high"], spec.scale, spec.digits,
                         signed))
            if signed:
                marks.loc[key, r["method"]] = bool(r["ci_low"] > 0 or r["ci_high"] < 0)
        for m in best_marks(g, spec.better):
            marks.loc[key, m] = True
    cells.columns = marks.columns = [display.get(m, m) for m in methods]
    return cells, marks


def _label(name: str, v) -> str:
    """Row-label text: fractions as percentages, everything else as is."""
    if name == "fraction":
        return f"{float(v):g} %"
    return str(v)


def markdown_table(cells: pd.DataFrame, marks: pd.DataFrame) -> str:
    names = list(cells.index.names)
    head = "| " + " | ".join(names + list(cells.columns)) + " |"
    sep = "|" + "|".join(["---"] * len(names) + ["---:"] * len(cells.columns)) + "|"
    lines = [head, sep]
    for key, row in cells.iterrows():
        labels = key if isinstance(key, tuple) else (key,)
        vals = [f"**{v}**" if marks.loc[key, c] else v for c, v in row.items()]
        lines.append("| " + " | ".join([_label(n, k) for n, k in zip(names, labels)] + vals)
                     + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def latex_table(cells: pd.DataFrame, marks: pd.DataFrame, caption: str, label: str) -> str:
    names = list(cells.index.names)
    spec = "l" * len(names) + "r" * len(cells.columns)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption)}}}",
           rf"\label{{tab:{label}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(_tex_escape(c) for c in names + list(cells.columns)) + r" \\",
           r"\midrule"]
    for key, row in cells.iterrows():
        labels = key if isinstance(key, tuple) else (key,)
        vals = []
        for c, v in row.items():
            main, _, ci = v.partition(" [")
            tex = rf"\textbf{{{main}}}" if marks.loc[key, c] else main
            if ci:
                tex += rf" {{\scriptsize[{ci.rstrip(']')}]}}"
            vals.append(tex)
        out.append(" & ".join([_tex_escape(_label(n, k)) for n, k in zip(names, labels)]
                              + vals) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def caption(spec: TableSpec, level: float, n_seeds: int = 1) -> str:
    return spec.caption.format(level=f"{100 * level:g}",
                               interval=interval_covers(level, n_seeds))


def seeds_of(tidy: pd.DataFrame) -> int:
    """The seeds behind a tidy table's intervals (1 when it has no seed column)."""
    return int(tidy["n_seeds"].max()) if "n_seeds" in tidy and len(tidy) else 1


def render(name: str, tidy: pd.DataFrame, out_dir, order: list[str],
           display: dict[str, str], level: float = 0.95, note: str = "") -> None:
    """Write ``<name>.csv``, ``<name>.md`` and ``<name>.tex`` under ``out_dir``."""
    spec = TABLES[name]
    out_dir = Path(out_dir)
    tidy = ordered(tidy, order) if len(tidy) and "method" in tidy else tidy
    write_csv(out_dir / f"{name}.csv", tidy, float_format="%.6g")
    if tidy.empty:
        text = note or "no results"
        write_text(out_dir / f"{name}.md", f"_{text}_\n")
        write_text(out_dir / f"{name}.tex", f"% {text}\n")
        return
    cap = caption(spec, level, seeds_of(tidy))
    if name == "paper_comparison":
        md, tex = paper_markdown(tidy, display), f"% {cap}: see {name}.csv\n"
        write_text(out_dir / f"{name}.md", f"**{cap}**\n\n{md}" + (f"\n{note}\n" if note else ""))
        write_text(out_dir / f"{name}.tex", tex)
        return
    cells, marks = wide(tidy, spec, order, display)
    md = f"**{cap}**\n\n" + markdown_table(cells, marks)
    if name == "feature_reuse":
        ft = tidy.drop_duplicates(["dataset", "fraction", "method"])
        ft = ft.assign(estimate=ft["finetuned_metric"], ci_low=np.nan, ci_high=np.nan)
        ftc, ftm = wide(ft, TABLES["finetune"], order, display)
        md += "\nFine-tuned metric of the same runs (x100):\n\n" + markdown_table(ftc, ftm)
    write_text(out_dir / f"{name}.md", md + (f"\n{note}\n" if note else ""))
    write_text(out_dir / f"{name}.tex", latex_table(cells, marks, cap, name))


def paper_markdown(df: pd.DataFrame, display: dict[str, str]) -> str:
    """Long-form comparison: one line per result."""
    lines = ["| dataset | table | method | fraction | block | ours | paper | difference | "
             "paper inside our interval |", "|---|---|---|---|---|---:|---:|---:|:---:|"]
    for _, r in df.iterrows():
        scale, digits = (1, 3) if r["table"] in ("feature_reuse", "ks_distance") else (100, 1)
        frac = f"{r['fraction']:g} %" if np.isfinite(r["fraction"]) else ""
        lines.append(
            f"| {r['dataset']} | {r['table']} | {display.get(r['method'], r['method'])} | "
            f"{frac} | {r['block']} | "
            f"{fmt_cell(r['ours'], r['ours_low'], r['ours_high'], scale, digits)} | "
            f"{fmt_cell(r['paper'], r['paper_low'], r['paper_high'], scale, digits)} | "
            f"{r['difference'] * scale:+.{digits}f} | "
            f"{'yes' if r['paper_inside_ours'] else 'no'} |")
    return "\n".join(lines) + "\n"


OFFICIAL_PROBE_NOTE = (
    "Official probe protocol (raw pooled features, the backbone under no_grad in train mode, "
    "training augmentation, Adam, the last epoch). The official code reported the "
    "validation score only (val_score in each probe.csv); the values here are test.")
ONLY_LL_NOTE = (
    "The official Table 1 linear probe (fine_tune_mocov2.py --only-ll: the fine-tuning "
    "with the backbone under no_grad in train mode, its augmentation and epochs, the last "
    "epoch), scored on test as the official code did.")


def build_all(*, finetune_metrics, probes, ckas, kss, paireds, out_dir, order: list[str],
              display: dict[str, str], level: float = 0.95,
              supervised_from_finetune: bool = False,
              paper_datasets: dict[str, str | None] | None = None, linear_probes=(),
              probe_protocol: str = "frozen") -> dict[str, pd.DataFrame]:
    """Every table of a run from its per-dataset result files.

    Args:
        finetune_metrics, probes, ckas, kss, paireds: the per-dataset result files.
        out_dir: where ``<table>.csv/.md/.tex`` go.
        order, display: the run's method order and display names.
        level: the interval level, for captions.
        supervised_from_finetune: the linear probe's supervised row is the fine-tuned
            model's own result (the paper's Table 1).
        paper_datasets: each dataset's name in the paper, or None (not comparable).
        linear_probes: the ``--only-ll`` linear probes (``linear.csv``), if any: the linear
            probe table is theirs.
        probe_protocol: the layer probes' protocol (``official``: the tables say that the
            official code reported validation only).
    """
    from ilmoco.reporting.paper import comparison

    ft = finetune_table(finetune_metrics, level)
    linear, layer = probe_tables(probes, ft, supervised_from_finetune, level,
                                 linear_probes) if probes else (pd.DataFrame(), pd.DataFrame())
    tables = {
        "finetune": ft, "linear_probe": linear, "layer_probe": layer,
        "feature_reuse": feature_reuse_table(ckas, ft, level) if ckas else pd.DataFrame(),
        "ks_distance": ks_table(kss, level) if kss else pd.DataFrame(),
        "paired_difference": paired_table(paireds, level) if paireds else pd.DataFrame(),
    }
    paper_datasets = paper_datasets or {}
    tables["paper_comparison"] = comparison(
        {k: tables[k] for k in ("finetune", "linear_probe", "layer_probe", "feature_reuse",
                                "ks_distance")}, paper_datasets)
    for name, df in tables.items():
        note = ""
        if name == "paper_comparison" and not any(paper_datasets.values()):
            note = ("nothing to compare: no dataset of this run is one of the paper's real "
                    "datasets (the embedded datasets are synthetic)")
        if name == "layer_probe" and probe_protocol == "official":
            note = OFFICIAL_PROBE_NOTE
        if name == "linear_probe" and len(linear_probes):
            note = ONLY_LL_NOTE
        render(name, df, out_dir, order, display, level, note)
    return tables
