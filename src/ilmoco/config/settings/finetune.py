"""``finetune``: the settings of a fine-tuning and one job's run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ilmoco.config.augment import AugmentSpec
from ilmoco.config.settings.backbone import BackboneRef
from ilmoco.config.settings.fields import added, execution
from ilmoco.config.settings.training import TrainingSettings


@dataclass(frozen=True)
class FinetuneSettings(TrainingSettings):
    patience: int
    min_steps_per_epoch: int
    augment: bool
    epochs_by_fraction: Mapping  # fraction ("100") -> maximum epochs; else ``epochs``
    # BatchNorm statistics recomputed with the epoch's final weights on the labelled images
    # before each validation and the test (precise BN); false: the running averages of
    # training, as the official code (stale after few steps of large updates)
    precise_bn: bool = added(False)

    def epochs_at(self, pct: float) -> int:
        """The maximum epochs of a run at label fraction ``pct``."""
        hits = [v for k, v in self.epochs_by_fraction.items() if float(k) == float(pct)]
        return int(hits[0]) if hits else self.epochs


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning (its augmentation is that of its label fraction)."""

    dataset: str
    method: str
    metric: str
    augment: AugmentSpec | None
    settings: FinetuneSettings
    backbone: BackboneRef = execution()
    # the validation score that selects the epoch (None: the metric's own, see
    # evaluation.metrics.selection_metric; "auc_raw_logit": the official retina code's)
    select_metric: str | None = added(None)
