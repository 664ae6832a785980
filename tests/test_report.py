"""Tables and figures rendered from small synthetic result files: values, bolding, CI
formatting, seed aggregation, consistent method colours."""

import json

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ilmoco import figures, tables
from ilmoco.io import write_csv

METHODS = ["supervised", "moco", "moco_mse", "moco_bt"]


def write_finetune(tmp_path, values: dict, seeds=(0,)):
    """values: (dataset, method, fraction) -> estimate (seed s adds s/100)."""
    files = []
    for (ds, m, f), v in values.items():
        for s in seeds:
            est = v + s / 100
            p = tmp_path / f"{ds}_{m}_{f}_{s}.json"
            p.write_text(json.dumps({"dataset": ds, "method": m, "fraction": f, "seed": s,
                                     "metric": "macro_auc", "estimate": est,
                                     "ci_low": est - 0.02, "ci_high": est + 0.03}))
            files.append(p)
    return files


def test_finetune_table_values_bold_and_ci(tmp_path):
    vals = {("nih", m, f): 0.6 + 0.01 * i + (0.1 if f == 100 else 0)
            for i, m in enumerate(METHODS) for f in (1, 100)}
    vals[("nih", "moco_mse", 1)] = 0.70  # the best at 1 %
    out = tmp_path / "tables"
    res = tables.build_all(finetune_metrics=write_finetune(tmp_path, vals), probes=[],
                           ckas=[], kss=[], out_dir=out)
    tidy = pd.read_csv(out / "finetune.csv")
    assert len(tidy) == 8 and set(tidy.columns) >= {"dataset", "method", "fraction",
                                                    "estimate", "ci_low", "ci_high", "n_seeds"}
    row = tidy[(tidy.method == "moco_mse") & (tidy.fraction == 1)].iloc[0]
    assert row.estimate == pytest.approx(0.70) and row.ci_low == pytest.approx(0.68)
    assert row.ci_high == pytest.approx(0.73) and row.n_seeds == 1
    md = (out / "finetune.md").read_text().splitlines()
    head = next(ln for ln in md if ln.startswith("| dataset"))
    assert head.split("|")[4:8] == [" Supervised ", " MoCo ", " MoCo+MSE ", " MoCo+BT "]
    one = next(ln for ln in md if "| 1 % |" in ln)
    assert "**70.0 [68.0, 73.0]**" in one and one.count("**") == 2
    assert "60.0 [58.0, 63.0]" in one
    hundred = next(ln for ln in md if "| 100 % |" in ln)
    assert "**73.0 [71.0, 76.0]**" in hundred  # moco_bt is best at 100 %
    tex = (out / "finetune.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\textbf{70.0} {\scriptsize[68.0, 73.0]}" in tex
    assert res["finetune"].equals(tables.finetune_table(write_finetune(tmp_path, vals)))


def test_several_seeds_give_mean_and_t_interval(tmp_path):
    vals = {("dr", "moco", 6): 0.80}
    files = write_finetune(tmp_path, vals, seeds=(0, 1, 2))
    t = tables.finetune_table(files)
    x = np.array([0.80, 0.81, 0.82])
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert t.iloc[0]["estimate"] == pytest.approx(0.81)
    assert t.iloc[0]["ci_low"] == pytest.approx(0.81 - half)
    assert t.iloc[0]["n_seeds"] == 3


def test_probe_cka_and_ks_tables(tmp_path):
    probe_files = []
    for m in ("moco", "moco_mse", "supervised"):
        rows = [{"dataset": "idc", "method": m, "block": f"block{b}", "metric": "f1_macro",
                 "estimate": 0.5 + 0.05 * b + (0.1 if m == "moco_mse" else 0),
                 "ci_low": 0.4, "ci_high": 0.9} for b in range(1, 5)]
        p = tmp_path / f"probe_{m}.csv"
        write_csv(p, pd.DataFrame(rows))
        probe_files.append(p)
    linear, layer = tables.probe_tables(probe_files)
    assert set(linear["method"]) == {"moco", "moco_mse", "supervised"}
    assert linear.set_index("method").loc["moco_mse", "estimate"] == pytest.approx(0.8)
    assert len(layer) == 12
    cka = tmp_path / "cka.csv"
    write_csv(cka, pd.DataFrame([{"dataset": "idc", "method": m, "fraction": 1.0, "seed": 0,
                                  "block": f"block{b}", "cka": 1 - 0.1 * b - d,
                                  "ci_low": 0.1, "ci_high": 0.99}
                                 for m, d in (("moco", 0.05), ("moco_mse", 0.0))
                                 for b in range(1, 5)]))
    ft = tables.finetune_table(write_finetune(tmp_path, {("idc", "moco", 1): 0.7,
                                                         ("idc", "moco_mse", 1): 0.75}))
    reuse = tables.feature_reuse_table([cka], ft)
    r = reuse[(reuse.method == "moco_mse") & (reuse.block == "block1")].iloc[0]
    assert r.estimate == pytest.approx(0.9) and r.finetuned_metric == pytest.approx(0.75)
    ks = tmp_path / "ks.csv"
    write_csv(ks, pd.DataFrame([{"dataset": "idc", "method": m, "fraction": 1.0, "seed": 0,
                                 "reference": "moco_bt", "reference_rule": "configured",
                                 "ks": k, "pvalue": 0.01} for m, k in (("moco", 0.3),
                                                                       ("moco_mse", 0.2))]))
    out = tmp_path / "t"
    tables.render("ks_distance", tables.ks_table([ks]), out)
    line = next(ln for ln in (out / "ks_distance.md").read_text().splitlines()
                if ln.startswith("| idc"))
    assert "| moco_bt |" in line and "**0.200**" in line and "0.300" in line  # lower is better


def capture(monkeypatch):
    figs = []
    monkeypatch.setattr(figures, "save", lambda fig, *a, **k: figs.append(fig))
    return figs


def test_finetune_figure_bars_whiskers_and_colours(monkeypatch):
    figs = capture(monkeypatch)
    ft = pd.DataFrame([{"dataset": "nih", "method": m, "fraction": f, "metric": "macro_auc",
                        "estimate": 0.6 + 0.01 * i + f / 1000, "ci_low": 0.55, "ci_high": 0.8,
                        "n_seeds": 1} for i, m in enumerate(METHODS) for f in (1, 6, 100)])
    figures.finetune_bars(ft, "nih", "x.png")
    ax = figs[0].axes[0]
    bars = [p for p in ax.patches]
    assert len(bars) == 12
    heights = sorted(round(b.get_height(), 3) for b in bars)
    assert heights == sorted(round(100 * v, 3) for v in ft["estimate"])
    for b in bars[:3]:  # the first method's bars carry its colour everywhere
        assert mcolors.to_hex(b.get_facecolor()) == figures.METHOD_COLORS["supervised"].lower()
    assert "AUC (%)" in ax.get_ylabel() and "labelled" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1 %", "6 %", "100 %"]


def test_other_figures_render_to_png_and_pdf(tmp_path):
    layer = pd.DataFrame([{"dataset": "d", "method": m, "block": f"block{b}",
                           "metric": "macro_auc", "estimate": 0.5 + b / 20, "ci_low": 0.4,
                           "ci_high": 0.9} for m in ("moco", "supervised") for b in range(1, 5)])
    cka = pd.DataFrame([{"dataset": "d", "method": "moco", "fraction": f, "block": f"block{b}",
                         "estimate": 1 - b / 10, "ci_low": 0.5, "ci_high": 1.0}
                        for f in (1.0, 100.0) for b in range(1, 5)])
    ks = pd.DataFrame([{"dataset": "d", "method": "moco", "fraction": 1.0, "reference": "moco",
                        "ks": 0.3}])
    curves = {("moco", 100.0): np.linspace(0, 1, 50), ("moco", 1.0): np.linspace(0, 1, 50) ** 2}
    loss = {"moco_mse": pd.DataFrame({"step": [1, 2, 3], "infonce": [5.0, 4.0, 3.5],
                                      **{f"mse_block{i}": [0.1, 0.08, 0.05] for i in range(1, 5)}})}
    for name, call in {
        "layer": lambda p, q: figures.layer_probe_curves(layer, "d", p, q),
        "cka": lambda p, q: figures.cka_lines(cka, "d", p, q),
        "ks": lambda p, q: figures.ks_cdfs(curves, ks, "d", p, q),
        "loss": lambda p, q: figures.pretrain_curves(loss, "d", p, q),
    }.items():
        png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
        call(png, pdf)
        assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
