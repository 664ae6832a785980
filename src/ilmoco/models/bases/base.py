"""What every self-supervised base provides (the protocol the pretraining stage runs), and
the parts the bases share.

A base (one module per base, registered in ``ilmoco.config.bases``) is an ``nn.Module``
built as ``Base(backbone_fn, settings, term)``:

* ``backbone_fn(norm_layer=None)`` builds the backbone that is kept after pretraining
  (``backbone``); ``norm_layer`` lets a base choose its BatchNorm (MoCo's SplitBatchNorm);
* ``forward(x1, x2, gen, update, momentum) -> (loss, logs)`` computes one step's loss on two
  augmented views and names its terms (the base loss, ``<term>_block<i>``, ``loss``);
  ``update=False`` (validation) changes no state: no EMA step, no queue;
* ``trainable_modules()`` are what the optimiser updates; ``compile_targets()`` what
  ``torch.compile`` compiles; ``for_data_parallel(local_batch)`` adapts the model to
  several processes;
* ``ema`` says whether it has a momentum (EMA) branch; if so its settings have
  ``momentum`` and ``momentum_schedule`` and the stage passes the coefficient of each step.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import nn


class SSLBase(nn.Module):
    ema: ClassVar[bool] = False

    @property
    def backbone(self) -> nn.Module:
        raise NotImplementedError

    def forward(self, x1, x2, gen=None, update: bool = True, momentum: float | None = None):
        raise NotImplementedError

    def trainable_modules(self) -> nn.ModuleList:
        raise NotImplementedError

    def compile_targets(self) -> list[nn.Module]:
        return [self.backbone]

    def for_data_parallel(self, local_batch: int) -> nn.Module:
        """This model adapted to data parallelism with ``local_batch`` images per process
        (e.g. BatchNorm synchronised across processes); refuses what cannot work."""
        return self


class Encoder(nn.Module):
    """Backbone + projection head; returns the embedding (L2-normalised when ``normalize``)
    and the block outputs."""

    def __init__(self, backbone: nn.Module, head: nn.Module, normalize: bool = True):
        super().__init__()
        self.backbone, self.head, self.normalize = backbone, head, normalize

    def forward(self, x):
        emb, blocks = self.backbone(x)
        z = self.head(emb)
        return (F.normalize(z, dim=1) if self.normalize else z), blocks


def with_symmetric_terms(loss, logs: dict, term, first: tuple, second: tuple,
                         training: bool):
    """``loss`` plus the intermediate term in both directions, averaged (bases that pass both
    views through the learning network): ``first`` = (view-1 blocks, the other branch's
    view-2 blocks), ``second`` the reverse. Each averaged term and the total are logged."""
    forward, backward = term(*first, training=training), term(*second, training=training)
    for name, t in forward.items():
        t = (t + backward[name]) / 2
        logs[name] = t.detach()
        loss = loss + t
    logs["loss"] = loss.detach()
    return loss, logs


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector / predictor (and SimSiam's predictor): Linear-BN-ReLU-Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
