"""The registry of backbones: the networks ``pretrain.arch``, ``finetune.arch`` and a
variant's ``arch`` name.

A backbone returns its pooled embedding and its four stage outputs (block 1-4), which is
what the intermediate terms and the layer-wise probes read. An entry names the
``module:callable`` that builds the networks of one family
(``builder(arch, in_channels, zero_init_residual, norm_layer=None)``) and the names it
builds: a list (torchvision's ResNets), or every name with a prefix (``timm:<model>``, any
model timm builds with ``features_only=True``). ``check`` refuses, at dry-run, a name or a
combination its family cannot build.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ilmoco.config.settings.backbone import BackboneRef
from ilmoco.io import ConfigError, write_json
from ilmoco.optional import installed, needs


@dataclass(frozen=True)
class BackboneFamily:
    name: str
    builder: str
    archs: tuple[str, ...] = ()  # exact names
    pattern: str | None = None  # or every name matching this (the schema's pattern)
    # (arch, config key, the BatchNorm an SSL base asks for) -> None, raising ConfigError
    check: Callable[[str, str, str], None] | None = field(default=None, repr=False)

    def builds(self, arch: str) -> bool:
        return arch in self.archs or bool(self.pattern and re.fullmatch(self.pattern, arch))


def passed_checks() -> Path:
    """Where the timm checks that passed are remembered (by timm version, model and bn):
    importing timm and torch costs seconds, and every ``snakemake`` call resolves the run."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ilmoco" / "timm-checks.json"


def check_timm(arch: str, where: str, bn: str = "global") -> None:
    """timm is installed, knows the model and gives four feature stages of it; MoCo's
    ``bn: split`` / ``sync`` replace BatchNorm2d layers, which a model whose BatchNorm
    carries its activation (timm's BatchNormAct2d: EfficientNet, RegNet...) does not
    have."""
    if not installed("timm"):
        raise ConfigError(where, f"{arch!r} needs {needs('timm')}")
    key = f"{metadata.version('timm')} {arch} {bn in ('split', 'sync')}"
    try:
        passed = set(json.loads(passed_checks().read_text()))
    except (OSError, ValueError):
        passed = set()
    if key in passed:
        return
    run_timm_check(arch, where, bn)
    with contextlib.suppress(OSError):  # a cache only
        write_json(passed_checks(), sorted(passed | {key}))


def run_timm_check(arch: str, where: str, bn: str) -> None:
    import timm
    import torch

    name = arch.removeprefix("timm:")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        raise ConfigError(where, f"{name!r} is not a timm model" +
                          (f" (similar: {', '.join(close)})" if close else ""))
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            net = timm.create_model(name, pretrained=False, features_only=True,
                                    out_indices=4)
    except Exception as e:  # timm's reasons vary; the message names it
        raise ConfigError(where, f"timm cannot build {name} with features_only=True and "
                          f"four stages ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if bn in ("split", "sync"):
        fused = sorted({type(m).__name__ for m in net.modules()
                        if isinstance(m, torch.nn.BatchNorm2d)
                        and type(m) is not torch.nn.BatchNorm2d})
        if fused:
            raise ConfigError("pretrain.moco.bn", f"{bn} replaces the BatchNorm2d layers of "
                              f"the backbone, but {arch} normalises with {fused[0]}; use "
                              "bn: global for it")


BACKBONES: dict[str, BackboneFamily] = {f.name: f for f in (
    BackboneFamily("torchvision_resnet", "ilmoco.models.resnet:ResNetBackbone",
                   archs=("resnet18", "resnet34", "resnet50")),
    BackboneFamily("timm", "ilmoco.models.timm_backbone:TimmBackbone",
                   pattern=r"^timm:[A-Za-z0-9_.]+$", check=check_timm),
)}


def known_archs() -> list[str]:
    return [a for f in BACKBONES.values() for a in f.archs]


def arch_patterns() -> list[str]:
    return [f.pattern for f in BACKBONES.values() if f.pattern]


def family_of(arch: str) -> BackboneFamily:
    """The family that builds ``arch`` (the schema has already refused unknown names)."""
    for family in BACKBONES.values():
        if family.builds(arch):
            return family
    raise KeyError(f"unknown backbone {arch!r}; known: {known_archs()} and {arch_patterns()}")


def backbone_ref(arch: str) -> BackboneRef:
    """The builder of ``arch``."""
    return BackboneRef(arch, family_of(arch).builder)
