"""MoCo (He et al.; v2 by Chen et al.) with an intermediate-layer term.

    L = InfoNCE(q, k, queue) + Σ_i w_i · term(q_i, k_i)

with q from the query encoder on view 1, k from the momentum (key) encoder on view 2, and the
term (none, MSE or Barlow Twins, see ``ilmoco.models.terms``) on the block outputs. Only the query
encoder (and the term's projectors) learn; the key encoder follows by EMA.

BatchNorm (``bn``): with one GPU, MoCo's shuffle-BN is a no-op, so choose
* ``split``: SplitBatchNorm with ``bn_splits`` sub-batches in both encoders plus a shuffle
  of the key batch, as the MoCo authors' single-GPU demo emulates multi-GPU shuffle-BN;
  under data parallelism the key batch is shuffled across all ranks as well;
* ``global``: plain BN over the (per-process) batch; with several ranks, official MoCo's
  cross-rank shuffle of the key batch;
* ``sync``: BN statistics over the global batch on every rank (SyncBN), no shuffle.

The queue and its pointer are part of the state dict (a checkpoint resumes them); the
pointer lives on the host so enqueueing never synchronises with the GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ilmoco import dist
from ilmoco.config.settings.pretrain import TermSpec
from ilmoco.models.bases.base import Encoder, SSLBase
from ilmoco.models.losses import infonce_loss
from ilmoco.models.momentum import ema_update, momentum_copy
from ilmoco.models.norm import norm_layer, norm_layer_1d
from ilmoco.models.terms.base import build_term


def moco_head(in_dim: int, dim: int, kind: str,
              norm1d: Callable[[int], nn.Module] = nn.BatchNorm1d) -> nn.Module:
    """MoCo v2's MLP head (``mlp``), the same with BatchNorm on the hidden layer as in
    SimCLR / MoCo v3 (``mlp_bn``: short CPU runs of MoCo v2's head can collapse the
    embedding to a constant, InfoNCE exactly ln(K + 1)), or the single linear layer of
    MoCo v1 / the official code (``linear``)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True),
                             nn.Linear(in_dim, dim))
    if kind == "mlp_bn":
        return nn.Sequential(nn.Linear(in_dim, in_dim, bias=False), norm1d(in_dim),
                             nn.ReLU(inplace=True), nn.Linear(in_dim, dim))
    if kind == "linear":
        return nn.Linear(in_dim, dim)
    raise ValueError(f"unknown head {kind!r}; use 'mlp', 'mlp_bn' or 'linear'")


def shuffle_across_ranks(x: torch.Tensor, gen: torch.Generator | None):
    """This rank's slice of a random permutation of the global batch, and the permutation
    (shuffle-BN: the key encoder normalises over other samples than the query encoder)."""
    b = x.shape[0]
    xs = dist.gather(x)
    perm = torch.randperm(xs.shape[0], generator=gen, device=gen.device if gen else None)
    perm = perm.to(x.device)
    r = dist.rank()
    return xs[perm[r * b:(r + 1) * b]], perm


def unshuffle(t: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Outputs computed on shuffled inputs, back in this rank's original order."""
    b = t.shape[0]
    r = dist.rank()
    return dist.gather(t)[torch.argsort(perm)[r * b:(r + 1) * b]]


class MoCo(SSLBase):
    """MoCo with a queue of ``queue_size`` negative keys and an intermediate term
    (``moco``: ``MoCoSettings`` of ``ilmoco.config.bases``)."""

    ema = True

    def __init__(self, backbone_fn: Callable[..., nn.Module], moco, term: TermSpec):
        super().__init__()
        self.settings = moco
        backbone = backbone_fn(norm_layer=norm_layer(moco.bn, moco.bn_splits))
        head = moco_head(backbone.out_dim, moco.dim, moco.head,
                         norm_layer_1d(moco.bn, moco.bn_splits))
        self.encoder_q = Encoder(backbone, head)
        self.encoder_k = momentum_copy(self.encoder_q)
        self.term = build_term(term, backbone.block_dims)
        self.register_buffer("queue", F.normalize(torch.randn(moco.queue_size, moco.dim), dim=1))
        self.queue_ptr = 0

    @property
    def backbone(self) -> nn.Module:
        """The encoder that is kept after pretraining."""
        return self.encoder_q.backbone

    # The pointer is a host int: saved through the state dict's extra state.
    def get_extra_state(self):
        return {"queue_ptr": int(self.queue_ptr)}

    def set_extra_state(self, state):
        self.queue_ptr = int(state["queue_ptr"])

    def momentum_update(self, m: float) -> None:
        ema_update(self.encoder_k, self.encoder_q, m)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` at the pointer, wrapping around the end of the queue."""
        n, size = keys.shape[0], self.queue.shape[0]
        idx = (torch.arange(n, device=keys.device) + self.queue_ptr) % size
        self.queue.index_copy_(0, idx, keys.to(self.queue.dtype))
        self.queue_ptr = (self.queue_ptr + n) % size

    @torch.no_grad()
    def _keys(self, x_k: torch.Tensor, gen: torch.Generator | None, update: bool):
        # Validation (update=False) runs on one rank with BN frozen: no shuffle, no collective.
        shuffle = update and (self.settings.bn == "split" or (self.settings.bn == "global"
                                                              and dist.is_dist()))
        if not shuffle:
            return self.encoder_k(x_k)
        xs, perm = shuffle_across_ranks(x_k, gen)
        k, blocks = self.encoder_k(xs)
        k = unshuffle(k, perm)
        blocks = tuple(unshuffle(t, perm) for t in blocks) if self.term.needs_blocks else ()
        return k, blocks

    def forward(self, x_q, x_k, gen: torch.Generator | None = None, update: bool = True,
                momentum: float | None = None):
        """One step's loss and its named terms. ``update=False`` (validation) leaves the
        momentum encoder and the queue untouched."""
        q, q_blocks = self.encoder_q(x_q)
        if update:
            self.momentum_update(self.settings.momentum if momentum is None else momentum)
        k, k_blocks = self._keys(x_k, gen, update)
        loss = infonce_loss(q, k, self.queue.clone(), self.settings.temperature)
        logs = {"infonce": loss.detach()}
        for name, t in self.term(q_blocks, k_blocks, training=update).items():
            logs[name] = t.detach()
            loss = loss + t
        logs["loss"] = loss.detach()
        if update:
            self.enqueue(dist.gather(k.detach()))
        return loss, logs

    def trainable_modules(self) -> nn.ModuleList:
        return nn.ModuleList([self.encoder_q, self.term])

    def compile_targets(self) -> list[nn.Module]:
        return [self.encoder_q, self.encoder_k]

    def for_data_parallel(self, local_batch: int) -> nn.Module:
        s = self.settings
        if s.bn == "split" and local_batch % s.bn_splits:
            raise ValueError(f"pretrain.moco.bn_splits {s.bn_splits} does not divide the "
                             f"batch of each data-parallel process ({local_batch}); change "
                             "bn_splits or batch_size")
        return dist.convert_sync_batchnorm(self) if s.bn == "sync" else self
