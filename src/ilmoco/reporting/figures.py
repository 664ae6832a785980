"""Figures for one dataset (PNG for the report, PDF for papers).

Rules every figure follows (tested): metric values are dots with their interval on a value
axis that contains the whole interval (nothing clipped) and an explicit chance line (AUC
0.5; for F1 and accuracy the score of always predicting the majority class); display names
come from the configuration; one fixed, colour-blind-safe colour per method everywhere;
fonts of at least 8 pt; plain tick labels. The interval level in captions is the configured
one.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ilmoco.io import atomic_path  # noqa: E402
from ilmoco.names import BLOCKS, RANDOM_INIT, SUPERVISED  # noqa: E402
from ilmoco.reporting.specs import interval_covers  # noqa: E402

# Okabe-Ito: the paper's methods keep their colours; further variants take the next ones.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442",
           "#882255", "#44AA99", "#117733"]
FIXED_COLORS = {SUPERVISED: "#7F7F7F", RANDOM_INIT: "#000000", "moco": "#0072B2",
                "moco_mse": "#E69F00", "moco_bt": "#009E73"}
TERM_COLORS = ["#000000", "#56B4E9", "#D55E00", "#CC79A7", "#F0E442"]
METRIC_LABEL = {"macro_auc": "macro AUC (%)", "f1_macro": "macro F1 (%)",
                "f1_pos_tuned": "F1, tuned threshold (%)", "accuracy": "accuracy (%)"}
FONT = 9
plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT + 1, "legend.fontsize": 8,
                     "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.labelsize": FONT})


def method_colors(order: list[str]) -> dict[str, str]:
    """A fixed colour per method: the paper's own, then the palette in the run's order."""
    colors = dict(FIXED_COLORS)
    free = [c for c in PALETTE if c not in colors.values()]
    for m in order:
        if m not in colors:
            colors[m] = free[len([k for k in colors if k not in FIXED_COLORS]) % len(free)]
    return colors


def save(fig, out_png, out_pdf=None) -> None:
    for path in filter(None, (out_png, out_pdf)):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(fig)


def _err(est, lo, hi):
    lo = np.where(np.isfinite(lo), est - lo, 0)
    hi = np.where(np.isfinite(hi), hi - est, 0)
    return np.vstack([np.clip(lo, 0, None), np.clip(hi, 0, None)])


def value_limits(values, chance: float | None, pad: float = 3.0) -> tuple[float, float]:
    """A value axis (in %) holding every value and interval end, and the chance line."""
    flat = np.concatenate([np.ravel(np.asarray(v, float)) for v in values]) if len(values) \
        else np.array([])
    v = flat[np.isfinite(flat)]
    lo = min([*v, chance if chance is not None else np.inf]) if len(v) else 0.0
    hi = max([*v, chance if chance is not None else -np.inf]) if len(v) else 100.0
    return max(0.0, lo - pad), hi + pad


def _chance_line(ax, chance: float | None) -> None:
    if chance is not None:
        ax.axhline(chance, color="0.35", ls=":", lw=1.0, zorder=0, label="chance")


def _in_order(values, order: list[str]) -> list[str]:
    present, order = set(values), list(dict.fromkeys(order))  # each method drawn once
    return [m for m in order if m in present] + sorted(present - set(order))


def finetune_dots(ft: pd.DataFrame, title: str, order: list[str], display: dict,
                  out_png, out_pdf=None, chance: float | None = None, level: float = 0.95
                  ) -> plt.Figure:
    """Fine-tuned test metric per label fraction: one dot with its interval per method."""
    fracs = sorted(ft["fraction"].unique())
    methods = _in_order(ft["method"], order)
    colors = method_colors(order)
    fig, ax = plt.subplots(figsize=(1.8 + 1.3 * len(fracs), 3.4), layout="constrained")
    width = 0.7 / max(1, len(methods))
    for i, m in enumerate(methods):
        r = ft[ft["method"] == m].set_index("fraction").reindex(fracs)
        x = np.arange(len(fracs)) + (i - (len(methods) - 1) / 2) * width
        est = r["estimate"].to_numpy() * 100
        ax.errorbar(x, est, yerr=_err(est, r["ci_low"].to_numpy() * 100,
                                      r["ci_high"].to_numpy() * 100),
                    fmt="o", ms=5, color=colors[m], capsize=2, lw=1.2,
                    label=display.get(m, m))
    _chance_line(ax, chance * 100 if chance is not None else None)
    ax.set_xticks(np.arange(len(fracs)), [f"{f:g} %" for f in fracs])
    ax.set_xlabel("labelled training images")
    metric = ft["metric"].iloc[0] if len(ft) else ""
    ax.set_ylabel(f"test {METRIC_LABEL.get(metric, metric)}")
    ax.set_ylim(*value_limits([ft[c] * 100 for c in ("estimate", "ci_low", "ci_high")],
                              chance * 100 if chance is not None else None))
    ax.set_title(f"{title}: fine-tuning ({100 * level:g} % CI)")
    ax.legend(ncol=2, frameon=False, loc="best")
    save(fig, out_png, out_pdf)
    return fig


def layer_probe_dots(layer: pd.DataFrame, title: str, order: list[str], display: dict,
                     out_png, out_pdf=None, chance: float | None = None, level: float = 0.95
                     ) -> plt.Figure:
    """Linear probe per block, methods side by side (whiskers never overlap), the random-init
    control in black and the fine-tuned supervised model dashed as references."""
    refs = [SUPERVISED, RANDOM_INIT]  # the two references last, after the SSL encoders
    methods = _in_order(layer["method"], [m for m in order if m not in refs] + refs)
    colors = method_colors(order)
    fig, ax = plt.subplots(figsize=(4.6, 3.4), layout="constrained")
    width = 0.7 / max(1, len(methods))
    for i, m in enumerate(methods):
        r = layer[layer["method"] == m].set_index("block").reindex(BLOCKS)
        est = r["estimate"].to_numpy() * 100
        x = np.arange(1, 5) + (i - (len(methods) - 1) / 2) * width
        label = display.get(m, m) + {SUPERVISED: " (fine-tuned, ref.)",
                                     RANDOM_INIT: " (control)"}.get(m, "")
        ax.errorbar(x, est, yerr=_err(est, r["ci_low"].to_numpy() * 100,
                                      r["ci_high"].to_numpy() * 100),
                    color=colors[m], marker="o", ms=4, capsize=2, lw=1.0,
                    ls="--" if m in (SUPERVISED, RANDOM_INIT) else "-", label=label)
    _chance_line(ax, chance * 100 if chance is not None else None)
    metric = layer["metric"].iloc[0] if len(layer) else ""
    ax.set_xticks(range(1, 5), [f"block {i}" for i in range(1, 5)])
    ax.set_ylabel(f"linear probe, test {METRIC_LABEL.get(metric, metric)}")
    ax.set_ylim(*value_limits([layer[c] * 100 for c in ("estimate", "ci_low", "ci_high")],
                              chance * 100 if chance is not None else None))
    ax.set_title(f"{title}: layer-wise probing ({100 * level:g} % CI)")
    ax.legend(frameon=False, fontsize=8)
    save(fig, out_png, out_pdf)
    return fig


def cka_lines(cka: pd.DataFrame, title: str, order: list[str], display: dict, out_png,
              out_pdf=None, level: float = 0.95) -> plt.Figure:
    """CKA between pretrained and fine-tuned encoder per block, one line per method,
    one panel per label fraction (CKA is a similarity in [0, 1]: the axis shows all of it)."""
    fracs = sorted(cka["fraction"].unique())
    colors = method_colors(order)
    fig, axes = plt.subplots(1, max(1, len(fracs)), figsize=(3.2 * max(1, len(fracs)), 3.2),
                             layout="constrained", sharey=True, squeeze=False)
    for ax, f in zip(axes[0], fracs):
        for m in _in_order(cka["method"], order):
            r = cka[(cka["method"] == m) & (cka["fraction"] == f)].set_index("block")
            r = r.reindex(BLOCKS)
            ax.errorbar(np.arange(1, 5), r["estimate"], yerr=_err(
                r["estimate"].to_numpy(), r["ci_low"].to_numpy(), r["ci_high"].to_numpy()),
                color=colors[m], marker="o", ms=4, capsize=2, label=display.get(m, m))
        ax.set_title(f"{f:g} % labels")
        ax.set_xticks(range(1, 5), [f"block {i}" for i in range(1, 5)])
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("CKA, pretrained vs fine-tuned")
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.suptitle(f"{title}: feature reuse ({100 * level:g} % interval over test subsets)")
    save(fig, out_png, out_pdf)
    return fig


def ks_cdfs(curves: dict, ks: pd.DataFrame, title: str, order: list[str], display: dict,
            out_png, out_pdf=None) -> plt.Figure:
    """Empirical CDFs of test probabilities (pooled over labels) behind each KS value.

    ``curves`` maps (method, fraction) -> probabilities; the reference is
    ``(reference, 100.0)``.
    """
    ref = ks["reference"].iloc[0] if len(ks) else None
    fracs = sorted(f for f in ks["fraction"].unique() if f < 100)
    colors = method_colors(order)
    fig, axes = plt.subplots(1, max(1, len(fracs)), figsize=(3.4 * max(1, len(fracs)), 3.2),
                             layout="constrained", sharey=True, squeeze=False)
    for ax, f in zip(axes[0], fracs):
        if ref is not None and (ref, 100.0) in curves:
            p = np.sort(np.ravel(curves[(ref, 100.0)]))
            ax.plot(p, np.arange(1, len(p) + 1) / len(p), color="black", lw=2.2,
                    label=f"{display.get(ref, ref)} 100 % (ref.)")
        for m in _in_order(ks["method"], order):
            if (m, f) not in curves:
                continue
            p = np.sort(np.ravel(curves[(m, f)]))
            k = ks[(ks["method"] == m) & (ks["fraction"] == f)]["ks"]
            ks_txt = f" KS={k.iloc[0]:.2f}" if len(k) else ""
            ax.plot(p, np.arange(1, len(p) + 1) / len(p), color=colors[m],
                    label=f"{display.get(m, m)}{ks_txt}")
        ax.set_title(f"{f:g} % labels")
        ax.set_xlabel("predicted probability")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(frameon=False, loc="lower right", fontsize=8)
    axes[0][0].set_ylabel("fraction of test predictions ≤ p")
    fig.suptitle(f"{title}: distance to the 100 % reference (KS)")
    save(fig, out_png, out_pdf)
    return fig


def pretrain_curves(curves: dict, title: str, order: list[str], display: dict, out_png,
                    out_pdf=None, losses: dict | None = None, chance: dict | None = None
                    ) -> plt.Figure:
    """Per method: the base loss (``losses``: logged column -> label, one per base) with its
    chance level where the base has one (``chance``: method -> (value, label), e.g.
    InfoNCE's ln(K + 1) for a queue of K keys), and the intermediate terms
    (``<term>_block<i>``) on a second axis; below, the kNN monitor on held-out images per
    epoch."""
    losses, chance = losses or {}, chance or {}
    methods = _in_order(curves, order)
    has_knn = any(any(c.startswith("knn_") for c in df.columns) for df in curves.values())
    rows = 2 if has_knn else 1
    fig, axes = plt.subplots(rows, max(1, len(methods)), layout="constrained", squeeze=False,
                             figsize=(3.4 * max(1, len(methods)), 2.9 * rows))
    colors = method_colors(order)
    for j, m in enumerate(methods):
        ax, df = axes[0][j], curves[m]
        base = next((t for t in losses if t in df), None)
        train = df[df[base].notna()] if base else df
        if base:
            ax.plot(train["step"], train[base], color="black", lw=1.4, label=losses[base])
        if chance.get(m):
            level, label = chance[m]
            ax.axhline(level, color="0.35", ls=":", lw=1.0, label=label)
        terms = [c for c in df.columns if re.fullmatch(r"[a-z0-9]+_block[1-4]", c)]
        if terms:
            ax2 = ax.twinx()
            for color, t in zip(TERM_COLORS[1:], terms):
                ax2.plot(train["step"], train[t], color=color, lw=1.0,
                         label=t.replace("_", " "))
            ax2.set_ylabel("intermediate terms", fontsize=8)
        ax.set_xlabel("training step")
        ax.set_title(display.get(m, m), color=colors[m])
        # one legend for both axes (two would be drawn over each other), on the twin
        # axis so that its curves do not cover it
        handles, labels = ax.get_legend_handles_labels()
        if terms:
            h2, l2 = ax2.get_legend_handles_labels()
            ax2.legend(handles + h2, labels + l2, fontsize=7, ncol=2, loc="upper right",
                       framealpha=0.85, edgecolor="none")
        else:
            ax.legend(frameon=False, fontsize=8, loc="upper right")
        if has_knn:
            kcol = next((c for c in df.columns if c.startswith("knn_")), None)
            kax = axes[1][j]
            if kcol:
                k = df[df[kcol].notna()]
                kax.plot(k["epoch"] + 1, k[kcol] * 100, color=colors[m], marker="o", ms=3)
                kax.set_ylabel(f"kNN {kcol[4:]} (%)")
            kax.set_xlabel("epoch")
            kax.set_ylim(0, 100)
    axes[0][0].set_ylabel("loss")
    fig.suptitle(f"{title}: pretraining")
    save(fig, out_png, out_pdf)
    return fig


def paired_forest(paired: pd.DataFrame, title: str, order: list[str], display: dict,
                  out_png, out_pdf=None, level: float = 0.95) -> plt.Figure:
    """Forest plot: each method's difference to the baseline per label fraction, with its
    paired interval, and the line of no difference."""
    rows = []
    for f in sorted(paired["fraction"].unique()):
        for m in _in_order(paired.loc[paired["fraction"] == f, "method"], order):
            rows.append(paired[(paired["fraction"] == f) & (paired["method"] == m)].iloc[0])
    colors = method_colors(order)
    fig, ax = plt.subplots(figsize=(5.0, 0.9 + 0.32 * max(1, len(rows))), layout="constrained")
    for y, r in enumerate(reversed(rows)):
        est = r["estimate"] * 100
        ax.errorbar([est], [y], xerr=_err(np.array([est]), np.array([r["ci_low"] * 100]),
                                          np.array([r["ci_high"] * 100])),
                    fmt="o", color=colors[r["method"]], capsize=2, ms=4)
    ax.axvline(0, color="0.35", ls=":", lw=1.0)
    ax.set_yticks(range(len(rows)), [f"{display.get(r['method'], r['method'])}, "
                                     f"{r['fraction']:g} %" for r in reversed(rows)])
    base = display.get(rows[0]["baseline"], rows[0]["baseline"]) if rows else ""
    metric = rows[0]["metric"] if rows else ""
    ax.set_xlabel(f"difference to {base}, test {METRIC_LABEL.get(metric, metric)}")
    n_seeds = int(paired["n_seeds"].max()) if "n_seeds" in paired and len(paired) else 1
    ax.set_title(f"{title}: paired differences\n{interval_covers(level, n_seeds)}",
                 fontsize=FONT)
    save(fig, out_png, out_pdf)
    return fig
