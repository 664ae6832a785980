"""``pretrain``: the settings of a pretraining and one job's run."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from ilmoco.config.augment import AugmentSpec
from ilmoco.config.settings.backbone import BackboneRef, InitWeights
from ilmoco.config.settings.fields import added, execution
from ilmoco.config.settings.training import TrainingSettings


@dataclass(frozen=True)
class KnnSettings:
    enabled: bool
    k: int
    temperature: float
    bank_images: int


@dataclass(frozen=True)
class PretrainSettings(TrainingSettings):
    """``pretrain`` without the sections of the bases and terms (those resolve into each
    run's ``base_settings`` and ``term``)."""

    # also "with_term": only methods with an intermediate term (the official scripts);
    # each run's settings hold the resolved bool (RunSettings.pretrain_run)
    zero_init_residual: bool | str
    seed: int
    val_max_images: int | None  # None: the whole validation set
    select: str  # "last" epoch, or the epoch of lowest validation loss ("val_loss")
    knn: KnnSettings
    # "augmented": two augmented views of each validation image; "identical": the image
    # itself twice, un-augmented (the official Moco2EvalTransforms)
    val_views: str = added("augmented")


@dataclass(frozen=True)
class TermSpec:
    """A pretraining's intermediate term, fully resolved: its kind, its settings (those of
    the kind, per-block weights set to 0 on unused blocks; None for ``none``) and the
    ``module:Class`` implementing it."""

    kind: str
    settings: typing.Any
    model: str = execution()

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(self.settings.weights) if self.settings is not None else (0.0,) * 4


@dataclass(frozen=True)
class PretrainRun:
    """Everything one pretraining job needs besides its file paths."""

    dataset: str
    method: str
    base: str
    base_settings: typing.Any  # the base's settings (config.bases)
    metric: str  # the dataset's, for the kNN monitor
    term: TermSpec
    augment: AugmentSpec
    settings: PretrainSettings
    base_model: str = execution()  # module:Class of the base
    backbone: BackboneRef = execution()
    init: InitWeights | None = None  # None: the builder's random initialisation
