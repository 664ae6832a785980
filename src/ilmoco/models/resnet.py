"""torchvision ResNets as backbones: an explicit forward that also returns the block 1-4
outputs.

No forward hooks, so ``torch.compile`` traces one graph. Grayscale data (chest X-rays) use
a 1-channel stem (``conv1`` with one input channel) rather than repeating the channel three
times: the same function class for a third of the stem's cost; 3-channel data keep the
torchvision stem. State-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1``...)
minus ``fc``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ResNetBackbone(nn.Module):
    library = "torchvision"

    def __init__(
        self, arch: str = "resnet18", in_channels: int = 3, zero_init_residual: bool = True,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        import torchvision.models  # imported here: it costs ~1 s, and not every job needs it

        if not (arch.startswith("resnet") and hasattr(torchvision.models, arch)):
            raise ValueError(f"{arch!r} is not a torchvision ResNet")

        net = getattr(torchvision.models, arch)(
            weights=None, zero_init_residual=zero_init_residual, norm_layer=norm_layer
        )
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.arch, self.in_channels, self.stock_name = arch, in_channels, arch
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

    def stock_keys(self) -> dict[str, str]:
        """Own state-dict key -> the key of ``torchvision.models.<arch>()``: the same."""
        return {k: k for k in self.state_dict()}

    def stock_head_keys(self) -> set[str]:
        return {"fc.weight", "fc.bias"}
