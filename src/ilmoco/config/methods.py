"""Methods: the named ways to obtain an encoder, and their display names.

* ``supervised`` - random initialisation, fine-tuned on the labels (the paper's baseline);
* an SSL variant - a base (:mod:`ilmoco.config.bases`), an intermediate term
  (:mod:`ilmoco.config.terms`) on some of the blocks 1-4, and term settings; the paper's
  ``moco``, ``moco_mse`` and ``moco_bt`` are predefined variants, users add more under
  ``variants:`` in the config;
* ``random_init`` - a randomly initialised encoder that is only probed: the standard control
  of layer-wise probing.

Used when the workflow plans the run (no stage imports it), so renaming a method's display
name reruns only the tables and figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ilmoco.config.bases import BASES
from ilmoco.config.terms import TERMS
from ilmoco.names import RANDOM_INIT, SUPERVISED


@dataclass(frozen=True)
class Method:
    """A named way to obtain an encoder (see the module docstring).

    ``term_overrides`` are settings of the term that replace ``pretrain.<term>`` for this
    method (e.g. ``{"weights": [1, 1, 1, 1]}``); ``blocks`` are the blocks (1-4) the term
    applies to.
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


def variant(name: str, spec: Mapping) -> Method:
    """A user variant from its config entry (already schema-validated)."""
    base, term = spec["base"], spec["term"]
    blocks = tuple(sorted(spec["blocks"]))
    reserved = {"base", "term", "blocks", "weight", "display"}
    overrides = {k: v for k, v in spec.items() if k not in reserved and v is not None}
    if spec.get("weight") is not None:
        overrides["weights"] = [float(spec["weight"])] * 4
    display = spec.get("display") or default_display(base, term, blocks, overrides)
    return Method(name, display, "ssl", base=base, term=term, blocks=blocks,
                  term_overrides=overrides)


def default_display(base: str, term: str, blocks, overrides: Mapping) -> str:
    """``MoCo+MSE[b3]`` / ``BYOL+BT`` / ``MoCo+MSE λ=1`` from a variant's fields."""
    text = BASES[base].display + (f"+{TERMS[term].abbreviation}" if term != "none" else "")
    if term != "none" and tuple(blocks) != (1, 2, 3, 4):
        text += "[b" + "".join(str(b) for b in blocks) + "]"
    weights = overrides.get("weights")
    if weights is not None and len(set(weights)) == 1:
        text += f" λ={weights[0]:g}"
    return text
