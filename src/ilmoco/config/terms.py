"""The registry of intermediate-layer terms: one entry per kind, with its settings.

An entry names the ``module:Class`` of the term (a subclass of
:class:`ilmoco.models.terms.base.IntermediateTerm`), the settings it reads (the config
section ``pretrain.<name>``, which a variant may override key by key), the abbreviation in
default display names (``MoCo+MSE``), and dataset keys that replace a setting for one
dataset (``mse_pool``). A term logs one column per active block, ``<name>_block<i>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MSESettings:
    weights: tuple[float, ...]
    pool: tuple[int | None, ...]


@dataclass(frozen=True)
class BTSettings:
    weights: tuple[float, ...]
    projector: tuple[int, ...]
    lambda_on: float
    lambda_off: float
    scale: float


@dataclass(frozen=True)
class TermKind:
    name: str
    model: str
    settings: type | None  # None: the term has no settings (``none``)
    abbreviation: str = ""
    dataset_keys: Mapping[str, str] = field(default_factory=dict)  # setting -> dataset key


TERMS: dict[str, TermKind] = {t.name: t for t in (
    TermKind("none", "ilmoco.models.terms.base:NoTerm", None),
    TermKind("mse", "ilmoco.models.terms.mse:MSETerm", MSESettings, "MSE",
             {"pool": "mse_pool"}),
    TermKind("bt", "ilmoco.models.terms.bt:BarlowTwinsTerm", BTSettings, "BT"),
)}
