"""``cka``: the settings of the feature-reuse analysis and one job's run."""

from __future__ import annotations

from dataclasses import dataclass

from ilmoco.config.settings.fields import added, execution


@dataclass(frozen=True)
class CKASettings:
    kernel: str  # linear | rbf (median bandwidth x rbf_scale) | rbf_fixed (sigma)
    sigma: float
    rbf_scale: float
    subset: int
    repeats: int
    seed: int
    numerics: str = added("native")  # the top-level `numerics` (ilmoco.numerics)


@dataclass(frozen=True)
class CKARun:
    settings: CKASettings
    level: float  # the interval level (bootstrap.level)
    precision: str
    device: str = execution()
