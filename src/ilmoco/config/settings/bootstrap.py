"""``bootstrap``: the intervals of every evaluated score (evaluation, probes, paired)."""

from __future__ import annotations

from dataclasses import dataclass

from ilmoco.config.settings.fields import added


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int
    seed: int
    level: float
    paper_interval: bool  # also report the official mean ± 1.96·sd/√B
    # sd of that interval over the B metric replicates ("replicates"), or over the B x L
    # array of per-label values ("labels": the official chest code, between-label spread)
    paper_interval_spread: str = added("replicates")
    numerics: str = added("native")  # the top-level `numerics` (ilmoco.numerics)
