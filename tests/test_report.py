"""Tables and figures rendered from small synthetic result files: values, the rules for
marking a best value, interval formatting, seed aggregation, and the figure rules (values
with intervals never clipped, a chance line, display names, readable fonts, fixed colours).

Tolerances: ``pytest.approx``'s default (rel 1e-6) compares float64 values of a few
operations on two- and three-decimal inputs (0.70 - 0.02, the mean and t interval of three
seeds, ln(K + 1) by ``math.log`` against ``np.log``), some read back from tables written with
``%.6g``, which gives such decimals back exactly: only float64 roundoff (~1e-16) is left."""

import json
import types

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
import tolerances as tol
from scipy import stats

from ilmoco.config.bases import BASES
from ilmoco.io import write_csv
from ilmoco.reporting import figures, tables
from ilmoco.reporting.specs import TABLES

METHODS = ["supervised", "moco", "moco_mse", "moco_bt"]
ORDER = METHODS + ["random_init"]
DISPLAY = {"supervised": "Supervised", "moco": "MoCo", "moco_mse": "MoCo+MSE",
           "moco_bt": "MoCo+BT", "random_init": "Random init"}


def write_finetune(tmp_path, values: dict, seeds=(0,), half_width=(0.02, 0.03)):
    """values: (dataset, method, fraction) -> estimate (seed s adds s/100)."""
    files = []
    for (ds, m, f), v in values.items():
        for s in seeds:
            est = v + s / 100
            p = tmp_path / f"{ds}_{m}_{f}_{s}.json"
            p.write_text(json.dumps({"dataset": ds, "method": m, "fraction": f, "seed": s,
                                     "metric": "macro_auc", "estimate": est,
                                     "ci_low": est - half_width[0],
                                     "ci_high": est + half_width[1],
                                     "last_epoch": {"estimate": est - 0.01}}))
            files.append(p)
    return files


def build(tmp_path, files, **kw):
    out = tmp_path / "tables"
    res = tables.build_all(finetune_metrics=files, probes=[], ckas=[], kss=[], paireds=[],
                           out_dir=out, order=ORDER, display=DISPLAY, **kw)
    return out, res


