"""What every backbone provides, and building one from its registry entry.

A backbone (``ilmoco.config.backbones``) maps images to ``(embedding (N, D), (block1,
block2, block3, block4))`` and exposes ``out_dim`` (D), ``block_dims`` (channels of each
block output), ``arch`` and ``in_channels``. It also names the stock model of its library
that holds the same trunk, for weights in and out (:mod:`ilmoco.models.weights`):
``library`` (``torchvision`` / ``timm``), ``stock_name`` (``resnet50`` /
``convnext_atto``), ``stock_keys()`` (own state-dict key -> the stock model's key) and
``stock_head_keys()`` (the stock model's keys beyond the trunk: the classifier).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ilmoco.imports import load_object


def build_backbone(builder: str, arch: str, in_channels: int, zero_init_residual: bool,
                   norm_layer: Callable[[int], nn.Module] | None = None) -> nn.Module:
    """The backbone ``arch`` from its builder (``module:callable``)."""
    return load_object(builder)(arch, in_channels, zero_init_residual, norm_layer=norm_layer)


def pooled_blocks(blocks) -> list[torch.Tensor]:
    """Global-average-pooled block outputs, (N, C_i) each."""
    return [b.mean(dim=(2, 3)) for b in blocks]
