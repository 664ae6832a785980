"""The data report: what a dataset holds before any GPU hour is spent on it.

Per dataset: images and patients per split and per labelled fraction, the prevalence of each
class or label per split (ignored labels counted apart), the sizes, modes and bit depths of
a sample of the image files, and a contact sheet of random images per class taken from the
uint8 cache, i.e. what the network will see after decoding, windowing and resizing.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ilmoco.data.formats.base import DatasetMeta  # noqa: E402
from ilmoco.io import atomic_path  # noqa: E402
from ilmoco.names import fraction_column  # noqa: E402

SPLITS = ("train", "val", "test")


def class_names(meta: DatasetMeta) -> list[str]:
    """One name per class (one-column tasks) or per label (multi-label)."""
    if meta.task == "multilabel":
        return list(meta.label_columns)
    if meta.classes:
        return list(meta.classes)
    return [f"{meta.label_columns[0]}={k}" for k in range(meta.n_classes)]


def class_matrix(split: pd.DataFrame, meta: DatasetMeta) -> np.ndarray:
    """(n, C) of 1 (positive), 0 (negative) and -1 (ignored) per class or label."""
    if meta.task == "multilabel":
        return split[meta.label_columns].to_numpy().astype(int)
    y = split[meta.label_columns[0]].to_numpy().astype(int)
    return (y[:, None] == np.arange(meta.n_classes)[None, :]).astype(int)


def subsets(split: pd.DataFrame, fractions) -> list[tuple[str, pd.DataFrame]]:
    """The whole dataset, each split, and the train images labelled at each fraction."""
    out = [("all", split)] + [(s, split[split["split"] == s]) for s in SPLITS]
    for pct in fractions:
        col = fraction_column(pct)
        if col in split.columns:
            out.append((f"train {col}", split[(split["split"] == "train")
                                              & split[col].astype(bool)]))
    return out


def split_table(dataset: str, split: pd.DataFrame, fractions) -> pd.DataFrame:
    rows = []
    for name, part in subsets(split, fractions):
        rows.append({"dataset": dataset, "subset": name, "images": len(part),
                     "patients": int(part["patient_id"].nunique()),
                     "share_of_images": len(part) / max(len(split), 1)})
    return pd.DataFrame(rows)


def prevalence_table(dataset: str, split: pd.DataFrame, meta: DatasetMeta,
                     fractions) -> pd.DataFrame:
    names = class_names(meta)
    rows = []
    for name, part in subsets(split, fractions):
        y = class_matrix(part, meta)
        for j, label in enumerate(names):
            pos, known = int((y[:, j] == 1).sum()), int((y[:, j] >= 0).sum())
            rows.append({"dataset": dataset, "label": label, "subset": name,
                         "positives": pos, "known": known, "ignored": len(part) - known,
                         "prevalence": pos / known if known else float("nan")})
    return pd.DataFrame(rows)


def files_table(dataset: str, described: list[dict], n_total: int) -> pd.DataFrame:
    """The sampled files grouped by type, mode and bit depth: how many, their sizes and
    stored value ranges."""
    df = pd.DataFrame(described)
    df["bits_used"] = df["bits_used"].astype("Int64")
    keys = ["type", "mode", "bits", "bits_used"]
    g = df.groupby(keys, dropna=False)
    out = g.agg(images=("width", "size"), width_min=("width", "min"),
                width_median=("width", "median"), width_max=("width", "max"),
                height_min=("height", "min"), height_median=("height", "median"),
                height_max=("height", "max"), value_min=("value_min", "min"),
                value_max=("value_max", "max")).reset_index()
    out.insert(0, "dataset", dataset)
    out.insert(1, "sampled", len(df))
    out.insert(2, "of_images", n_total)
    return out.sort_values("images", ascending=False, kind="stable").reset_index(drop=True)


def contact_sheet(images: np.ndarray, rows_by_class: dict[str, np.ndarray], title: str,
                  per_class: int, seed: int, out_png) -> dict[str, int]:
    """A grid of cached images, one row per class (label), ``per_class`` random images
    each, drawn as cached (0-255, nearest-neighbour, no rescaling of contrast); returns how
    many images each row shows."""
    rng = np.random.default_rng(seed)
    picked = {name: np.sort(rng.choice(rows, min(per_class, len(rows)), replace=False))
              if len(rows) else rows for name, rows in rows_by_class.items()}
    n_rows, n_cols = len(picked), max(1, max((len(v) for v in picked.values()), default=1))
    tile = 0.9
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 + n_cols * tile, 0.5 + n_rows * tile),
                             squeeze=False)
    for r, (name, rows) in enumerate(picked.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(rows):
                img = images[rows[c]]
                if img.shape[0] == 1:
                    ax.imshow(img[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                else:
                    ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
        n = len(rows_by_class[name])
        axes[r, 0].set_ylabel(f"{name}\n({n} images)", rotation=0, ha="right", va="center",
                              fontsize=8)
        if not len(rows):
            axes[r, 0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=8,
                            transform=axes[r, 0].transAxes)
    size = images.shape[-1]
    fig.suptitle(f"{title}: random cached images per class ({size} px, as the network sees "
                 "them)", fontsize=9)
    fig.tight_layout()
    # saved here, not through reporting.figures: a figure edit need not redo the data report
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return {name: len(v) for name, v in picked.items()}


def rows_per_class(split: pd.DataFrame, meta: DatasetMeta, cache_rows: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """Cache rows of the images of each class (label); multi-label data add a row of
    images with no positive label."""
    y = class_matrix(split, meta)
    out = {name: cache_rows[y[:, j] == 1] for j, name in enumerate(class_names(meta))}
    if meta.task == "multilabel":
        out["(no label)"] = cache_rows[~(y == 1).any(1)]
    return out


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}g}"
        return "" if v is pd.NA else str(v)

    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---"
                         for c in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(False)]
    return "\n".join([head, sep, *body]) + "\n"


def prevalence_wide(prev: pd.DataFrame) -> pd.DataFrame:
    """Prevalence (positives / known) per label (rows) and subset (columns)."""
    wide = prev.pivot(index="label", columns="subset", values="prevalence")
    order = list(dict.fromkeys(prev["subset"]))
    wide = wide[order].reindex(list(dict.fromkeys(prev["label"])))
    return wide.reset_index()


def summary(dataset: str, display: str, meta: DatasetMeta, splits: pd.DataFrame,
            prev: pd.DataFrame, files: pd.DataFrame, sheet: dict[str, int]) -> str:
    ignored = int(prev.loc[prev["subset"] == "all", "ignored"].sum())
    lines = [f"## {display} (`{dataset}`)", "",
             f"Format {meta.format}, task {meta.task}, {meta.n_classes} "
             f"{'labels' if meta.task == 'multilabel' else 'classes'}, {meta.channels} "
             f"channel(s); {int(splits.iloc[0]['images'])} images of "
             f"{int(splits.iloc[0]['patients'])} patients"
             + (f"; {ignored} ignored label entries" if ignored else "") + "."]
    lines += [f"* {n}" for n in meta.notes]
    lines += ["", "**Images and patients per split and labelled fraction**", "",
              markdown(splits.drop(columns="dataset"), 3),
              "**Prevalence (positives / known) per split**", "",
              markdown(prevalence_wide(prev), 3),
              f"**Image files**: {int(files['sampled'].iloc[0])} of "
              f"{int(files['of_images'].iloc[0])} sampled, evenly spread over the manifest", "",
              markdown(files.drop(columns=["dataset", "sampled", "of_images"]), 4),
              "**Contact sheet** (`contact_sheet.png`): "
              + ", ".join(f"{k} {v}" for k, v in sheet.items()) + " images shown.", ""]
    return "\n".join(lines)
