"""A backbone by name and builder, and the stock weights it may start from (pretraining,
fine-tuning, probing and the ``imagenet`` method all build one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneRef:
    """A network by its config name and the ``module:callable`` that builds it
    (``builder(arch, in_channels, zero_init_residual, norm_layer=None)``)."""

    arch: str
    builder: str


@dataclass(frozen=True)
class InitWeights:
    """A backbone's starting point: a local file of a stock model's weights (torchvision or
    timm layout) and the (mean, std) its inputs were normalised with, folded into the
    stem."""

    weights: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
