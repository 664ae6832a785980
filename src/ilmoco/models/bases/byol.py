"""BYOL (Grill et al., 2020) with the same intermediate-layer terms as MoCo.

    L = ½ [byol(p₁, z₂') + byol(p₂, z₁')] + ½ Σ_i w_i [term(o₁,i, t₂,i) + term(o₂,i, t₁,i)]

with o the online network (backbone → projector → predictor p), t the momentum (target)
network (backbone → projector z'), both views through both networks. No negatives and no
queue, so it is the usual choice for small batches on one GPU. As in MoCo, the intermediate
term pulls each online block output towards the target network's block output on the other
view; the target network follows the online one by EMA and gets no gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ilmoco.config.settings.pretrain import TermSpec
from ilmoco.models.bases.base import Encoder, SSLBase, mlp, with_symmetric_terms
from ilmoco.models.losses import byol_loss
from ilmoco.models.momentum import ema_update, momentum_copy
from ilmoco.models.terms.base import build_term


class BYOL(SSLBase):
    """BYOL (``byol``: ``BYOLSettings`` of ``ilmoco.config.bases``)."""

    ema = True

    def __init__(self, backbone_fn: Callable[..., nn.Module], byol, term: TermSpec):
        super().__init__()
        self.settings = byol
        backbone = backbone_fn()
        self.online = Encoder(backbone, mlp(backbone.out_dim, byol.hidden, byol.dim),
                              normalize=False)
        self.predictor = mlp(byol.dim, byol.predictor_hidden, byol.dim)
        self.target = momentum_copy(self.online)
        self.term = build_term(term, backbone.block_dims)

    @property
    def backbone(self) -> nn.Module:
        return self.online.backbone

    def momentum_update(self, m: float) -> None:
        ema_update(self.target, self.online, m)

    def forward(self, x1, x2, gen: torch.Generator | None = None, update: bool = True,
                momentum: float | None = None):
        """One step's loss and its named terms; ``update=False`` leaves the target network
        untouched (validation). ``gen`` is unused (no key shuffle)."""
        z1, b1 = self.online(x1)
        z2, b2 = self.online(x2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        if update:
            self.momentum_update(self.settings.momentum if momentum is None else momentum)
        with torch.no_grad():
            t1, tb1 = self.target(x1)
            t2, tb2 = self.target(x2)
        loss = (byol_loss(p1, t2) + byol_loss(p2, t1)) / 2
        return with_symmetric_terms(loss, {"byol": loss.detach()}, self.term, (b1, tb2),
                                    (b2, tb1), update)

    def trainable_modules(self) -> nn.ModuleList:
        return nn.ModuleList([self.online, self.predictor, self.term])

    def compile_targets(self) -> list[nn.Module]:
        return [self.online, self.target]
