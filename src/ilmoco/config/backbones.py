"""The registry of backbones: the networks ``pretrain.arch`` and ``finetune.arch`` name.

A backbone returns its pooled embedding and its four stage outputs (block 1-4), which is
what the intermediate terms and the layer-wise probes read. An entry names the
``module:callable`` that builds the networks of one family
(``builder(arch, in_channels, zero_init_residual, norm_layer=None)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ilmoco.config.settings import BackboneRef


@dataclass(frozen=True)
class BackboneFamily:
    name: str
    builder: str
    archs: tuple[str, ...]


BACKBONES: dict[str, BackboneFamily] = {f.name: f for f in (
    BackboneFamily("torchvision_resnet", "ilmoco.models.resnet:ResNetBackbone",
                   ("resnet18", "resnet34", "resnet50")),
)}


def known_archs() -> list[str]:
    return [a for f in BACKBONES.values() for a in f.archs]


def backbone_ref(arch: str) -> BackboneRef:
    """The builder of ``arch`` (the schema has already refused unknown names)."""
    for family in BACKBONES.values():
        if arch in family.archs:
            return BackboneRef(arch, family.builder)
    raise KeyError(f"unknown backbone {arch!r}; known: {known_archs()}")
