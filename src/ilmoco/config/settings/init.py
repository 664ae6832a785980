"""``init``: the stock weights of the ``imagenet`` method, and its encoder's run."""

from __future__ import annotations

from dataclasses import dataclass

from ilmoco.config.settings.backbone import BackboneRef, InitWeights
from ilmoco.config.settings.fields import execution


@dataclass(frozen=True)
class InitSettings:
    """``init``: the weights file of the ``imagenet`` method and of variants with ``init:
    imagenet``, and the input normalisation they were trained with."""

    weights: str | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class InitRun:
    """An encoder made from a weights file without training (the ``imagenet`` method)."""

    dataset: str
    method: str
    arch: str
    init: InitWeights
    backbone: BackboneRef = execution()
