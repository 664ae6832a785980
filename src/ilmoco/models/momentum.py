"""The momentum (EMA) encoder shared by MoCo and BYOL: its update and its schedule."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_copy(online: nn.Module) -> nn.Module:
    """A frozen copy of ``online`` to be updated by EMA only."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """θ_target ← m·θ_target + (1 − m)·θ_online for every parameter, as two fused
    multi-tensor ops (no per-parameter kernel launches)."""
    tp = [p.data for p in target.parameters()]
    op = [p.data for p in online.parameters()]
    torch._foreach_mul_(tp, m)
    torch._foreach_add_(tp, op, alpha=1 - m)


def momentum_at(step: int, total_steps: int, base: float, schedule: str) -> float:
    """EMA coefficient: constant, or cosine from ``base`` to 1 over training (BYOL-style)."""
    if schedule == "constant" or total_steps <= 1:
        return base
    return 1 - (1 - base) * (math.cos(math.pi * step / total_steps) + 1) / 2