def test_finetune_table_values_and_interval_cells(tmp_path):
    vals = {("nih", m, f): 0.6 + 0.01 * i + (0.1 if f == 100 else 0)
            for i, m in enumerate(METHODS) for f in (1, 100)}
    vals[("nih", "moco_mse", 1)] = 0.70  # clearly the best at 1 %: intervals do not overlap
    out, res = build(tmp_path, write_finetune(tmp_path, vals))
    tidy = pd.read_csv(out / "finetune.csv")
    assert len(tidy) == 8 and set(tidy.columns) >= {"dataset", "method", "fraction",
                                                    "estimate", "ci_low", "ci_high", "n_seeds",
                                                    "estimate_last"}
    row = tidy[(tidy.method == "moco_mse") & (tidy.fraction == 1)].iloc[0]
    assert row.estimate == pytest.approx(0.70) and row.ci_low == pytest.approx(0.68)
    assert row.ci_high == pytest.approx(0.73) and row.n_seeds == 1
    assert row.estimate_last == pytest.approx(0.69)
    md = (out / "finetune.md").read_text().splitlines()
    assert md[0] == ("**Fine-tuned test metric (x100) with 95 % interval over resampled test "
                     "patients, one training run (seed-to-seed variation not included), by "
                     "label fraction**")
    head = next(ln for ln in md if ln.startswith("| dataset"))
    assert head.split("|")[4:8] == [" Supervised ", " MoCo ", " MoCo+MSE ", " MoCo+BT "]
    one = next(ln for ln in md if "| 1 % |" in ln)
    assert "**70.0 [68.0, 73.0]**" in one and one.count("**") == 2
    assert "60.0 [58.0, 63.0]" in one
    hundred = next(ln for ln in md if "| 100 % |" in ln)
    assert "**" not in hundred  # the best (73.0) overlaps the next (72.0): no mark
    tex = (out / "finetune.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\textbf{70.0} {\scriptsize[68.0, 73.0]}" in tex


def flag(files, flat: dict):
    """Mark the runs of ``flat`` (method -> seeds) as having predicted one class."""
    for f in files:
        r = json.loads(f.read_text())
        r["one_class"] = r["seed"] in flat.get(r["method"], ())
        f.write_text(json.dumps(r))
    return files


def test_a_constant_prediction_is_flagged_never_shown_as_a_result(tmp_path):
    vals = {("d", m, 6): 0.6 + 0.1 * i for i, m in enumerate(METHODS)}
    one = tmp_path / "one"
    one.mkdir()
    # MoCo+BT would be the clear best (90.0 [88.0, 93.0]); flat, the best is MoCo+MSE
    out, _ = build(one, flag(write_finetune(one, vals), {"supervised": (0,), "moco_bt": (0,)}))
    row = next(ln for ln in (out / "finetune.md").read_text().splitlines() if "| 6 % |" in ln)
    cells = [c.strip() for c in row.split("|")[4:8]]
    assert cells == ["predicts one class", "70.0 [68.0, 73.0]", "**80.0 [78.0, 83.0]**",
                     "predicts one class"]
    two = tmp_path / "two"
    two.mkdir()
    files = flag(write_finetune(two, vals, seeds=(0, 1)), {"supervised": (0, 1),
                                                           "moco_bt": (1,)})
    out, _ = build(two, files)
    tidy = pd.read_csv(out / "finetune.csv").set_index("method")
    assert tidy["one_class"].to_dict() == {"supervised": 1.0, "moco": 0.0, "moco_mse": 0.0,
                                           "moco_bt": 0.5}
    row = next(ln for ln in (out / "finetune.md").read_text().splitlines() if "| 6 % |" in ln)
    cells = [c.strip() for c in row.split("|")[4:8]]
    assert cells[0] == "predicts one class in 2 of 2 seeds"
    assert cells[3] == "predicts one class in 1 of 2 seeds"


def test_best_is_marked_only_for_a_unique_non_overlapping_best():
    def row(ests, lows, highs):
        return pd.DataFrame({"method": ["a", "b", "c"], "estimate": ests, "ci_low": lows,
                             "ci_high": highs})

    assert tables.best_marks(row([0.9, 0.7, 0.6], [0.85, 0.6, 0.5], [0.95, 0.8, 0.7]),
                             "max") == {"a"}
    assert tables.best_marks(row([0.9, 0.7, 0.6], [0.75, 0.6, 0.5], [0.95, 0.8, 0.7]),
                             "max") == set()  # overlaps b
    assert tables.best_marks(row([0.9, 0.9, 0.6], [0.85, 0.85, 0.5], [0.95, 0.95, 0.7]),
                             "max") == set()  # tie
    assert tables.best_marks(row([0.1, 0.3, 0.4], [np.nan] * 3, [np.nan] * 3),
                             "min") == set()  # no intervals: cannot tell
    assert tables.best_marks(row([0.1, 0.3, 0.4], [0.05, 0.25, 0.3], [0.15, 0.35, 0.5]),
                             "min") == {"a"}
    assert tables.best_marks(row([0.9, 0.7, 0.6], [0.85, 0.6, 0.5], [0.95, 0.8, 0.7]),
                             None) == set()  # CKA, differences: "best" means nothing


def test_caption_follows_the_configured_level_and_says_what_the_interval_covers(tmp_path):
    out, _ = build(tmp_path, write_finetune(tmp_path, {("d", "moco", 1): 0.7}), level=0.9)
    md = (out / "finetune.md").read_text()
    assert md.startswith("**Fine-tuned test metric (x100) with 90 % interval over resampled "
                         "test patients, one training run (seed-to-seed variation not "
                         "included)")
    assert r"90 \% interval over resampled test patients" in (out / "finetune.tex").read_text()
    three = tmp_path / "three"
    three.mkdir()
    out, _ = build(three, write_finetune(three, {("d", "moco", 1): 0.7}, seeds=(0, 1, 2)))
    assert "95 % t-interval across 3 fine-tuning seeds (fine-tuning variation included, " \
        "one pretraining)" in (out / "finetune.md").read_text()


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_paired_table_and_figure_say_what_the_interval_covers(tmp_path, monkeypatch, n_seeds):
    rows = [{"dataset": "d", "metric": "macro_auc", "fraction": 6.0, "baseline": "moco",
             "method": "moco_mse", "estimate": 0.02, "ci_low": 0.01, "ci_high": 0.03,
             "n_seeds": n_seeds}]
    tables.render("paired_difference", pd.DataFrame(rows), tmp_path, ORDER, DISPLAY)
    md = (tmp_path / "paired_difference.md").read_text().splitlines()[0]
    figs = capture(monkeypatch)
    figures.paired_forest(pd.DataFrame(rows), "d", ORDER, DISPLAY, "x.png")
    title = figs[0].axes[0].get_title()
    expected = ("across 3 fine-tuning seeds (fine-tuning variation included, one "
                "pretraining)" if n_seeds > 1 else
                "over resampled test patients, one training run (seed-to-seed variation "
                "not included)")
    assert expected in md and expected in title.replace("\n", " ")


def test_several_seeds_give_mean_and_t_interval(tmp_path):
    vals = {("dr", "moco", 6): 0.80}
    files = write_finetune(tmp_path, vals, seeds=(0, 1, 2))
    t = tables.finetune_table(files)
    x = np.array([0.80, 0.81, 0.82])
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert t.iloc[0]["estimate"] == pytest.approx(0.81)
    assert t.iloc[0]["ci_low"] == pytest.approx(0.81 - half)
    assert t.iloc[0]["n_seeds"] == 3


def write_probe(tmp_path, method, ests):
    rows = [{"dataset": "idc", "method": method, "block": f"block{b}", "metric": "f1_macro",
             "estimate": e, "ci_low": e - 0.01, "ci_high": e + 0.01}
            for b, e in zip(range(1, 5), ests)]
    p = tmp_path / f"probe_{method}.csv"
    write_csv(p, pd.DataFrame(rows))
    return p


def test_probe_tables_with_random_init_and_the_papers_supervised_column(tmp_path):
    files = [write_probe(tmp_path, "moco", [0.6, 0.65, 0.7, 0.75]),
             write_probe(tmp_path, "moco_mse", [0.6, 0.66, 0.72, 0.85]),
             write_probe(tmp_path, "random_init", [0.5, 0.5, 0.52, 0.55]),
             write_probe(tmp_path, "supervised", [0.6, 0.6, 0.7, 0.9])]
    linear, layer = tables.probe_tables(files)
    assert set(linear["method"]) == {"moco", "moco_mse", "random_init", "supervised"}
    assert linear.set_index("method").loc["moco_mse", "estimate"] == pytest.approx(0.85)
    assert len(layer) == 16
    ft = tables.finetune_table(write_finetune(tmp_path, {("idc", "supervised", 100): 0.83}))
    ft["metric"] = "f1_macro"
    linear2, _ = tables.probe_tables(files, ft, supervised_from_finetune=True)
    sup = linear2.set_index("method").loc["supervised"]
    assert sup["estimate"] == pytest.approx(0.83) and sup["ci_low"] == pytest.approx(0.81)


def test_the_only_ll_probes_are_the_linear_probe_table(tmp_path):
    """With --only-ll probes (probe.linear: only_ll) the linear-probe table is theirs, not
    the block-4 layer probe's; the layer table keeps every block."""
    files = [write_probe(tmp_path, m, ests) for m, ests in
             (("moco", [0.6, 0.65, 0.7, 0.75]), ("moco_mse", [0.6, 0.66, 0.72, 0.85]))]
    only_ll = []
    for m, e in (("moco", 0.71), ("moco_mse", 0.78)):
        only_ll.append(tmp_path / f"linear_{m}.csv")
        write_csv(only_ll[-1], pd.DataFrame([{
            "dataset": "idc", "method": m, "block": "block4", "metric": "f1_macro",
            "estimate": e, "ci_low": e - 0.02, "ci_high": e + 0.02, "protocol": "only_ll"}]))
    linear, layer = tables.probe_tables(files, linear_files=only_ll)
    assert linear.set_index("method")["estimate"].to_dict() == {"moco": 0.71, "moco_mse": 0.78}
    assert len(layer) == 8 and layer.set_index(["method", "block"]).loc[
        ("moco_mse", "block4"), "estimate"] == pytest.approx(0.85)
    out = tmp_path / "tables"
    tables.build_all(finetune_metrics=write_finetune(tmp_path, {("idc", "moco", 100): 0.8}),
                     probes=files, ckas=[], kss=[], paireds=[], out_dir=out,
                     order=["moco", "moco_mse"], display={"moco": "MoCo", "moco_mse": "MoCo+MSE"},
                     linear_probes=only_ll, probe_protocol="official")
    md = (out / "linear_probe.md").read_text()
    assert "78.0 [76.0, 80.0]" in md and "85.0" not in md and "--only-ll" in md
    assert "reported the validation score only" in (out / "layer_probe.md").read_text()


def test_cka_and_ks_tables_mark_nothing(tmp_path):
    cka = tmp_path / "cka.csv"
    write_csv(cka, pd.DataFrame([{"dataset": "idc", "method": m, "fraction": 1.0, "seed": 0,
                                  "block": f"block{b}", "cka": 1 - 0.1 * b - d,
                                  "ci_low": 1 - 0.1 * b - d - 0.01,
                                  "ci_high": 1 - 0.1 * b - d + 0.01}
                                 for m, d in (("moco", 0.3), ("moco_mse", 0.0))
                                 for b in range(1, 5)]))
    ft = tables.finetune_table(write_finetune(tmp_path, {("idc", "moco", 1): 0.7,
                                                         ("idc", "moco_mse", 1): 0.75}))
    reuse = tables.feature_reuse_table([cka], ft)
    r = reuse[(reuse.method == "moco_mse") & (reuse.block == "block1")].iloc[0]
    assert r.estimate == pytest.approx(0.9) and r.finetuned_metric == pytest.approx(0.75)
    out = tmp_path / "t"
    tables.render("feature_reuse", reuse, out, ORDER, DISPLAY)
    first = (out / "feature_reuse.md").read_text().split("Fine-tuned metric")[0]
    assert "**0.9" not in first  # higher CKA is not "better"
    ks = tmp_path / "ks.csv"
    write_csv(ks, pd.DataFrame([{"dataset": "idc", "method": m, "fraction": 1.0, "seed": 0,
                                 "reference": "moco_bt", "reference_rule": "configured",
                                 "ks": k, "pvalue": 0.01} for m, k in (("moco", 0.3),
                                                                       ("moco_mse", 0.2))]))
    tables.render("ks_distance", tables.ks_table([ks]), out, ORDER, DISPLAY)
    line = next(ln for ln in (out / "ks_distance.md").read_text().splitlines()
                if ln.startswith("| idc"))
    assert "| moco_bt |" in line and "0.200" in line and "0.300" in line
    assert "**" not in line  # no intervals: no claim about which is closest


def test_paired_table_marks_intervals_that_exclude_zero(tmp_path):
    p = tmp_path / "paired.csv"
    write_csv(p, pd.DataFrame([
        {"dataset": "d", "method": "moco_mse", "baseline": "moco", "fraction": 1.0, "seed": 0,
         "metric": "macro_auc", "estimate": 0.03, "ci_low": 0.01, "ci_high": 0.05,
         "p_better": 0.99},
        {"dataset": "d", "method": "moco_bt", "baseline": "moco", "fraction": 1.0, "seed": 0,
         "metric": "macro_auc", "estimate": 0.01, "ci_low": -0.02, "ci_high": 0.04,
         "p_better": 0.7}]))
    out = tmp_path / "t"
    tables.render("paired_difference", tables.paired_table([p]), out, ORDER, DISPLAY)
    line = next(ln for ln in (out / "paired_difference.md").read_text().splitlines()
                if ln.startswith("| d |"))
    assert "**+3.0 [1.0, 5.0]**" in line and "+1.0 [-2.0, 4.0]" in line
    assert line.count("**") == 2


def test_paper_comparison_on_a_real_dataset_and_nothing_on_synthetic(tmp_path):
    vals = {("nih", "moco", 1): 0.60, ("nih", "moco_mse", 1): 0.614}
    files = write_finetune(tmp_path, vals)
    out, res = build(tmp_path, files, paper_datasets={"nih": "nih"})
    cmp_ = pd.read_csv(out / "paper_comparison.csv")
    moco = cmp_[(cmp_.method == "moco") & (cmp_.table == "finetune")].iloc[0]
    assert moco.paper == pytest.approx(0.592) and moco.ours == pytest.approx(0.60)
    assert moco.difference == pytest.approx(0.008) and bool(moco.paper_inside_ours)
    assert moco.paper_low == pytest.approx(0.586)
    assert "| nih | finetune | MoCo | 1 % |" in (out / "paper_comparison.md").read_text()
    out2, _ = build(tmp_path / "s", files, paper_datasets={"nih": None})
    assert "nothing to compare" in (out2 / "paper_comparison.md").read_text()
    assert len(pd.read_csv(out2 / "paper_comparison.csv")) == 0


def test_every_table_of_the_registry_is_rendered(tmp_path):
    out, _ = build(tmp_path, write_finetune(tmp_path, {("d", "moco", 1): 0.7}))
    for name in TABLES:
        for ext in ("csv", "md", "tex"):
            assert (out / f"{name}.{ext}").exists(), (name, ext)


# ------------------------------------------------------------------ figure rules

def capture(monkeypatch):
    figs = []
    monkeypatch.setattr(figures, "save", lambda fig, *a, **k: figs.append(fig))
    return figs


def assert_readable(fig):
    for ax in fig.axes:
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(),
                 *ax.get_yticklabels()]
        leg = ax.get_legend()
        if leg is not None:
            texts += leg.get_texts()
        for t in texts:
            if t.get_text():
                assert t.get_fontsize() >= 8, (t.get_text(), t.get_fontsize())
        for t in ax.get_yticklabels():
            assert "×" not in t.get_text() and "10^" not in t.get_text()


