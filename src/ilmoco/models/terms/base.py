"""The paper's intermediate-layer terms: what every term provides, and ``none``.

A term (one module per kind, registered in ``ilmoco.config.terms``) compares the block
outputs of the learning branch (MoCo's query encoder on view 1, BYOL's online network) with
those of the other branch on the other view, block by block:

    L_term = Σ_{i : w_i > 0} w_i · loss(q_i, k_i)

and returns the weighted per-block terms by name (``mse_block1`` ... ``bt_block4``), so the
training loop logs each one. The other branch never receives gradient; a term owns its
parameters (Barlow Twins: one projector per block, shared by both branches). A term is built
as ``Term(spec, block_dims)`` from its resolved ``TermSpec``.
"""

from __future__ import annotations

import torch
from torch import nn

from ilmoco.config.settings.pretrain import TermSpec
from ilmoco.imports import load_object
from ilmoco.names import BLOCKS


class IntermediateTerm(nn.Module):
    """Base: the blocks with a positive weight, and the name of each block's term."""

    prefix = ""

    def __init__(self, spec: TermSpec, block_dims=None):
        super().__init__()
        self.spec = spec
        self.active = [i for i, w in enumerate(spec.weights) if w > 0]

    @property
    def needs_blocks(self) -> bool:
        """Whether the key branch must return its block outputs."""
        return bool(self.active)

    def name(self, i: int) -> str:
        return f"{self.prefix}_{BLOCKS[i]}"

    def forward(self, q_blocks, k_blocks, training: bool = True) -> dict[str, torch.Tensor]:
        """``{<prefix>_block<i>: w_i · loss_i}`` for the active blocks."""
        raise NotImplementedError


class NoTerm(IntermediateTerm):
    """MoCo / BYOL alone."""

    def __init__(self, spec: TermSpec, block_dims=None):
        super().__init__(spec)
        self.active = []

    def forward(self, q_blocks, k_blocks, training: bool = True) -> dict[str, torch.Tensor]:
        return {}


def build_term(spec: TermSpec, block_dims) -> IntermediateTerm:
    """The term module ``spec`` names (``spec.model``)."""
    return load_object(spec.model)(spec, block_dims)
