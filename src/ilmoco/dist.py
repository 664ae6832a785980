"""Data-parallel helpers: process-group setup, gathers, and a BatchNorm synchronised across ranks.

Single-process runs never touch ``torch.distributed``: every helper is the identity there.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def init_from_env(device_type: str) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); NCCL on GPU, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_dist():
        return is_dist()
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return True


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks in rank order (no gradient)."""
    if not is_dist():
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks; gradients flow back to each rank's own slice."""
    if not is_dist():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()))


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    if not is_dist():
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x)


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose batch statistics are computed over all ranks (any device, gloo too).

    ``torch.nn.SyncBatchNorm`` only runs on accelerators; this one all-reduces the per-channel
    sum and sum of squares with an autograd-aware all_reduce, so it also runs on CPU.
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not is_dist():
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x if x.dtype == torch.float64 else x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], device=x.device, dtype=xf.dtype)
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        stats = all_reduce_sum_with_grad(stats)
        c = xf.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
            self.num_batches_tracked += 1
        y = (xf - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm with a cross-rank one (torch's on CUDA, ours elsewhere)."""
    if next(module.parameters()).device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_sync(module)


def _to_sync(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module,
                                                                              SyncBatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
    for name, child in module.named_children():
        out.add_module(name, _to_sync(child))
    return out
