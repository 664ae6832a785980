"""MoCo with intermediate-layer losses: ``moco``, ``moco_mse`` and ``moco_bt``.

    L = InfoNCE(q, k, queue) + Σ_i term_i(q_i, k_i)

with q from the query encoder on view 1, k from the momentum (key) encoder on view 2, and
term_i the block-i MSE or Barlow Twins loss. Only the query encoder (and the Barlow Twins
projectors, shared by both branches) learn; the key encoder follows by EMA.

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

import copy
import math
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ilmoco import dist
from ilmoco.backbone import Backbone, pooled_blocks
from ilmoco.losses import barlow_twins_loss, infonce_loss, intermediate_mse

METHODS = ("moco", "moco_mse", "moco_bt")


@dataclass
class MoCoConfig:
    method: str = "moco"
    arch: str = "resnet18"
    in_channels: int = 3
    zero_init_residual: bool = True
    dim: int = 128
    queue_size: int = 65536
    momentum: float = 0.999
    momentum_schedule: str = "constant"  # or "cosine" (m -> 1 over training)
    temperature: float = 0.2
    head: str = "mlp"  # "mlp" (MoCo v2) or "linear" (the official code)
    bn: str = "split"
    bn_splits: int = 8
    mse_pool: list = field(default_factory=lambda: [16, 16, 4, 4])
    mse_weights: list = field(default_factory=lambda: [0.25] * 4)
    bt_weights: list = field(default_factory=lambda: [1.0] * 4)
    bt_projector: list = field(default_factory=lambda: [2048, 2048, 2048])
    bt_lambda_on: float = 5e-5
    bt_lambda_off: float = 5e-5
    bt_scale: float = 1 / 32

    def to_dict(self) -> dict:
        return asdict(self)


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics come from ``num_splits`` interleaved sub-batches.

    Sample n belongs to sub-batch n mod num_splits; running statistics are the average over
    sub-batches. Same parameters and state-dict keys as ``nn.BatchNorm2d``.
    """

    def __init__(self, num_features: int, num_splits: int = 8, **kwargs):
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.num_splits
        if not self.training or s == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        rm, rv = self.running_mean.repeat(s), self.running_var.repeat(s)
        y = F.batch_norm(
            x.reshape(n // s, s * c, h, w), rm, rv, self.weight.repeat(s), self.bias.repeat(s),
            True, self.momentum if self.momentum is not None else 0.1, self.eps,
        ).reshape(n, c, h, w)
        with torch.no_grad():
            self.running_mean.copy_(rm.view(s, c).mean(0))
            self.running_var.copy_(rv.view(s, c).mean(0))
            self.num_batches_tracked += 1
        return y


def projector(in_dim: int, widths) -> nn.Sequential:
    """Barlow Twins projector: (Linear-BN-ReLU) for each hidden width, then a final Linear."""
    layers, d = [], in_dim
    for w in widths[:-1]:
        layers += [nn.Linear(d, w, bias=False), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
        d = w
    layers.append(nn.Linear(d, widths[-1], bias=False))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Backbone + MoCo head; returns the L2-normalised embedding and the block outputs."""

    def __init__(self, backbone: Backbone, dim: int, head: str):
        super().__init__()
        self.backbone = backbone
        d = backbone.out_dim
        if head == "mlp":
            self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, dim))
        elif head == "linear":
            self.head = nn.Linear(d, dim)
        else:
            raise ValueError(f"unknown head {head!r}; use 'mlp' or 'linear'")

    def forward(self, x):
        emb, blocks = self.backbone(x)
        return F.normalize(self.head(emb), dim=1), blocks


def momentum_at(step: int, total_steps: int, base: float, schedule: str) -> float:
    """EMA coefficient: constant, or cosine from ``base`` to 1 over training (BYOL-style)."""
    if schedule == "constant" or total_steps <= 1:
        return base
    return 1 - (1 - base) * (math.cos(math.pi * step / total_steps) + 1) / 2


class MoCo(nn.Module):
    def __init__(self, cfg: MoCoConfig):
        super().__init__()
        if cfg.method not in METHODS:
            raise ValueError(f"unknown method {cfg.method!r}; known: {METHODS}")
        self.cfg = cfg
        norm = partial(SplitBatchNorm, num_splits=cfg.bn_splits) if cfg.bn == "split" else None
        backbone = Backbone(cfg.arch, cfg.in_channels, cfg.zero_init_residual, norm_layer=norm)
        self.encoder_q = Encoder(backbone, cfg.dim, cfg.head)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        if cfg.method == "moco_bt":
            self.projectors = nn.ModuleList(
                projector(d, cfg.bt_projector) for d in backbone.block_dims)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.dim), dim=1))
        self.queue_ptr = 0

    # The pointer is a host int: saved through the state dict's extra state.
    def get_extra_state(self):
        return {"queue_ptr": int(self.queue_ptr)}

    def set_extra_state(self, state):
        self.queue_ptr = int(state["queue_ptr"])

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """k ← m·k + (1 − m)·q for every parameter, as two fused multi-tensor ops."""
        qp = [p.data for p in self.encoder_q.parameters()]
        kp = [p.data for p in self.encoder_k.parameters()]
        torch._foreach_mul_(kp, m)
        torch._foreach_add_(kp, qp, alpha=1 - m)

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
        shuffle = update and (self.cfg.bn == "split" or (self.cfg.bn == "global"
                                                         and dist.is_dist()))
        if not shuffle:
            return self.encoder_k(x_k)
        b = x_k.shape[0]
        xs = dist.gather(x_k)
        perm = torch.randperm(xs.shape[0], generator=gen, device=gen.device if gen else None)
        perm = perm.to(x_k.device)
        r = dist.rank()
        k, blocks = self.encoder_k(xs[perm[r * b:(r + 1) * b]])
        # Undo the shuffle: gather everything in shuffled order, pick this rank's samples.
        inv = torch.argsort(perm)[r * b:(r + 1) * b]
        k = dist.gather(k)[inv]
        blocks = tuple(dist.gather(t)[inv] for t in blocks) if self.cfg.method != "moco" else ()
        return k, blocks

    def forward(self, x_q, x_k, gen: torch.Generator | None = None, update: bool = True,
                momentum: float | None = None):
        """One MoCo step's loss. ``update=False`` (validation) leaves EMA and queue untouched."""
        cfg = self.cfg
        q, q_blocks = self.encoder_q(x_q)
        if update:
            self.momentum_update(cfg.momentum if momentum is None else momentum)
        k, k_blocks = self._keys(x_k, gen, update)
        logs = {}
        loss = infonce_loss(q, k, self.queue.clone(), cfg.temperature)
        logs["infonce"] = loss.detach()
        if cfg.method == "moco_mse":
            terms = intermediate_mse(q_blocks, k_blocks, cfg.mse_pool, cfg.mse_weights)
            for i, t in enumerate(terms, 1):
                logs[f"mse_block{i}"] = t.detach()
                loss = loss + t
        elif cfg.method == "moco_bt":
            pq, pk = pooled_blocks(q_blocks), pooled_blocks(k_blocks)
            for i, (proj, a, b, w) in enumerate(
                    zip(self.projectors, pq, pk, cfg.bt_weights), 1):
                z1, z2 = proj(a), proj(b.detach())
                if update:  # Barlow Twins statistics over the global batch
                    z1, z2 = dist.gather_with_grad(z1), dist.gather_with_grad(z2)
                t = w * barlow_twins_loss(z1.float(), z2.float(), cfg.bt_lambda_on,
                                          cfg.bt_lambda_off, cfg.bt_scale)
                logs[f"bt_block{i}"] = t.detach()
                loss = loss + t
        logs["loss"] = loss.detach()
        if update:
            self.enqueue(dist.gather(k.detach()))
        return loss, logs

    def trainable_modules(self) -> nn.ModuleList:
        mods = [self.encoder_q]
        if self.cfg.method == "moco_bt":
            mods.append(self.projectors)
        return nn.ModuleList(mods)