def chance_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_label() == "chance"]


def assert_not_clipped(ax, values):
    lo, hi = ax.get_ylim()
    v = np.concatenate([np.ravel(np.asarray(x, float)) for x in values])
    v = v[np.isfinite(v)]
    assert lo <= v.min() and v.max() <= hi, (lo, hi, v.min(), v.max())


def test_finetune_figure_dots_intervals_chance_and_names(monkeypatch):
    figs = capture(monkeypatch)
    ft = pd.DataFrame([{"dataset": "nih", "method": m, "fraction": f, "metric": "macro_auc",
                        "estimate": 0.6 + 0.01 * i + f / 1000, "ci_low": 0.3, "ci_high": 0.995,
                        "n_seeds": 1} for i, m in enumerate(METHODS) for f in (1, 6, 100)])
    figures.finetune_dots(ft, "NIH ChestX-ray14 (synthetic)", ORDER, DISPLAY, "x.png",
                          chance=0.5, level=0.9)
    ax = figs[0].axes[0]
    assert_not_clipped(ax, [ft["ci_low"] * 100, ft["ci_high"] * 100, [50]])
    assert chance_lines(ax) and chance_lines(ax)[0].get_ydata()[0] == 50
    assert ax.get_title() == "NIH ChestX-ray14 (synthetic): fine-tuning (90 % CI)"
    labels = [t.get_text() for t in ax.get_legend().get_texts() if t.get_text() != "chance"]
    assert labels[:4] == ["Supervised", "MoCo", "MoCo+MSE", "MoCo+BT"]
    mse = next(c for c in ax.containers if c.get_label() == "MoCo+MSE")
    assert mcolors.to_hex(mse.lines[0].get_color()) == figures.FIXED_COLORS["moco_mse"].lower()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1 %", "6 %", "100 %"]
    assert_readable(figs[0])


