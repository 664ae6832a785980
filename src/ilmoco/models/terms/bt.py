"""The intermediate Barlow Twins term: a projector per block on globally pooled outputs."""

from __future__ import annotations

import torch
from torch import nn

from ilmoco import dist
from ilmoco.models.backbone import pooled_blocks
from ilmoco.models.losses import barlow_twins_loss, upcast
from ilmoco.models.terms.base import IntermediateTerm
from ilmoco.names import BLOCKS


def projector(in_dim: int, widths) -> nn.Sequential:
    """Barlow Twins projector: (Linear-BN-ReLU) for each hidden width, then a final Linear."""
    layers, d = [], in_dim
    for w in widths[:-1]:
        layers += [nn.Linear(d, w, bias=False), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
        d = w
    layers.append(nn.Linear(d, widths[-1], bias=False))
    return nn.Sequential(*layers)


class BarlowTwinsTerm(IntermediateTerm):
    """Barlow Twins on globally pooled block outputs, one projector per active block (shared
    by both branches; the other branch's input is detached). In training the
    cross-correlation uses the global batch of all data-parallel ranks. ``spec.settings``:
    ``BTSettings``."""

    prefix = "bt"

    def __init__(self, spec, block_dims):
        super().__init__(spec)
        self.projectors = nn.ModuleDict(
            {BLOCKS[i]: projector(block_dims[i], spec.settings.projector) for i in self.active})

    def forward(self, q_blocks, k_blocks, training: bool = True) -> dict[str, torch.Tensor]:
        s, out = self.spec.settings, {}
        pq = pooled_blocks([q_blocks[i] for i in self.active])
        pk = pooled_blocks([k_blocks[i] for i in self.active])
        for i, a, b in zip(self.active, pq, pk):
            proj = self.projectors[BLOCKS[i]]
            z1, z2 = proj(a), proj(b.detach())
            if training:
                z1, z2 = dist.gather_with_grad(z1), dist.gather_with_grad(z2)
            out[self.name(i)] = s.weights[i] * barlow_twins_loss(
                upcast(z1), upcast(z2), s.lambda_on, s.lambda_off, s.scale)
        return out
