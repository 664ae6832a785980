"""The official linear probe's run (``probe.linear: only_ll``): a fine-tuning with the
backbone frozen, so its settings are the fine-tuning's."""

from __future__ import annotations

from dataclasses import dataclass

from ilmoco.config.augment import AugmentSpec
from ilmoco.config.settings.backbone import BackboneRef
from ilmoco.config.settings.bootstrap import BootstrapSettings
from ilmoco.config.settings.fields import execution
from ilmoco.config.settings.finetune import FinetuneSettings


@dataclass(frozen=True)
class LinearProbeRun:
    """The official linear probe of Table 1 (``fine_tune_mocov2.py --only-ll``): fine-tuning
    with the backbone frozen under ``no_grad`` but in train mode, so its epochs, batch,
    optimiser and augmentation are the fine-tuning's (``settings``, ``augment``)."""

    dataset: str
    method: str
    metric: str
    arch: str
    fraction: float
    augment: AugmentSpec | None
    settings: FinetuneSettings
    seed: int
    bootstrap: BootstrapSettings
    backbone: BackboneRef = execution()
