"""torchvision ResNets with an explicit forward that also returns the block 1-4 outputs.

No forward hooks, so ``torch.compile`` traces one graph. Grayscale data (chest X-rays) use
a 1-channel stem (``conv1`` with one input channel) rather than repeating the channel three
times: the same function class for a third of the stem's cost; 3-channel data keep the
torchvision stem. State-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1``...)
minus ``fc``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ARCHS = ("resnet18", "resnet34", "resnet50")


class Backbone(nn.Module):
    def __init__(
        self, arch: str = "resnet18", in_channels: int = 3, zero_init_residual: bool = True,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; known: {ARCHS}")
        import torchvision.models  # imported here: it costs ~1 s, and not every job needs it

        net = getattr(torchvision.models, arch)(
            weights=None, zero_init_residual=zero_init_residual, norm_layer=norm_layer
        )
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.arch, self.in_channels = arch, in_channels
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = net.fc.in_features
        self.block_dims = tuple(
            getattr(self, f"layer{i}")[-1].conv3.out_channels if arch == "resnet50"
            else getattr(self, f"layer{i}")[-1].conv2.out_channels for i in range(1, 5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Return the pooled embedding (N, D) and the four block outputs (N, C_i, H_i, W_i)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        b1 = self.layer1(x)
        b2 = self.layer2(b1)
        b3 = self.layer3(b2)
        b4 = self.layer4(b3)
        return torch.flatten(self.avgpool(b4), 1), (b1, b2, b3, b4)


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


def pooled_blocks(blocks) -> list[torch.Tensor]:
    """Global-average-pooled block outputs, (N, C_i) each."""
    return [b.mean(dim=(2, 3)) for b in blocks]
