"""timm models as backbones (``arch: timm:<name>``): ``features_only=True`` gives the outputs
of the last four feature stages, which are block 1-4; the embedding is the global average
of block 4 (as in timm's own classifier heads and the torchvision ResNets here).

* Grayscale data get a 1-channel stem (timm's ``in_chans``).
* ``zero_init_residual`` is timm's ``zero_init_last`` (the last norm of each residual
  branch at zero) in the families that have it (ResNet, ResNet-D, RegNet...); the others
  (ConvNeXt, whose layer scale of 1e-6 already starts each block near the identity,
  EfficientNet...) are built as timm builds them.
* A base's ``norm_layer`` (MoCo's SplitBatchNorm) replaces every ``BatchNorm2d`` with its
  state; a model whose BatchNorm carries its activation (BatchNormAct2d) is refused (and at
  dry-run, by the registry's check).
* Nothing downloads: ``pretrained=False`` always; weights come from local files
  (:mod:`ilmoco.models.weights`).

The module keys are those of timm's features-only wrapper, under ``body.``; ``stock_keys``
maps them to the keys of ``timm.create_model(name)``, the names a timm user loads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def create_features(name: str, in_channels: int, zero_init_residual: bool) -> nn.Module:
    import timm

    kwargs = dict(pretrained=False, features_only=True, in_chans=in_channels, out_indices=4)
    try:
        return timm.create_model(name, zero_init_last=zero_init_residual, **kwargs)
    except TypeError as e:
        if "zero_init_last" not in str(e):
            raise
        return timm.create_model(name, **kwargs)  # a family without zero-init of residuals


def replace_batchnorm(module: nn.Module, norm_layer: Callable[[int], nn.Module],
                      arch: str) -> None:
    """Every ``nn.BatchNorm2d`` below ``module`` replaced by ``norm_layer(C)`` holding its
    state (zero-initialised residual norms stay at zero) and hyper-parameters."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = norm_layer(child.num_features)
            new.eps, new.momentum = child.eps, child.momentum
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        elif isinstance(child, nn.BatchNorm2d):
            raise ValueError(f"{arch} normalises with {type(child).__name__}, which "
                             "pretrain.moco.bn: split or sync cannot replace; use bn: global")
        else:
            replace_batchnorm(child, norm_layer, arch)


class TimmBackbone(nn.Module):
    library = "timm"

    def __init__(self, arch: str = "timm:resnet18d", in_channels: int = 3,
                 zero_init_residual: bool = True,
                 norm_layer: Callable[[int], nn.Module] | None = None):
        super().__init__()
        if not arch.startswith("timm:"):
            raise ValueError(f"{arch!r} is not a timm backbone name (timm:<model>)")
        self.arch, self.in_channels = arch, in_channels
        self.stock_name = arch.removeprefix("timm:")
        self.body = create_features(self.stock_name, in_channels, zero_init_residual)
        if norm_layer is not None:
            replace_batchnorm(self.body, norm_layer, arch)
        self.block_dims = tuple(self.body.feature_info.channels())
        self.out_dim = self.block_dims[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Return the pooled embedding (N, D) and the four block outputs (N, C_i, H_i, W_i)."""
        blocks = tuple(self.body(x))
        return blocks[-1].mean(dim=(2, 3)), blocks

    def stock_layout(self) -> tuple[dict[str, torch.Size], set[str]]:
        """The shapes of ``timm.create_model(name, in_chans=C)``'s trunk (up to block 4) and
        the keys of what follows it (the classifier, and e.g. EfficientNet's conv_head):
        what ``prune_intermediate_layers(4, prune_head=True)`` removes."""
        import timm

        with torch.device("meta"):
            full = timm.create_model(self.stock_name, pretrained=False,
                                     in_chans=self.in_channels)
        every = set(full.state_dict())
        full.prune_intermediate_layers(indices=4, prune_head=True)
        trunk = {k: v.shape for k, v in full.state_dict().items()}
        return trunk, every - set(trunk)

    def stock_keys(self) -> dict[str, str]:
        """Own state-dict key -> the key of ``timm.create_model(name)``. The features-only
        wrapper flattens the model's first-level Sequentials (``stem.0`` -> ``stem_0``), so
        keys are matched with '.' and '_' made equal, and every match is checked by shape."""
        trunk, _ = self.stock_layout()
        by_flat = {k.replace(".", "_"): k for k in trunk}
        out = {}
        for key, value in self.state_dict().items():
            inner = key.removeprefix("body.")
            stock = by_flat.get(inner.replace(".", "_"))
            if stock is None or trunk[stock] != value.shape:
                raise ValueError(f"{self.arch}: no key of timm.create_model({self.stock_name!r}) "
                                 f"matches {inner!r} {tuple(value.shape)}")
            out[key] = stock
        if len(set(out.values())) != len(out) or set(out.values()) != set(trunk):
            raise ValueError(f"{self.arch}: its keys do not map one to one onto those of "
                             f"timm.create_model({self.stock_name!r})")
        return out

    def stock_head_keys(self) -> set[str]:
        return self.stock_layout()[1]