def test_layer_probe_figure_control_dodged_and_unclipped(monkeypatch):
    figs = capture(monkeypatch)
    layer = pd.DataFrame([{"dataset": "d", "method": m, "block": f"block{b}",
                           "metric": "f1_macro", "estimate": 0.5 + b / 20, "ci_low": 0.4,
                           "ci_high": 0.99}
                          for m in ("moco", "random_init", "supervised") for b in range(1, 5)])
    figures.layer_probe_dots(layer, "IDC", ORDER, DISPLAY, "x.png", chance=0.42)
    ax = figs[0].axes[0]
    assert_not_clipped(ax, [layer["ci_low"] * 100, layer["ci_high"] * 100, [42]])
    assert chance_lines(ax)
    labels = [t.get_text() for t in ax.get_legend().get_texts() if t.get_text() != "chance"]
    # each encoder drawn once although ORDER names the references too; references last
    assert labels == ["MoCo", "Supervised (fine-tuned, ref.)", "Random init (control)"]
    assert len(ax.containers) == 3
    xs = [c.lines[0].get_xdata()[0] for c in ax.containers]
    assert len(set(np.round(xs, 6))) == len(xs)  # methods side by side, whiskers apart
    assert_readable(figs[0])


def test_other_figures_render_to_png_and_pdf(tmp_path):
    cka = pd.DataFrame([{"dataset": "d", "method": "moco", "fraction": f, "block": f"block{b}",
                         "estimate": 1 - b / 10, "ci_low": 0.5, "ci_high": 1.0}
                        for f in (1.0, 100.0) for b in range(1, 5)])
    ks = pd.DataFrame([{"dataset": "d", "method": "moco", "fraction": 1.0, "reference": "moco",
                        "ks": 0.3}])
    curves = {("moco", 100.0): np.linspace(0, 1, 50), ("moco", 1.0): np.linspace(0, 1, 50) ** 2}
    loss = {"moco_mse": pd.DataFrame({"step": [1, 2, 3, 3], "epoch": [0, 0, 0, 0],
                                      "infonce": [5.0, 4.0, 3.5, np.nan],
                                      "knn_macro_auc": [np.nan] * 3 + [0.7],
                                      **{f"mse_block{i}": [0.1, 0.08, 0.05, np.nan]
                                         for i in range(1, 5)}})}
    paired = pd.DataFrame([{"dataset": "d", "method": "moco_mse", "baseline": "moco",
                            "fraction": 1.0, "metric": "macro_auc", "estimate": 0.02,
                            "ci_low": -0.01, "ci_high": 0.05}])
    for name, call in {
        "cka": lambda p, q: figures.cka_lines(cka, "d", ORDER, DISPLAY, p, q),
        "ks": lambda p, q: figures.ks_cdfs(curves, ks, "d", ORDER, DISPLAY, p, q),
        "loss": lambda p, q: figures.pretrain_curves(loss, "d", ORDER, DISPLAY, p, q,
                                                     **LOSS_VIEW),
        "paired": lambda p, q: figures.paired_forest(paired, "d", ORDER, DISPLAY, p, q),
    }.items():
        png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
        call(png, pdf)
        assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"


