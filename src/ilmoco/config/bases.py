"""The registry of self-supervised bases: one entry per base, with its settings.

An entry names the ``module:Class`` of the model (a subclass of
:class:`ilmoco.models.bases.base.SSLBase`), the settings it reads (the config section
``pretrain.<name>``: the dataclass here, the keys in the schema), its cost per image pair
for runtime requests, and the base loss it logs (for figures). Adding a base is its model
module, one entry here and its schema section. Stages never import this module: a job
imports the model its run names, so adding a base reruns no other base's jobs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ilmoco.io import ConfigError


@dataclass(frozen=True)
class MoCoSettings:
    dim: int
    queue_size: int
    momentum: float
    momentum_schedule: str
    temperature: float
    head: str
    bn: str
    bn_splits: int


@dataclass(frozen=True)
class BYOLSettings:
    dim: int
    hidden: int
    predictor_hidden: int
    momentum: float
    momentum_schedule: str


@dataclass(frozen=True)
class SimSiamSettings:
    dim: int
    hidden: int
    predictor_hidden: int


@dataclass(frozen=True)
class BaseSpec:
    """One self-supervised base.

    ``losses`` maps the base-loss column the model logs to its label in the loss figure;
    ``chance(settings) -> (value, label)`` gives that loss for an encoder that has learned
    nothing (a line in the figure), or is None; ``check`` refuses settings the schema
    cannot refuse alone (``(base settings, PretrainSettings) -> None``, raising
    ConfigError)."""

    name: str
    display: str
    model: str
    settings: type
    cost: float  # training passes per pair, relative to MoCo (runtime requests)
    losses: Mapping[str, str]
    chance: Callable | None = None
    check: Callable | None = field(default=None, repr=False)


def check_moco(s: MoCoSettings, pre) -> None:
    if s.bn == "split" and pre.batch_size % s.bn_splits:
        raise ConfigError("pretrain.moco.bn_splits", f"{s.bn_splits} does not divide "
                          f"pretrain.batch_size {pre.batch_size}")
    if s.bn == "split" and s.head == "mlp_bn" and pre.batch_size // s.bn_splits < 2:
        # BatchNorm1d in the head has no spatial positions: one sample per split cannot train
        raise ConfigError("pretrain.moco.bn_splits", f"{s.bn_splits} splits of "
                          f"pretrain.batch_size {pre.batch_size} leave one image per split "
                          "for the mlp_bn head's BatchNorm; use fewer splits")
    if s.queue_size < pre.batch_size:
        raise ConfigError("pretrain.moco.queue_size", "must be at least pretrain.batch_size")


BASES: dict[str, BaseSpec] = {b.name: b for b in (
    BaseSpec("moco", "MoCo", "ilmoco.models.bases.moco:MoCo", MoCoSettings, cost=1.0,
             losses={"infonce": "InfoNCE"},
             chance=lambda s: (math.log(s.queue_size + 1), f"chance ln({s.queue_size}+1)"),
             check=check_moco),
    # both views through both networks: twice MoCo's passes
    BaseSpec("byol", "BYOL", "ilmoco.models.bases.byol:BYOL", BYOLSettings, cost=2.0,
             losses={"byol": "BYOL loss"}),
    # both views through one network with gradients: 1.5x MoCo's passes; no queue, no EMA
    BaseSpec("simsiam", "SimSiam", "ilmoco.models.bases.simsiam:SimSiam", SimSiamSettings,
             cost=1.5, losses={"simsiam": "SimSiam loss (−cos)"}),
)}
