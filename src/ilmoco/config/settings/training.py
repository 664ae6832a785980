"""What pretraining and fine-tuning share: the network, the optimisation, the numerics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from ilmoco.config.settings.fields import added, execution


@dataclass(frozen=True)
class OptimizerSettings:
    name: str
    lr: float
    momentum: float
    weight_decay: float
    decay_norm_and_bias: bool  # official code: weight decay on every parameter
    fused: bool  # torch's fused kernel (faster; same update up to rounding)
    schedule: str
    warmup_epochs: float


@dataclass(frozen=True)
class TrainingSettings:
    """What pretraining and fine-tuning share: the network, the optimisation, the numerics,
    and how the stage runs."""

    arch: str
    zero_init_residual: bool
    epochs: int
    batch_size: int
    precision: str
    deterministic: bool
    log_every: int
    augment_overrides: Mapping
    optimizer: OptimizerSettings
    # the top-level `numerics` (ilmoco.numerics): portable pins the CPU kernels; no default
    # here (fields of the subclasses follow), the schema gives it
    numerics: str = added("native", default=dataclasses.MISSING)
    device: str = execution()
    data_placement: str = execution()
    checkpoint_every: int = execution()
    compile: bool = execution()
    channels_last: bool = execution()
    progress: str = execution()
    tensorboard: bool | str = execution()  # TensorBoard event files: auto | true | false
