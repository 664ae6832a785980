"""Probing as the official code does it: linear heads trained step by step on the pooled
block outputs of a backbone that runs without gradients but in train mode.

The official layer-wise probes (``probing_moco_*.py``) and the Table 1 linear probe
(``fine_tune_mocov2.py --only-ll``) both wrap the backbone's forward in ``no_grad`` and
leave the module in train mode, so BatchNorm normalises with batch statistics and its running
statistics move with every step, and the training images are augmented: the features change
at every step and cannot be extracted once (the ``frozen`` protocol of
:mod:`ilmoco.training.linear_probe` can). One backbone pass here feeds a head per probed
block; the heads are independent (the backbone gets no gradient), so this equals one run per
block on the same batches. Every epoch is run and the last one is kept; validation (eval
mode, the drifted running statistics, as Lightning validates) is scored after each epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ilmoco.data.augment import BatchAugment
from ilmoco.data.batches import BatchSource
from ilmoco.models.backbone import build_backbone, pooled_blocks
from ilmoco.names import BLOCKS
from ilmoco.training.checkpoints import ResumeCheckpoint, load_backbone
from ilmoco.training.heads import loss_fn, probabilities
from ilmoco.training.inference import extract_features, param_dtype, selection_score
from ilmoco.training.loop import LoopState, train_loop
from ilmoco.training.runtime import Runtime


def probed_backbone(model: str | None, builder: str, arch: str, channels: int,
                    zero_init_residual: bool, init_seed: int, **expect) -> nn.Module:
    """The encoder of an ``encoder.pt`` / ``model.pt`` (``expect``: the dataset and method
    it must record), or, for ``model=None``, the random-init control built with
    ``init_seed`` (the pretraining's own starting point)."""
    if model is None:
        torch.manual_seed(init_seed)
        return build_backbone(builder, arch, channels, zero_init_residual)
    backbone, _ = load_backbone(model, **expect)
    return backbone


class ProbeHeads(nn.Module):
    """A backbone and one linear head per probed block (0-based ``blocks``) on its globally
    pooled output; the backbone runs under ``no_grad`` in whatever mode it is in."""

    def __init__(self, backbone: nn.Module, blocks: Sequence[int], n_out: int):
        super().__init__()
        self.backbone, self.blocks = backbone, tuple(blocks)
        self.heads = nn.ModuleList(nn.Linear(backbone.block_dims[b], n_out) for b in blocks)

    def features(self, x: torch.Tensor, autocast) -> list[torch.Tensor]:
        with torch.no_grad(), autocast():
            _, blocks = self.backbone(x)
        pooled = pooled_blocks(blocks)
        return [pooled[b].to(param_dtype(self.heads)) for b in self.blocks]

    def logits(self, feats: list) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self.heads, feats)]


@dataclass
class ProbeData:
    """The images a probe trains and validates on."""

    source: BatchSource  # the labelled training images, batched (labels on the device)
    val_images: object  # (n, C, S, S) uint8, array or CachedImages
    y_val: np.ndarray


def train_heads(probe: ProbeHeads, data: ProbeData, *, augment: BatchAugment | None,
                optimizer: torch.optim.Optimizer, lr_fn: Callable[[int], float], epochs: int,
                rt: Runtime, task: str, metric: str, seed: int, resume: ResumeCheckpoint | None,
                checkpoint_every: int = 0, log_every: int = 50, progress: str = "auto",
                desc: str = "probe") -> LoopState:
    """Train the heads for ``epochs`` epochs (no early stopping); ``state.history`` holds the
    training loss per log interval and, per epoch, the validation score of each head
    (``val_<block>``: the metric's selection score)."""

    def step_fn(x, y, gen, step):
        x = augment(x, gen) if augment is not None else x.to(rt.dtype).div(255)
        losses = [loss_fn(z, y, task) for z in probe.logits(probe.features(x, rt.autocast))]
        logs = {f"loss_{BLOCKS[b]}": v.detach() for b, v in zip(probe.blocks, losses)}
        loss = torch.stack(losses).sum()
        return loss, {**logs, "loss": loss.detach()}

    def on_epoch_end(epoch, state):
        scores = validate(probe, data.val_images, data.y_val, rt, task, metric)
        state.history.append({"epoch": epoch, "step": (epoch + 1) * data.source.steps_per_epoch,
                              **{f"val_{BLOCKS[b]}": s for b, s in zip(probe.blocks, scores)}})
        return False

    return train_loop(
        modules=probe, optimizer=optimizer, source=data.source, epochs=epochs,
        step_fn=step_fn, lr_fn=lr_fn, resume=resume, seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=max(1, min(log_every, data.source.steps_per_epoch)),
        on_epoch_end=on_epoch_end, desc=desc, progress=progress, log_throughput=False)


@torch.no_grad()
def head_probabilities(probe: ProbeHeads, images, rt: Runtime, task: str) -> list[np.ndarray]:
    """Each head's probabilities on un-augmented images, the backbone in eval mode (its
    running statistics as training left them)."""
    feats = extract_features(probe.backbone, images, rt.device, rt.precision)
    dtype = param_dtype(probe.heads)
    return [probabilities(head(torch.from_numpy(feats[b]).to(rt.device, dtype)), task)
            .cpu().numpy() for head, b in zip(probe.heads, probe.blocks)]


def validate(probe: ProbeHeads, images, y, rt: Runtime, task: str, metric: str) -> list[float]:
    return [selection_score(metric, y, p, task)
            for p in head_probabilities(probe, images, rt, task)]
