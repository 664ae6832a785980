"""Figures for one dataset (PNG for the report, PDF for papers).

Colour-blind-safe Okabe–Ito colours, one fixed colour per method in every figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ilmoco.config import METHOD_NAMES  # noqa: E402
from ilmoco.io import atomic_path  # noqa: E402

METHOD_COLORS = {"supervised": "#7F7F7F", "moco": "#0072B2", "moco_mse": "#E69F00",
                 "moco_bt": "#009E73"}
TERM_COLORS = ["#000000", "#56B4E9", "#D55E00", "#CC79A7", "#F0E442"]
METRIC_LABEL = {"macro_auc": "macro AUC (%)", "f1_macro": "macro F1 (%)",
                "f1_pos_tuned": "F1, tuned threshold (%)", "accuracy": "accuracy (%)"}
BLOCKS = ["block1", "block2", "block3", "block4"]


def _methods(values) -> list[str]:
    return [m for m in METHOD_NAMES if m in set(values)]


def save(fig, out_png, out_pdf=None) -> None:
    for path in filter(None, (out_png, out_pdf)):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(fig)


def _err(est, lo, hi):
    lo = np.where(np.isfinite(lo), est - lo, 0)
    hi = np.where(np.isfinite(hi), hi - est, 0)
    return np.vstack([np.clip(lo, 0, None), np.clip(hi, 0, None)])


def finetune_bars(ft: pd.DataFrame, dataset: str, out_png, out_pdf=None) -> None:
    """Grouped bars of the fine-tuned test metric per label fraction, 95 % CI whiskers."""
    d = ft[ft["dataset"] == dataset]
    fracs = sorted(d["fraction"].unique())
    methods = _methods(d["method"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(fracs), 3.2))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        r = d[d["method"] == m].set_index("fraction").reindex(fracs)
        x = np.arange(len(fracs)) + (i - (len(methods) - 1) / 2) * width
        est = r["estimate"].to_numpy() * 100
        ax.bar(x, est, width, color=METHOD_COLORS[m], label=METHOD_NAMES[m])
        ax.errorbar(x, est, yerr=_err(est, r["ci_low"].to_numpy() * 100,
                                      r["ci_high"].to_numpy() * 100),
                    fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xticks(np.arange(len(fracs)), [f"{f:g} %" for f in fracs])
    ax.set_xlabel("labelled training images")
    metric = d["metric"].iloc[0] if len(d) else ""
    ax.set_ylabel(f"test {METRIC_LABEL.get(metric, metric)}")
    lows = d["ci_low"].where(np.isfinite(d["ci_low"]), d["estimate"]) * 100
    ax.set_ylim(max(0, np.nanmin(lows) - 5) if len(d) else 0, 100)
    ax.set_title(f"{dataset}: fine-tuning")
    ax.legend(fontsize=7, ncol=2, frameon=False, loc="upper left")
    save(fig, out_png, out_pdf)


def cka_lines(cka: pd.DataFrame, dataset: str, out_png, out_pdf=None) -> None:
    """CKA between pretrained and fine-tuned encoder per block, one line per method,
    one panel per label fraction."""
    d = cka[cka["dataset"] == dataset]
    fracs = sorted(d["fraction"].unique())
    fig, axes = plt.subplots(1, max(1, len(fracs)), figsize=(3 * max(1, len(fracs)), 3),
                             layout="constrained", sharey=True, squeeze=False)
    for ax, f in zip(axes[0], fracs):
        for m in _methods(d["method"]):
            r = d[(d["method"] == m) & (d["fraction"] == f)].set_index("block").reindex(BLOCKS)
            x = np.arange(1, 5)
            ax.errorbar(x, r["estimate"], yerr=_err(r["estimate"].to_numpy(),
                                                    r["ci_low"].to_numpy(),
                                                    r["ci_high"].to_numpy()),
                        color=METHOD_COLORS[m], marker="o", ms=4, capsize=2,
                        label=METHOD_NAMES[m])
        ax.set_title(f"{f:g} % labels", fontsize=9)
        ax.set_xticks(range(1, 5), [f"block {i}" for i in range(1, 5)], fontsize=8)
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("CKA before vs after fine-tuning")
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"{dataset}: feature reuse", fontsize=10)
    save(fig, out_png, out_pdf)


def layer_probe_curves(layer: pd.DataFrame, dataset: str, out_png, out_pdf=None) -> None:
    d = layer[layer["dataset"] == dataset]
    fig, ax = plt.subplots(figsize=(4, 3))
    for m in _methods(d["method"]):
        r = d[d["method"] == m].set_index("block").reindex(BLOCKS)
        est = r["estimate"].to_numpy() * 100
        ax.errorbar(np.arange(1, 5), est, yerr=_err(est, r["ci_low"].to_numpy() * 100,
                                                    r["ci_high"].to_numpy() * 100),
                    color=METHOD_COLORS[m], marker="o", ms=4, capsize=2,
                    ls="--" if m == "supervised" else "-",
                    label=METHOD_NAMES[m] + (" (fine-tuned, ref.)" if m == "supervised" else ""))
    metric = d["metric"].iloc[0] if len(d) else ""
    ax.set_xticks(range(1, 5), [f"block {i}" for i in range(1, 5)])
    ax.set_ylabel(f"linear probe, test {METRIC_LABEL.get(metric, metric)}")
    ax.set_title(f"{dataset}: layer-wise probing")
    ax.legend(fontsize=7, frameon=False)
    save(fig, out_png, out_pdf)


def ks_cdfs(curves: dict, ks: pd.DataFrame, dataset: str, out_png, out_pdf=None) -> None:
    """Empirical CDFs of test probabilities (pooled over labels) behind each KS value.

    ``curves`` maps (method, fraction) -> probabilities; the reference is
    ``(reference, 100.0)``.
    """
    d = ks[ks["dataset"] == dataset]
    ref = d["reference"].iloc[0] if len(d) else None
    fracs = sorted(f for f in d["fraction"].unique() if f < 100)
    fig, axes = plt.subplots(1, max(1, len(fracs)), figsize=(3.2 * max(1, len(fracs)), 3),
                             layout="constrained", sharey=True, squeeze=False)
    for ax, f in zip(axes[0], fracs):
        if ref is not None and (ref, 100.0) in curves:
            p = np.sort(np.ravel(curves[(ref, 100.0)]))
            ax.plot(p, np.arange(1, len(p) + 1) / len(p), color="black", lw=2.2,
                    label=f"{METHOD_NAMES[ref]} 100 % (ref.)")
        for m in _methods(d["method"]):
            if (m, f) not in curves:
                continue
            p = np.sort(np.ravel(curves[(m, f)]))
            k = d[(d["method"] == m) & (d["fraction"] == f)]["ks"]
            ks_txt = f" KS={k.iloc[0]:.2f}" if len(k) else ""
            ax.plot(p, np.arange(1, len(p) + 1) / len(p), color=METHOD_COLORS[m],
                    label=f"{METHOD_NAMES[m]}{ks_txt}")
        ax.set_title(f"{f:g} % labels", fontsize=9)
        ax.set_xlabel("predicted probability")
        ax.legend(fontsize=6, frameon=False, loc="lower right")
    axes[0][0].set_ylabel("cumulative fraction of test predictions")
    fig.suptitle(f"{dataset}: KS distance to the 100 % reference", fontsize=10)
    save(fig, out_png, out_pdf)


def pretrain_curves(curves: dict, dataset: str, out_png, out_pdf=None,
                    queue_size: int | None = None) -> None:
    """Pretraining loss per method: InfoNCE and each intermediate term (log scale), with
    InfoNCE's chance level ln(K + 1) for a queue of K keys (the loss first rises towards it
    while the queue fills with real keys)."""
    methods = _methods(curves)
    fig, axes = plt.subplots(1, max(1, len(methods)), figsize=(3.3 * max(1, len(methods)), 3),
                             layout="constrained", squeeze=False)
    for ax, m in zip(axes[0], methods):
        df = curves[m]
        df = df[df["infonce"].notna()] if "infonce" in df else df
        terms = ["infonce"] + [c for c in df.columns if c.startswith(("mse_", "bt_"))]
        for color, t in zip(TERM_COLORS, terms):
            ax.plot(df["step"], df[t], color=color, lw=1.2,
                    label="InfoNCE" if t == "infonce" else t.replace("_", " "))
        if queue_size:
            ax.axhline(np.log(queue_size + 1), color="black", ls=":", lw=0.8,
                       label=f"chance, ln({queue_size}+1)")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_title(METHOD_NAMES[m], fontsize=9, color=METHOD_COLORS[m])
        ax.legend(fontsize=6, frameon=False)
    axes[0][0].set_ylabel("loss term (log scale)")
    fig.suptitle(f"{dataset}: pretraining losses", fontsize=10)
    save(fig, out_png, out_pdf)
