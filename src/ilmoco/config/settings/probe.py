"""``probe``: the settings of layer-wise probing and one job's run."""

from __future__ import annotations

from dataclasses import dataclass

from ilmoco.config.augment import AugmentSpec
from ilmoco.config.settings.backbone import BackboneRef
from ilmoco.config.settings.bootstrap import BootstrapSettings
from ilmoco.config.settings.fields import added, execution


@dataclass(frozen=True)
class ProbeSettings:
    fraction: float
    include_supervised: bool
    supervised_reference: str  # "probe" the fine-tuned model, or its "finetune" result
    random_init: bool
    epochs: int
    patience: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    # "frozen": features extracted once in eval mode, standardised, early stopping;
    # "official": the official probing code (see ilmoco.stages.probe)
    protocol: str = added("frozen")
    # the linear-probe table: the block-4 row of layer probing ("layer") or the official
    # Table 1 probe, fine_tune_mocov2.py --only-ll ("only_ll", ilmoco.stages.linear_probe)
    linear: str = added("layer")
    numerics: str = added("native")  # the top-level `numerics` (ilmoco.numerics)


@dataclass(frozen=True)
class ProbeRun:
    dataset: str
    method: str
    metric: str
    arch: str
    settings: ProbeSettings
    bootstrap: BootstrapSettings
    device: str = execution()
    precision: str = "auto"
    backbone: BackboneRef | None = execution(default=None)
    # the official protocol's training augmentation (None: no augmentation)
    augment: AugmentSpec | None = added(None)
