"""Optimisation: the optimiser of a stage and its learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ilmoco.config.settings.training import OptimizerSettings


def param_groups(modules: nn.Module, weight_decay: float, decay_norm_and_bias: bool
                 ) -> list[dict]:
    """Weight decay on weights; BatchNorm parameters and biases (ndim <= 1) are excluded
    unless ``decay_norm_and_bias`` (the official code decays every parameter)."""
    decay, no_decay = [], []
    for p in modules.parameters():
        if p.requires_grad:
            (decay if decay_norm_and_bias or p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(modules: nn.Module, opt: OptimizerSettings) -> torch.optim.Optimizer:
    groups = param_groups(modules, opt.weight_decay, opt.decay_norm_and_bias)
    # the fused kernel updates every parameter in one pass (per-parameter loops dominate
    # small models' steps on a CPU); torch has one for these three on CPU and CUDA
    kernel = {"fused": True} if opt.fused else {"foreach": False}
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, **kernel)
    if opt.name == "adam":
        return torch.optim.Adam(groups, lr=opt.lr, **kernel)
    if opt.name == "adamw":
        return torch.optim.AdamW(groups, lr=opt.lr, **kernel)
    raise ValueError(f"unknown optimizer {opt.name!r}; use sgd, adam or adamw")


def lr_at(step: int, total: int, base: float, schedule: str = "constant",
          warmup_steps: int = 0) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to 0 at ``total``."""
    if warmup_steps and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule == "constant":
        return base
    t = (step - warmup_steps) / max(1, total - warmup_steps)
    return float(base * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def schedule(opt: OptimizerSettings, total_steps: int, steps_per_epoch: int):
    """``step -> learning rate`` for a run of ``total_steps``."""
    warmup = int(round(opt.warmup_epochs * steps_per_epoch))
    return lambda step: lr_at(step, total_steps, opt.lr, opt.schedule, warmup)