def chance_view(queue_size: int) -> dict:
    """What the workflow passes the report about each method's base loss: MoCo's chance
    level for a queue of ``queue_size`` keys (its registry entry)."""
    queue = types.SimpleNamespace(queue_size=queue_size)
    return {m: BASES["moco"].chance(queue) for m in ("moco", "moco_mse", "moco_bt")}


LOSS_VIEW = {"losses": {c: label for b in BASES.values() for c, label in b.losses.items()},
             "chance": chance_view(64)}


def test_pretrain_figure_has_linear_ticks_chance_and_knn(monkeypatch):
    figs = capture(monkeypatch)
    loss = {"moco": pd.DataFrame({"step": [1, 2, 3, 3], "epoch": [0, 0, 0, 0],
                                  "infonce": [5.0, 4.0, 3.5, np.nan],
                                  "knn_macro_auc": [np.nan] * 3 + [0.7]})}
    figures.pretrain_curves(loss, "d", ORDER, DISPLAY, "x.png", **LOSS_VIEW)
    ax, knn = figs[0].axes[0], figs[0].axes[1]
    assert ax.get_yscale() == "linear"
    # math.log against np.log: each within a few ulp
    assert any(abs(ln.get_ydata()[0] - np.log(65)) <= 8 * tol.ulp(np.log(65), "float64")
               for ln in ax.get_lines() if ln.get_label().startswith("chance"))
    assert knn.get_ylabel().startswith("kNN") and knn.get_ylim() == (0, 100)
    assert_readable(figs[0])


