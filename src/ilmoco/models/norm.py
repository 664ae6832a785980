"""BatchNorm variants of the self-supervised bases: SplitBatchNorm (the MoCo authors'
single-GPU emulation of multi-GPU shuffle-BN) and the norm layers each ``bn`` setting
selects."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics come from ``num_splits`` interleaved sub-batches.

    Sample n belongs to sub-batch n mod num_splits; running statistics are the average over
    sub-batches. Same parameters and state-dict keys as ``nn.BatchNorm2d``.
    """

    def __init__(self, num_features: int, num_splits: int = 8, **kwargs):
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.num_splits
        if not self.training or s == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        rm, rv = self.running_mean.repeat(s), self.running_var.repeat(s)
        y = F.batch_norm(
            x.reshape(n // s, s * c, h, w), rm, rv, self.weight.repeat(s), self.bias.repeat(s),
            True, self.momentum if self.momentum is not None else 0.1, self.eps,
        ).reshape(n, c, h, w)
        with torch.no_grad():
            self.running_mean.copy_(rm.view(s, c).mean(0))
            self.running_var.copy_(rv.view(s, c).mean(0))
            self.num_batches_tracked += 1
        return y


class SplitBatchNorm1d(SplitBatchNorm):
    """SplitBatchNorm for (N, C) inputs: the hidden layer of an ``mlp_bn`` projection head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[:, :, None, None])[:, :, 0, 0]


def norm_layer_1d(bn: str, bn_splits: int) -> Callable[[int], nn.Module]:
    """The BatchNorm of an SSL head's hidden layer, matching the backbone's ``bn``."""
    if bn == "split":
        return lambda c: SplitBatchNorm1d(c, num_splits=bn_splits)
    return nn.BatchNorm1d


def norm_layer(bn: str, bn_splits: int) -> Callable[[int], nn.Module] | None:
    """The BatchNorm of an SSL backbone: ``split`` (SplitBatchNorm) or torchvision's."""
    if bn == "split":
        return lambda c: SplitBatchNorm(c, num_splits=bn_splits)
    return None
