"""SimSiam (Chen & He, 2021) with the same intermediate-layer terms as MoCo.

    L = ½ [D(p₁, sg(z₂)) + D(p₂, sg(z₁))] + ½ Σ_i w_i [term(b₁,i, sg(b₂,i)) + term(b₂,i, sg(b₁,i))]

with D(p, z) = −cos(p, z) averaged over the batch, z the projection of a view (backbone →
projection MLP), p = predictor(z), and sg the stop-gradient. One network sees both views:
no negatives, no queue and no momentum encoder, so it trains with the small batches of one
GPU. The stop-gradient on the other view is what keeps it from collapsing; the
intermediate term pulls each block output towards the same block's output on the other
view, which gets no gradient either.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ilmoco.config.settings.pretrain import TermSpec
from ilmoco.models.bases.base import Encoder, SSLBase, mlp, with_symmetric_terms
from ilmoco.models.losses import full_precision, upcast
from ilmoco.models.terms.base import build_term


@full_precision
def simsiam_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, sg(z)) = −1/N Σ_n cos(p_n, z_n): the prediction of one view against the
    projection of the other, which gets no gradient."""
    p = F.normalize(upcast(p), dim=1)
    z = F.normalize(upcast(z.detach()), dim=1)
    return -(p * z).sum(dim=1).mean()


def projection(in_dim: int, hidden: int, dim: int) -> nn.Sequential:
    """SimSiam's projection MLP: two Linear-BN-ReLU layers, then Linear-BN without affine
    parameters (the output is batch-normalised)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, dim, bias=False), nn.BatchNorm1d(dim, affine=False))


class SimSiam(SSLBase):
    """SimSiam (``simsiam``: ``SimSiamSettings`` of ``ilmoco.config.bases``); no EMA."""

    def __init__(self, backbone_fn: Callable[..., nn.Module], simsiam, term: TermSpec):
        super().__init__()
        self.settings = simsiam
        backbone = backbone_fn()
        self.encoder = Encoder(backbone, projection(backbone.out_dim, simsiam.hidden,
                                                    simsiam.dim), normalize=False)
        self.predictor = mlp(simsiam.dim, simsiam.predictor_hidden, simsiam.dim)
        self.term = build_term(term, backbone.block_dims)

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone

    def forward(self, x1, x2, gen: torch.Generator | None = None, update: bool = True,
                momentum: float | None = None):
        """One step's loss and its named terms; nothing but the parameters changes, so
        ``update=False`` (validation) needs no special path. ``gen`` and ``momentum`` are
        unused (no key shuffle, no EMA)."""
        z1, b1 = self.encoder(x1)
        z2, b2 = self.encoder(x2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = (simsiam_loss(p1, z2) + simsiam_loss(p2, z1)) / 2
        return with_symmetric_terms(loss, {"simsiam": loss.detach()}, self.term, (b1, b2),
                                    (b2, b1), update)

    def trainable_modules(self) -> nn.ModuleList:
        return nn.ModuleList([self.encoder, self.predictor, self.term])

    def compile_targets(self) -> list[nn.Module]:
        return [self.encoder]