def test_pretrain_figure_has_one_legend_for_loss_and_terms(monkeypatch):
    figs = capture(monkeypatch)
    loss = {"moco_mse": pd.DataFrame({"step": [1, 2, 3], "epoch": [0, 0, 0],
                                      "infonce": [5.0, 4.0, 3.5],
                                      **{f"mse_block{i}": [0.1, 0.08, 0.05]
                                         for i in range(1, 5)}})}
    figures.pretrain_curves(loss, "d", ORDER, DISPLAY, "x.png", **LOSS_VIEW)
    legends = [ax.get_legend() for ax in figs[0].axes if ax.get_legend() is not None]
    assert len(legends) == 1  # two legends of the twin axes used to overlap
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert labels == ["InfoNCE", "chance ln(64+1)"] + [f"mse block{i}" for i in range(1, 5)]


def test_new_variants_get_distinct_colours():
    colors = figures.method_colors(ORDER + ["mse_b1", "mse_b2", "byol_mse"])
    new = [colors[m] for m in ("mse_b1", "mse_b2", "byol_mse")]
    assert len(set(new)) == 3 and not set(new) & {colors[m] for m in METHODS}


# ------------------------------------------------------------------ the README's account

def test_summary_sentences_come_from_the_results():
    from ilmoco.reporting.summary import learning_sentences, paired_sentences, pretraining_rows

    curve = pd.DataFrame({"step": [10, 20, 20], "epoch": [0, 1, 1],
                          "loss": [5.0, 3.2, np.nan], "infonce": [5.0, 3.2, np.nan],
                          "knn_macro_auc": [np.nan, np.nan, 0.81]})
    probes = pd.DataFrame([{"dataset": "d", "method": m, "block": b, "estimate": e}
                           for m, b, e in (("moco", "block4", 0.78),
                                           ("random_init", "block4", 0.55),
                                           ("random_init", "block2", 0.71),
                                           ("random_init", "block3", 0.64),
                                           ("moco", "block3", 0.99))])
    rows = pretraining_rows({("d", "moco"): curve}, chance_view(256), probes)
    r = rows.iloc[0]
    assert r["infonce"] == 3.2 and r["chance"] == pytest.approx(np.log(257))
    assert r["knn"] == 0.81 and (r["probe"], r["random_probe"]) == (0.78, 0.55)
    text = " ".join(learning_sentences(rows, DISPLAY))
    assert f"{np.log(257) - 3.2:.2f}-{np.log(257) - 3.2:.2f} nats below chance" in text
    assert "scores 55.0-55.0" in text and "+23.0 to +23.0 points" in text
    assert "control already scores up to 71.0 on d:" in text  # best block below 4, control
    assert "score +28.0 to +28.0 points from the control" in text  # 0.99 (block 3) - 0.71
    paired = pd.DataFrame([
        {"dataset": "d", "fraction": 1.0, "baseline": "moco", "method": "moco_mse",
         "estimate": 0.03, "ci_low": 0.01, "ci_high": 0.05},
        {"dataset": "d", "fraction": 1.0, "baseline": "moco", "method": "moco_bt",
         "estimate": 0.02, "ci_low": -0.01, "ci_high": 0.05}])
    lines = paired_sentences(paired, DISPLAY, {"d": "Data"}, level=0.9)
    assert lines[0].startswith("1 of 2 paired differences to the baseline have a 90 % "
                               "interval (over test patients, one training run) that "
                               "excludes zero")
    assert lines[1] == ("Data, 1 % labels, against MoCo: MoCo+MSE +3.0 [+1.0, +5.0] "
                        "(excludes 0 in this run: one draw; no seed range measured at this "
                        "fraction); within noise: MoCo+BT.")


