"""The ``pretrain`` stage: a self-supervised method (a base with an intermediate term) on the
train split's images.

Writes ``encoder.pt`` (the learning branch's backbone plus the metadata later stages check)
and ``metrics.csv`` (every loss term, learning rate and throughput at each log interval; per
epoch the validation losses and the kNN monitor). Validation uses fixed augmentation draws
and changes nothing: the momentum encoder and the queue are only touched by training steps.
The saved encoder is the last epoch's, or (``select: val_loss``, as the official code) the
epoch with the lowest validation loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ilmoco import dist
from ilmoco.augment import BatchAugment
from ilmoco.batches import BatchSource
from ilmoco.byol import BYOL
from ilmoco.cache import ImageCache
from ilmoco.checkpoints import ResumeCheckpoint, save_encoder
from ilmoco.classification import targets
from ilmoco.datasets.base import DatasetMeta
from ilmoco.evaluation import extract_features, model_state
from ilmoco.io import write_csv
from ilmoco.knn import knn_scores
from ilmoco.loop import train_loop
from ilmoco.moco import MoCo
from ilmoco.momentum import momentum_at
from ilmoco.optim import build_optimizer, schedule
from ilmoco.runlog import log
from ilmoco.runtime import Runtime, fingerprint, prepare, step_generator
from ilmoco.settings import PretrainRun, result_fields
from ilmoco.stats import metric_fn


@dataclass
class PretrainJob:
    """One pretraining: its settings and its files (``resume_path`` lies outside the
    declared outputs, which Snakemake deletes before a job runs)."""

    run: PretrainRun
    split_csv: str
    meta: DatasetMeta
    cache_images: str
    cache_index: str
    out_encoder: str
    out_metrics: str
    resume_path: str
    code: str = ""  # the code version (a code change must not resume an old checkpoint)


def build_model(run: PretrainRun, channels: int) -> MoCo | BYOL:
    s = run.settings
    if run.base == "moco":
        return MoCo(s.arch, channels, s.zero_init_residual, s.moco, run.term)
    if run.base == "byol":
        return BYOL(s.arch, channels, s.zero_init_residual, s.byol, run.term)
    raise ValueError(f"unknown SSL base {run.base!r}; use moco or byol")


def momentum_settings(run: PretrainRun) -> tuple[float, str]:
    base = run.settings.moco if run.base == "moco" else run.settings.byol
    return base.momentum, base.momentum_schedule


@dataclass
class PretrainSetup:
    """One pretraining's pieces: the model (and its DDP wrapper ``net``), optimiser,
    augmentation and the step function the training loop calls."""

    model: MoCo | BYOL
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
    world = dist.world_size()
    if run.base == "moco" and s.moco.bn == "split" and (s.batch_size // world) % s.moco.bn_splits:
        raise ValueError(f"pretrain.moco.bn_splits {s.moco.bn_splits} does not divide the "
                         f"batch of each of the {world} data-parallel processes "
                         f"({s.batch_size // world}); change bn_splits or batch_size")
    model = build_model(run, channels).to(device=device, dtype=rt.dtype)
    if dist.is_dist() and run.base == "moco" and s.moco.bn == "sync":
        from ilmoco.dist import convert_sync_batchnorm

        model = convert_sync_batchnorm(model)
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
        for encoder in ((model.encoder_q, model.encoder_k) if run.base == "moco"
                        else (model.online, model.target)):
            encoder.compile(dynamic=False)
    aug = BatchAugment(run.augment, image_size, rt.dtype) if augment else None
    base_m, m_schedule = momentum_settings(run)
    bs = s.batch_size
    offset = dist.rank() * (bs // dist.world_size())

    def forward(x1, x2, gen, step):
        with rt.autocast():
            return net(x1, x2, gen, update=True,
                       momentum=momentum_at(step, total_steps, base_m, m_schedule))

    def step_fn(x, _y, gen, step):
        x1 = aug(x, gen, bs, offset).contiguous(memory_format=memory_format)
        x2 = aug(x, gen, bs, offset).contiguous(memory_format=memory_format)
        return forward(x1, x2, gen, step)

    return PretrainSetup(model, net, optimizer, aug, step_fn, forward, memory_format)


def validation_losses(model, aug: BatchAugment, images: np.ndarray, batch_size: int,
                      rt: Runtime, seed: int) -> dict:
    """Mean validation losses on fixed augmentation draws; no EMA, no enqueue, BN frozen."""
    model.eval()
    sums, n = {}, 0
    with torch.no_grad():
        for i, start in enumerate(range(0, len(images) - batch_size + 1, batch_size)):
            x = torch.from_numpy(images[start:start + batch_size]).to(rt.device)
            gen = step_generator(seed + 99991, i, rt.device)
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
        self.queries, self.query_y = cache.load(val["image_id"]), targets(val, meta)
        self.knn, self.meta, self.rt = knn, meta, rt
        self.name = "f1_macro" if metric == "f1_pos_tuned" else metric

    def __call__(self, backbone) -> dict:
        if len(self.queries) == 0 or len(self.bank) == 0:
            return {}
        fb = extract_features(backbone, self.bank, self.rt.device, self.rt.precision)[3]
        fq = extract_features(backbone, self.queries, self.rt.device, self.rt.precision)[3]
        scores = knn_scores(fb, self.bank_y, fq, self.knn.k, self.knn.temperature,
                            self.meta.task, self.meta.n_classes)
        return {f"knn_{self.name}": float(metric_fn(self.name)(self.query_y, scores)[0])}


def run(job: PretrainJob) -> None:
    """Pretrain one method on one dataset and write its encoder and loss curve.

    Args:
        job: the typed settings of the run (``PretrainRun``) and its files. A checkpoint at
            ``job.resume_path`` of the same result settings and inputs is resumed; one of
            another configuration is ignored. Under data parallelism (WORLD_SIZE > 1) each
            process runs this with the same job; rank 0 writes the outputs.
    """
    r, s = job.run, job.run.settings
    rt = prepare(s.device, s.precision, s.deterministic, s.seed)
    if dist.is_dist() and dist.rank() == 0:
        log(f"data-parallel over {dist.world_size()} processes ({rt.device.type})")
    split = pd.read_csv(job.split_csv, dtype={"image_id": str, "patient_id": str})
    cache = ImageCache(job.cache_images, job.cache_index)
    train = split[split["split"] == "train"]
    val = split[split["split"] == "val"]
    val = val.sample(min(len(val), s.val_max_images), random_state=s.seed)
    val_images = cache.load(val["image_id"])

    source = BatchSource(cache.images, s.batch_size, s.seed, rt.device, s.data_placement,
                         rows=cache.rows(train["image_id"]))
    steps_per_epoch = source.steps_per_epoch
    total = s.epochs * steps_per_epoch
    parts = setup(r, cache.channels, rt, total, cache.size, s.channels_last, s.compile)
    model = parts.model
    monitor = KnnMonitor(r, job.meta, r.metric, cache, train, val, rt) if s.knn.enabled else None
    validate = len(val_images) >= s.batch_size and dist.rank() == 0
    if s.select == "val_loss" and len(val_images) < s.batch_size:
        log(f"select: val_loss needs at least one validation batch ({s.batch_size} images, "
            f"have {len(val_images)}): keeping the last epoch")

    def on_epoch_end(epoch, state):
        if dist.rank() != 0 or not (validate or monitor):
            return False
        row = {"step": (epoch + 1) * steps_per_epoch, "epoch": epoch}
        if validate:
            row.update(validation_losses(model, parts.augment, val_images, s.batch_size, rt,
                                         s.seed))
            best = state.extra.get("best_val_loss")
            if s.select == "val_loss" and (best is None or row["val_loss"] < best):
                state.extra.update(best_val_loss=row["val_loss"], best_epoch=epoch,
                                   best_backbone=model_state(model.backbone))
        if monitor is not None:
            row.update(monitor(model.backbone))
        state.history.append(row)
        return False

    resume = ResumeCheckpoint(job.resume_path, fingerprint(
        result_fields(r), job.split_csv, job.cache_index, job.cache_images,
        dist.world_size(), job.code))
    state = train_loop(
        modules=model, optimizer=parts.optimizer, source=source, epochs=s.epochs,
        step_fn=parts.step_fn, lr_fn=schedule(s.optimizer, total, steps_per_epoch),
        resume=resume, seed=s.seed, checkpoint_every=s.checkpoint_every,
        log_every=s.log_every, on_epoch_end=on_epoch_end,
        desc=f"pretrain {r.dataset}/{r.method}", progress=s.progress,
        pairs_per_step=s.batch_size,
    )
    if dist.rank() == 0:
        selected = state.epoch - 1
        if "best_backbone" in state.extra:
            model.backbone.load_state_dict(state.extra["best_backbone"])
            selected = state.extra["best_epoch"]
        save_encoder(job.out_encoder, model.backbone, {
            "dataset": r.dataset, "method": r.method, "arch": s.arch,
            "in_channels": cache.channels, "image_size": cache.size, "seed": s.seed,
            "epochs": int(state.epoch), "selected_epoch": int(selected),
            "settings": result_fields(r)})
        write_csv(job.out_metrics, pd.DataFrame(state.history), float_format="%.6g")
        resume.remove()
    if dist.is_dist():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
