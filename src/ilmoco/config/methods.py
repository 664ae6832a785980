"""Methods: the named ways to obtain an encoder, and their display names.

* ``supervised`` - random initialisation, fine-tuned on the labels (the paper's baseline);
* ``imagenet`` - initialised from a local weights file (``init.weights``: ImageNet weights
  of torchvision or timm), fine-tuned and probed like a pretrained encoder (the reference
  of transfer learning);
* an SSL variant - a base (:mod:`ilmoco.config.bases`), an intermediate term
  (:mod:`ilmoco.config.terms`) on some of the blocks 1-4, and term settings, optionally its
  own backbone (``arch``) and a starting point (``init``: ``imagenet`` or a weights file);
  the paper's ``moco``, ``moco_mse`` and ``moco_bt`` are predefined variants, users add
  more under ``variants:`` in the config;
* ``random_init`` - a randomly initialised encoder that is only probed: the standard control
  of layer-wise probing.

Used when the workflow plans the run (no stage imports it), so renaming a method's display
name reruns only the tables and figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ilmoco.config.bases import BASES
from ilmoco.config.terms import TERMS
from ilmoco.names import IMAGENET, RANDOM_INIT, SUPERVISED


@dataclass(frozen=True)
class Method:
    """A named way to obtain an encoder (see the module docstring).

    ``term_overrides`` are settings of the term that replace ``pretrain.<term>`` for this
    method (e.g. ``{"weights": [1, 1, 1, 1]}``); ``blocks`` are the blocks (1-4) the term
    applies to. ``arch`` is the method's own backbone (None: ``pretrain.arch`` for SSL, else
    ``finetune.arch``); ``init`` its starting point: ``random``, ``imagenet`` (the file
    ``init.weights``) or a mapping ``{weights: PATH, mean, std}`` of its own.
    """

    name: str
    display: str
    kind: str  # "supervised" | "ssl" | "weights" (from a weights file) | "control"
    base: str | None = None
    term: str = "none"
    blocks: tuple[int, ...] = (1, 2, 3, 4)
    term_overrides: Mapping = field(default_factory=dict)
    arch: str | None = None
    init: str | Mapping = "random"

    @property
    def is_ssl(self) -> bool:
        return self.kind == "ssl"

    @property
    def has_encoder(self) -> bool:
        """Fine-tuned from an encoder file (pretrained, or made from a weights file), which
        is probed and compared with its fine-tuned models (CKA)."""
        return self.kind in ("ssl", "weights")

    @property
    def is_paper(self) -> bool:
        return self.name in PAPER_METHODS


PAPER_METHODS: dict[str, Method] = {
    SUPERVISED: Method(SUPERVISED, "Supervised", "supervised"),
    "moco": Method("moco", "MoCo", "ssl", base="moco", term="none"),
    "moco_mse": Method("moco_mse", "MoCo+MSE", "ssl", base="moco", term="mse"),
    "moco_bt": Method("moco_bt", "MoCo+BT", "ssl", base="moco", term="bt"),
}
# References beside the paper's methods, listed under `methods` like them.
REFERENCE_METHODS: dict[str, Method] = {
    IMAGENET: Method(IMAGENET, "ImageNet", "weights", init="imagenet"),
}
PREDEFINED: dict[str, Method] = {**PAPER_METHODS, **REFERENCE_METHODS}
CONTROL = Method(RANDOM_INIT, "Random init", "control")


def variant(name: str, spec: Mapping) -> Method:
    """A user variant from its config entry (already schema-validated)."""
    base, term = spec["base"], spec["term"]
    blocks = tuple(sorted(spec["blocks"]))
    reserved = {"base", "term", "blocks", "weight", "display", "arch", "init"}
    overrides = {k: v for k, v in spec.items() if k not in reserved and v is not None}
    if spec.get("weight") is not None:
        overrides["weights"] = [float(spec["weight"])] * 4
    arch, init = spec.get("arch"), spec.get("init", "random")
    display = spec.get("display") or default_display(base, term, blocks, overrides, arch,
                                                     init)
    return Method(name, display, "ssl", base=base, term=term, blocks=blocks,
                  term_overrides=overrides, arch=arch, init=init)


def default_display(base: str, term: str, blocks, overrides: Mapping, arch: str | None = None,
                    init: str | Mapping = "random") -> str:
    """``MoCo+MSE[b3]`` / ``BYOL+BT`` / ``MoCo+MSE λ=1`` / ``MoCo+BT resnet18d`` /
    ``MoCo from ImageNet`` from a variant's fields."""
    text = BASES[base].display + (f"+{TERMS[term].abbreviation}" if term != "none" else "")
    if term != "none" and tuple(blocks) != (1, 2, 3, 4):
        text += "[b" + "".join(str(b) for b in blocks) + "]"
    weights = overrides.get("weights")
    if weights is not None and len(set(weights)) == 1:
        text += f" λ={weights[0]:g}"
    if arch is not None:
        text += " " + arch.split(":")[-1]
    if init == "imagenet":
        text += " from ImageNet"
    elif isinstance(init, Mapping):
        text += f" from {Path(init['weights']).stem}"
    return text
