"""The paper's intermediate-layer terms as modules: none, MSE, Barlow Twins.

A term compares the block outputs of the learning branch (MoCo's query encoder on view 1,
BYOL's online network) with those of the momentum branch on the other view, block by block:

    L_term = Σ_{i : w_i > 0} w_i · loss(q_i, k_i)

and returns the weighted per-block terms by name (``mse_block1`` ... ``bt_block4``), so the
training loop logs each one. The momentum branch never receives gradient; a term owns its
parameters (Barlow Twins: one projector per block, shared by both branches).
"""

from __future__ import annotations

import torch
from torch import nn

from ilmoco import dist
from ilmoco.backbone import pooled_blocks
from ilmoco.losses import barlow_twins_loss, intermediate_mse, upcast
from ilmoco.registry import BLOCKS
from ilmoco.settings import TermSpec


class IntermediateTerm(nn.Module):
    """Base: the blocks with a positive weight, and the name of each block's term."""

    prefix = ""

    def __init__(self, spec: TermSpec):
        super().__init__()
        self.spec = spec
        self.active = [i for i, w in enumerate(spec.weights) if w > 0]

    @property
    def needs_blocks(self) -> bool:
        """Whether the key branch must return its block outputs."""
        return bool(self.active)

    def forward(self, q_blocks, k_blocks, training: bool = True) -> dict[str, torch.Tensor]:
        """``{<prefix>_block<i>: w_i · loss_i}`` for the active blocks."""
        raise NotImplementedError


class NoTerm(IntermediateTerm):
    """MoCo / BYOL alone."""

    def __init__(self, spec: TermSpec):
        super().__init__(spec)
        self.active = []

    def forward(self, q_blocks, k_blocks, training: bool = True) -> dict[str, torch.Tensor]:
        return {}


class MSETerm(IntermediateTerm):
    """Mean squared error between adaptively pooled block outputs (no parameters)."""

    prefix = "mse"

    def forward(self, q_blocks, k_blocks, training: bool = True) -> dict[str, torch.Tensor]:
        s = self.spec
        terms = intermediate_mse([q_blocks[i] for i in self.active],
                                 [k_blocks[i] for i in self.active],
                                 [s.pool[i] for i in self.active],
                                 [s.weights[i] for i in self.active])
        return {f"mse_{BLOCKS[i]}": t for i, t in zip(self.active, terms)}


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
    by both branches; the momentum branch's input is detached). In training the
    cross-correlation uses the global batch of all data-parallel ranks."""

    prefix = "bt"

    def __init__(self, spec: TermSpec, block_dims):
        super().__init__(spec)
        self.projectors = nn.ModuleDict(
            {BLOCKS[i]: projector(block_dims[i], spec.projector) for i in self.active})

    def forward(self, q_blocks, k_blocks, training: bool = True) -> dict[str, torch.Tensor]:
        s, out = self.spec, {}
        pq = pooled_blocks([q_blocks[i] for i in self.active])
        pk = pooled_blocks([k_blocks[i] for i in self.active])
        for i, a, b in zip(self.active, pq, pk):
            proj = self.projectors[BLOCKS[i]]
            z1, z2 = proj(a), proj(b.detach())
            if training:
                z1, z2 = dist.gather_with_grad(z1), dist.gather_with_grad(z2)
            out[f"bt_{BLOCKS[i]}"] = s.weights[i] * barlow_twins_loss(
                upcast(z1), upcast(z2), s.lambda_on, s.lambda_off, s.scale)
        return out


def build_term(spec: TermSpec, block_dims) -> IntermediateTerm:
    if spec.kind == "none":
        return NoTerm(spec)
    if spec.kind == "mse":
        return MSETerm(spec)
    if spec.kind == "bt":
        return BarlowTwinsTerm(spec, block_dims)
    raise ValueError(f"unknown intermediate term {spec.kind!r}; use none, mse or bt")
