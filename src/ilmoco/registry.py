"""The one registry of names: blocks, methods, tables and figures.

Rules, scripts, tables, figures and the report read these names from here, so a method,
a table or a figure is added in one place.

A *method* is a named way to obtain an encoder:

* ``supervised`` - random initialisation, fine-tuned on the labels (the paper's baseline);
* an SSL variant - a base (``moco``, or ``byol``), an intermediate term (``none``, ``mse``,
  ``bt``) on some of the blocks 1-4, and term settings; the paper's ``moco``, ``moco_mse``
  and ``moco_bt`` are predefined variants, users add more under ``variants:`` in the config;
* ``random_init`` - a randomly initialised encoder that is only probed: the standard control
  of layer-wise probing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

BLOCKS = ("block1", "block2", "block3", "block4")
BASES = ("moco", "byol")
TERMS = ("none", "mse", "bt")

SUPERVISED, RANDOM_INIT = "supervised", "random_init"


@dataclass(frozen=True)
class Method:
    """A named way to obtain an encoder (see the module docstring).

    ``term_overrides`` are settings of the term that replace ``pretrain.mse`` /
    ``pretrain.bt`` for this method (e.g. ``{"weights": [1, 1, 1, 1]}``); ``blocks`` are the
    blocks (1-4) the term applies to.
    """

    name: str
    display: str
    kind: str  # "supervised" | "ssl" | "control"
    base: str | None = None
    term: str = "none"
    blocks: tuple[int, ...] = (1, 2, 3, 4)
    term_overrides: Mapping = field(default_factory=dict)

    @property
    def is_ssl(self) -> bool:
        return self.kind == "ssl"

    @property
    def is_paper(self) -> bool:
        return self.name in PAPER_METHODS


PAPER_METHODS: dict[str, Method] = {
    SUPERVISED: Method(SUPERVISED, "Supervised", "supervised"),
    "moco": Method("moco", "MoCo", "ssl", base="moco", term="none"),
    "moco_mse": Method("moco_mse", "MoCo+MSE", "ssl", base="moco", term="mse"),
    "moco_bt": Method("moco_bt", "MoCo+BT", "ssl", base="moco", term="bt"),
}
CONTROL = Method(RANDOM_INIT, "Random init", "control")

BASE_DISPLAY = {"moco": "MoCo", "byol": "BYOL"}
TERM_DISPLAY = {"none": "", "mse": "MSE", "bt": "BT"}


def variant(name: str, spec: Mapping) -> Method:
    """A user variant from its config entry (already schema-validated)."""
    base, term = spec["base"], spec["term"]
    blocks = tuple(sorted(spec["blocks"]))
    overrides = {k: spec[k] for k in ("weights", "pool", "projector", "lambda_on",
                                      "lambda_off", "scale") if spec.get(k) is not None}
    if spec.get("weight") is not None:
        overrides["weights"] = [float(spec["weight"])] * 4
    display = spec.get("display") or default_display(base, term, blocks, overrides)
    return Method(name, display, "ssl", base=base, term=term, blocks=blocks,
                  term_overrides=overrides)


def default_display(base: str, term: str, blocks, overrides: Mapping) -> str:
    """``MoCo+MSE[b3]`` / ``BYOL+BT`` / ``MoCo+MSE λ=1`` from a variant's fields."""
    text = BASE_DISPLAY[base] + (f"+{TERM_DISPLAY[term]}" if term != "none" else "")
    if term != "none" and tuple(blocks) != (1, 2, 3, 4):
        text += "[b" + "".join(str(b) for b in blocks) + "]"
    weights = overrides.get("weights")
    if weights is not None and len(set(weights)) == 1:
        text += f" λ={weights[0]:g}"
    return text


# ------------------------------------------------------------------ tables and figures

@dataclass(frozen=True)
class TableSpec:
    """How one result table is keyed and rendered. ``better``: which estimate is best
    (``max``, ``min``) or ``None`` where "best" means nothing (CKA, differences)."""

    name: str
    rows: tuple[str, ...]
    scale: float
    digits: int
    better: str | None
    caption: str  # ``{level}`` is replaced by the configured interval level (e.g. 95)
    report: bool = True


TABLES: dict[str, TableSpec] = {t.name: t for t in (
    TableSpec("finetune", ("dataset", "metric", "fraction"), 100, 1, "max",
              "Fine-tuned test metric (x100) with {level} % CI, by label fraction"),
    TableSpec("linear_probe", ("dataset", "metric"), 100, 1, "max",
              "Linear probe on frozen block-4 features (x100) with {level} % CI"),
    TableSpec("layer_probe", ("dataset", "metric", "block"), 100, 1, "max",
              "Layer-wise linear probes on frozen block 1-4 features (x100) with {level} % CI"),
    TableSpec("feature_reuse", ("dataset", "fraction", "block"), 1, 3, None,
              "Feature reuse: CKA between the pretrained and the fine-tuned encoder per "
              "block, {level} % interval over test subsets"),
    TableSpec("ks_distance", ("dataset", "reference", "fraction"), 1, 3, "min",
              "KS distance of test probabilities to the reference model fine-tuned on "
              "100 % labels (lower = closer)"),
    TableSpec("paired_difference", ("dataset", "metric", "fraction", "baseline"), 100, 1,
              None, "Difference to the baseline method on the same test patients (x100), "
                    "paired {level} % interval"),
    TableSpec("paper_comparison", ("dataset", "table", "fraction", "block"), 100, 1, None,
              "This run beside the published values (x100)"),
)}

# Per-dataset figures, in report order.
FIGURES = ("finetune", "layer_probe", "feature_reuse", "ks_cdf", "pretrain_loss",
           "paired_difference")


# ------------------------------------------------------------------ label fractions and runs

def pct_name(pct: float) -> str:
    """1 -> '1', 6.0 -> '6', 0.5 -> '0.5' (the suffix of ``labeled_<pct>``)."""
    return f"{float(pct):g}"


def fraction_column(pct: float) -> str:
    """The ``split.csv`` column of a label fraction: ``labeled_<pct>``."""
    return f"labeled_{pct_name(pct)}"


def run_key(kind: str, method: str, pct: float | str, seed: int) -> str:
    """The name of one run's file among a rule's inputs, e.g. ``predictions:moco:6:0``."""
    return f"{kind}:{method}:{float(pct):g}:{int(seed)}"


def parse_run_key(key: str) -> tuple[str, str, float, int]:
    """(kind, method, fraction, seed) of :func:`run_key`."""
    kind, method, pct, seed = key.split(":")
    return kind, method, float(pct), int(seed)


def runs_by_key(named_inputs, *kinds: str) -> dict[tuple[str, float, int], tuple]:
    """``{(method, fraction, seed): (path of kinds[0], path of kinds[1], ...)}`` from a
    rule's named inputs (``snakemake.input.items()``)."""
    found: dict[tuple, dict] = {}
    for key, path in named_inputs:
        if key.count(":") != 3:
            continue
        kind, method, pct, seed = parse_run_key(key)
        if kind in kinds:
            found.setdefault((method, pct, seed), {})[kind] = str(path)
    return {k: tuple(v[kind] for kind in kinds) for k, v in found.items()}