def test_the_account_names_a_flat_model_and_compares_nothing_with_it():
    from ilmoco.reporting.summary import one_class_runs, paired_sentences

    def diff(f, m, est):
        return {"dataset": "d", "fraction": f, "baseline": "moco", "method": m,
                "estimate": est, "ci_low": est - 0.01, "ci_high": est + 0.01}

    paired = pd.DataFrame([diff(1.0, "supervised", -0.2), diff(1.0, "moco_mse", 0.1),
                           diff(6.0, "supervised", -0.2), diff(6.0, "moco_mse", 0.1)])
    ft = pd.DataFrame([{"dataset": "d", "fraction": 1.0, "method": "supervised",
                        "one_class": 1.0},
                       {"dataset": "d", "fraction": 6.0, "method": "moco", "one_class": 1.0},
                       {"dataset": "d", "fraction": 6.0, "method": "moco_mse",
                        "one_class": 0.0}])
    flat = one_class_runs(ft)
    assert flat == {("d", 1.0, "supervised"), ("d", 6.0, "moco")}
    lines = paired_sentences(paired, DISPLAY, {"d": "Data"}, flat=flat)
    assert lines[0].startswith("1 of 1 paired differences")  # only MoCo+MSE at 1 %
    assert lines[1] == ("Data, 1 % labels, against MoCo: MoCo+MSE +10.0 [+9.0, +11.0] "
                        "(excludes 0 in this run: one draw; no seed range measured at this "
                        "fraction); predicts one class: Supervised.")
    assert lines[2] == "Data, 6 % labels, against MoCo: MoCo predicts one class: no comparison."


def seed_rows(diffs: dict, margins: dict, seeds=(0, 1, 2, 3, 4)) -> pd.DataFrame:
    """A seed-variance table: per method, its paired difference to MoCo (estimate, half
    width) and its probe margin, seed by seed."""
    rows = []
    for k in seeds:
        for m in ("supervised", "moco", "moco_mse", "moco_bt"):
            r = {"dataset": "d", "method": m, "seed": k, "fraction": 6.0, "baseline": "moco",
                 "control": 0.5}
            if m in margins:
                r["probe"], r["margin"] = 0.5 + margins[m][k], margins[m][k]
            if m in diffs:
                est, half = diffs[m][k]
                r.update(difference=est, difference_low=est - half,
                         difference_high=est + half)
            rows.append(r)
    return pd.DataFrame(rows)


