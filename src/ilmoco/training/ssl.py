"""Self-supervised pretraining's parts, as the ``pretrain`` stage and the benchmark use them:
the model of a run, its optimiser and step function, side-effect-free validation, and the
kNN monitor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from ilmoco import dist
from ilmoco.config.settings.pretrain import PretrainRun
from ilmoco.data.augment import BatchAugment
from ilmoco.data.cache import ImageCache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.evaluation.knn import knn_scores
from ilmoco.evaluation.metrics import metric_fn, selection_metric
from ilmoco.imports import load_object
from ilmoco.models.backbone import build_backbone
from ilmoco.models.bases.base import SSLBase
from ilmoco.models.momentum import momentum_at
from ilmoco.models.weights import load_stock_weights
from ilmoco.training.heads import targets
from ilmoco.training.inference import extract_features
from ilmoco.training.optim import build_optimizer
from ilmoco.training.runtime import Runtime, step_generator


def build_model(run: PretrainRun, channels: int) -> SSLBase:
    """The run's base (``run.base_model``) on its backbone, with its term; a backbone with an
    ``init`` starts from its weights file (before the base copies it into a momentum
    encoder)."""
    s = run.settings

    def backbone_fn(norm_layer=None):
        net = build_backbone(run.backbone.builder, s.arch, channels, s.zero_init_residual,
                             norm_layer=norm_layer)
        if run.init is not None:
            load_stock_weights(net, run.init.weights, (run.init.mean, run.init.std))
        return net

    return load_object(run.base_model)(backbone_fn, run.base_settings, run.term)


@dataclass
class PretrainSetup:
    """One pretraining's pieces: the model (and its DDP wrapper ``net``), optimiser,
    augmentation and the step function the training loop calls."""

    model: SSLBase
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    augment: BatchAugment | None
    step_fn: Callable  # (uint8 batch, labels, generator, step) -> (loss, logs)
    forward: Callable  # (view 1, view 2, generator, step) -> (loss, logs), views augmented
    memory_format: torch.memory_format


def setup(run: PretrainRun, channels: int, rt: Runtime, total_steps: int,
          image_size: int | None, channels_last: bool, compile: bool,
          augment: bool = True) -> PretrainSetup:
    """Model, optimiser and per-step function, exactly as the ``pretrain`` stage uses them;
    ``augment=False`` takes views that are already augmented."""
    s, device = run.settings, rt.device
    model = build_model(run, channels).to(device=device, dtype=rt.dtype)
    if dist.is_dist():
        model = model.for_data_parallel(s.batch_size // dist.world_size())
    channels_last = device.type == "cuda" and channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.trainable_modules(), s.optimizer)
    net = model
    if dist.is_dist():
        net = torch.nn.parallel.DistributedDataParallel(
            model, broadcast_buffers=False,
            device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        for part in model.compile_targets():
            part.compile(dynamic=False)
    aug = BatchAugment(run.augment, image_size, rt.dtype) if augment else None
    bs = s.batch_size
    offset = dist.rank() * (bs // dist.world_size())
    b = run.base_settings

    def forward(x1, x2, gen, step):
        m = momentum_at(step, total_steps, b.momentum, b.momentum_schedule) if model.ema \
            else None
        with rt.autocast():
            return net(x1, x2, gen, update=True, momentum=m)

    def step_fn(x, _y, gen, step):
        x1 = aug(x, gen, bs, offset).contiguous(memory_format=memory_format)
        x2 = aug(x, gen, bs, offset).contiguous(memory_format=memory_format)
        return forward(x1, x2, gen, step)

    return PretrainSetup(model, net, optimizer, aug, step_fn, forward, memory_format)


def validation_losses(model, aug: BatchAugment, images, batch_size: int,
                      rt: Runtime, seed: int, identical: bool = False) -> dict:
    """Mean validation losses over full batches of ``images`` (an array or a
    :class:`~ilmoco.data.cache.CachedImages`) on fixed augmentation draws, or with the image
    itself as both views (``identical``: the official validation); no EMA, no enqueue, BN
    frozen."""
    model.eval()
    sums, n = {}, 0
    with torch.no_grad():
        for i, start in enumerate(range(0, len(images) - batch_size + 1, batch_size)):
            x = torch.from_numpy(images[start:start + batch_size]).to(rt.device)
            gen = step_generator(seed + 99991, i, rt.device)
            if identical:
                x1 = x2 = x.to(rt.dtype).div(255)
            else:
                x1, x2 = aug(x, gen), aug(x, gen)
            with rt.autocast():
                _, logs = model(x1, x2, gen, update=False)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
    model.train()
    return {f"val_{k}": v / n for k, v in sums.items()} if n else {}


class KnnMonitor:
    """Per-epoch kNN score of the backbone: a fixed, seeded bank of labelled train images,
    the validation images as queries, the dataset's metric on the vote scores."""

    def __init__(self, run: PretrainRun, meta: DatasetMeta, metric: str, cache: ImageCache,
                 train: pd.DataFrame, val: pd.DataFrame, rt: Runtime):
        knn = run.settings.knn
        bank = train.sample(min(len(train), knn.bank_images), random_state=run.settings.seed)
        self.bank, self.bank_y = cache.load(bank["image_id"]), targets(bank, meta)
        self.queries, self.query_y = cache.view(val["image_id"]), targets(val, meta)
        self.knn, self.meta, self.rt = knn, meta, rt
        self.name = selection_metric(metric)

    def __call__(self, backbone) -> dict:
        if len(self.queries) == 0 or len(self.bank) == 0:
            return {}
        fb = extract_features(backbone, self.bank, self.rt.device, self.rt.precision)[3]
        fq = extract_features(backbone, self.queries, self.rt.device, self.rt.precision)[3]
        scores = knn_scores(fb, self.bank_y, fq, self.knn.k, self.knn.temperature,
                            self.meta.task, self.meta.n_classes)
        return {f"knn_{self.name}": float(metric_fn(self.name)(self.query_y, scores)[0])}
