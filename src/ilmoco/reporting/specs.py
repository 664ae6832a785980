"""What the report shows: each result table's keys, scale and caption, and the per-dataset
figures. Read only by the reporting stages, so editing a caption reruns only the tables."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    """How one result table is keyed and rendered. ``better``: which estimate is best
    (``max``, ``min``) or ``None`` where "best" means nothing (CKA, differences)."""

    name: str
    rows: tuple[str, ...]
    scale: float
    digits: int
    better: str | None
    caption: str  # ``{level}``: the interval level (e.g. 95); ``{interval}``: the interval
    # and what it covers (test patients of one training run, or seeds)
    report: bool = True


TABLES: dict[str, TableSpec] = {t.name: t for t in (
    TableSpec("finetune", ("dataset", "metric", "fraction"), 100, 1, "max",
              "Fine-tuned test metric (x100) with {interval}, by label fraction"),
    TableSpec("linear_probe", ("dataset", "metric"), 100, 1, "max",
              "Linear probe on frozen block-4 features (x100) with {interval}"),
    TableSpec("layer_probe", ("dataset", "metric", "block"), 100, 1, "max",
              "Layer-wise linear probes on frozen block 1-4 features (x100) with {interval}"),
    TableSpec("feature_reuse", ("dataset", "fraction", "block"), 1, 3, None,
              "Feature reuse: CKA between the pretrained and the fine-tuned encoder per "
              "block, {level} % interval over test subsets"),
    TableSpec("ks_distance", ("dataset", "reference", "fraction"), 1, 3, "min",
              "KS distance of test probabilities to the reference model fine-tuned on "
              "100 % labels (lower = closer)"),
    TableSpec("paired_difference", ("dataset", "metric", "fraction", "baseline"), 100, 1,
              None, "Difference to the baseline method on the same test patients (x100), "
                    "paired {interval}"),
    TableSpec("paper_comparison", ("dataset", "table", "fraction", "block"), 100, 1, None,
              "This run beside the published values (x100)"),
)}

def interval_covers(level: float, n_seeds: int) -> str:
    """The interval of a table or figure and what it covers: with one seed the bootstrap
    over test patients of one training run (seed-to-seed variation not included), with
    several the t-interval across the fine-tuning seeds (``seeds``; each method keeps its
    one pretraining, ``pretrain.seed``)."""
    if n_seeds > 1:
        return (f"{100 * level:g} % t-interval across {n_seeds} fine-tuning seeds "
                "(fine-tuning variation included, one pretraining)")
    return (f"{100 * level:g} % interval over resampled test patients, one training run "
            "(seed-to-seed variation not included)")


# Per-dataset figures, in report order.
FIGURES = ("finetune", "layer_probe", "feature_reuse", "ks_cdf", "pretrain_loss",
           "paired_difference")