def test_cross_seed_claims_come_only_from_what_holds_in_every_seed():
    from ilmoco.reporting.seeds import seed_summary
    from ilmoco.reporting.summary import paired_sentences, seed_sentences

    table = seed_rows(
        diffs={"supervised": [(-0.20, 0.05)] * 5,  # below MoCo in every seed
               "moco_mse": [(0.05, 0.02), (0.06, 0.02), (-0.04, 0.02), (0.05, 0.02),
                            (0.01, 0.03)],  # sign flips in seed 2
               "moco_bt": [(0.03, 0.01), (0.02, 0.01), (0.04, 0.01), (0.03, 0.015),
                           (0.02, 0.01)]},  # above MoCo, interval excluding 0, every seed
        margins={m: [0.15, 0.2, 0.12, 0.3, 0.11] for m in ("moco", "moco_mse", "moco_bt")})
    summary = seed_summary(table)
    text = seed_sentences(summary, {"header": "a machine"}, DISPLAY, {"d": "Data"},
                          current=True)[0]
    assert "Across 5 seeds" in text and "at least 10 points above the random-init control in " \
        "every seed (smallest margin +11.0" in text
    assert "above MoCo: MoCo+BT (+2.0 to +4.0)" in text
    assert "below MoCo: Supervised (-20.0 to -20.0)" in text
    assert "MoCo+MSE" not in text  # not the same in every seed: no claim
    stale = seed_sentences(summary, {"header": "h"}, DISPLAY, {"d": "Data"}, current=False)[0]
    assert "other settings" in stale and "one draw" in stale and "MoCo+BT" not in stale
    # this run's single-seed difference: labelled one draw, with the measured seed range
    run = pd.DataFrame([{"dataset": "d", "fraction": 6.0, "baseline": "moco",
                         "method": "moco_mse", "estimate": 0.05, "ci_low": 0.03,
                         "ci_high": 0.07, "n_seeds": 1}])
    line = paired_sentences(run, DISPLAY, {"d": "Data"}, seeds=summary)[1]
    assert "(excludes 0 in this run: one draw; seed range -4.0 to +6.0)" in line


def test_seed_claims_count_no_seed_whose_model_predicted_one_class():
    from ilmoco.reporting.seeds import seed_summary, ssl_over_supervised

    table = seed_rows(diffs={"supervised": [(-0.20, 0.05)] * 5},
                      margins={"moco": [0.2] * 5})
    table["finetune"] = table["method"].map({"supervised": 0.6, "moco": 0.8})
    table["one_class"] = False
    assert seed_summary(table).set_index("method").loc["supervised", "below_in_every_seed"]
    flat = table.copy()
    flat.loc[(flat["method"] == "supervised") & (flat["seed"] == 3), "one_class"] = True
    assert not seed_summary(flat).set_index("method").loc["supervised",
                                                          "below_in_every_seed"]
    two = pd.concat([table, table.assign(dataset="e", finetune=table["finetune"]
                                         .where(table["method"] != "moco", 0.5))])
    wins = ssl_over_supervised(two)
    assert wins["ssl_wins"].tolist() == [1] * 5 and wins["datasets"].tolist() == [2] * 5
    assert wins["smallest_gap"].tolist() == pytest.approx([-0.1] * 5)  # on e: 0.5 - 0.6
    two.loc[(two["dataset"] == "e") & (two["method"] == "supervised") & (two["seed"] == 0),
            "one_class"] = True  # no result for Supervised there: MoCo's 0.5 is above it
    assert ssl_over_supervised(two)["ssl_wins"].tolist() == [2, 1, 1, 1, 1]
    from ilmoco.reporting.summary import seed_sentences

    two.loc[two["method"] == "moco", "margin"] = [0.2, 0.2, 0.05, 0.2, 0.2] * 2
    text = seed_sentences(seed_summary(two), {"header": "h"}, DISPLAY, {"d": "Data"},
                          current=True, wins=ssl_over_supervised(two))[0]
    assert text.count("MoCo on Data (smallest margin +5.0)") == 1
    assert ("at 6 % labels the best self-supervised method's fine-tuning is above "
            "Supervised's on 1 to 2 of the 2 datasets in every seed (smallest gap -10.0 "
            "points)") in text


@pytest.mark.parametrize("n_seeds", [1, 2, 3])
def test_the_generator_never_calls_a_single_seed_difference_real_without_one_draw(n_seeds):
    from ilmoco.reporting.summary import paired_sentences

    rng = np.random.default_rng(n_seeds)
    rows = []
    for f in (1.0, 6.0, 100.0):
        for m in ("supervised", "moco_mse", "moco_bt"):
            est = rng.normal(0, 0.05)
            half = abs(rng.normal(0.02, 0.01))
            rows.append({"dataset": "d", "fraction": f, "baseline": "moco", "method": m,
                         "estimate": est, "ci_low": est - half, "ci_high": est + half,
                         "n_seeds": n_seeds})
    lines = paired_sentences(pd.DataFrame(rows), DISPLAY, {"d": "Data"})
    claims = [part for ln in lines[1:] for part in ln.split("; ") if "excludes 0" in part]
    assert claims  # the draw has differences whose interval excludes 0
    for c in claims:
        assert ("one draw" in c) == (n_seeds == 1), c
        assert (f"across {n_seeds} fine-tuning seeds" in c) == (n_seeds > 1), c
