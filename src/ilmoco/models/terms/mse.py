"""The intermediate MSE term: mean squared error between adaptively pooled block outputs."""

from __future__ import annotations

import torch

from ilmoco.models.losses import intermediate_mse
from ilmoco.models.terms.base import IntermediateTerm


class MSETerm(IntermediateTerm):
    """No parameters; ``spec.settings``: weights and pool size per block (``MSESettings``)."""

    prefix = "mse"

    def forward(self, q_blocks, k_blocks, training: bool = True) -> dict[str, torch.Tensor]:
        s = self.spec.settings
        terms = intermediate_mse([q_blocks[i] for i in self.active],
                                 [k_blocks[i] for i in self.active],
                                 [s.pool[i] for i in self.active],
                                 [s.weights[i] for i in self.active])
        return {self.name(i): t for i, t in zip(self.active, terms)}
