"""The ``pretrain`` stage: MoCo / MoCo+MSE / MoCo+BT on the train split's images.

Writes ``encoder.pt`` (the query backbone's weights plus the metadata fine-tuning checks)
and ``metrics.csv`` (the loss curve: every term, learning rate, throughput, validation loss).
Validation uses fixed augmentation draws and changes nothing: the momentum encoder and the
queue are only touched by training steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ilmoco import dist
from ilmoco.augment import GpuAugment, preset
from ilmoco.cache import ImageCache
from ilmoco.config import git_revision
from ilmoco.engine import (
    BatchSource,
    Checkpointer,
    autocast,
    build_optimizer,
    configure_determinism,
    fingerprint,
    lr_at,
    resolve_device,
    step_generator,
    train_loop,
)
from ilmoco.io import write_csv
from ilmoco.moco import MoCo, MoCoConfig, momentum_at

ENCODER_FORMAT = 1


def moco_config(cfg: dict, method: str, in_channels: int) -> MoCoConfig:
    m, mse, bt = cfg["moco"], cfg["mse"], cfg["bt"]
    return MoCoConfig(
        method=method, arch=cfg["arch"], in_channels=in_channels,
        zero_init_residual=cfg["zero_init_residual"], dim=m["dim"], queue_size=m["queue_size"],
        momentum=m["momentum"], momentum_schedule=m["momentum_schedule"],
        temperature=m["temperature"], head=m["head"], bn=m["bn"], bn_splits=m["bn_splits"],
        mse_pool=list(mse["pool"]), mse_weights=list(mse["weights"]),
        bt_weights=list(bt["weights"]), bt_projector=list(bt["projector"]),
        bt_lambda_on=bt["lambda_on"], bt_lambda_off=bt["lambda_off"], bt_scale=bt["scale"],
    )


@dataclass
class PretrainJob:
    dataset: str
    method: str
    split_csv: str
    cache_images: str
    cache_index: str
    augment: str  # preset name
    cfg: dict  # the resolved ``pretrain`` config section
    out_encoder: str
    out_metrics: str
    ckpt_path: str
    progress: bool = True


def _val_loss(model: MoCo, aug, images: np.ndarray, cfg, device, seed) -> dict:
    """Mean validation losses on fixed augmentation draws; no EMA, no enqueue, BN frozen."""
    model.eval()
    sums, n = {}, 0
    bs = cfg["batch_size"]
    with torch.no_grad():
        for i, start in enumerate(range(0, len(images) - bs + 1, bs)):
            x = torch.from_numpy(images[start:start + bs]).to(device)
            g = step_generator(seed + 99991, i, device)
            x1, x2 = aug(x, g), aug(x, g)
            with autocast(device, cfg["precision"]):
                _, logs = model(x1, x2, g, update=False)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
    model.train()
    return {f"val_{k}": v / n for k, v in sums.items()} if n else {}


def run(job: PretrainJob) -> None:
    cfg = job.cfg
    device = resolve_device(cfg["device"])
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_from_env(device.type)
    configure_determinism(cfg["deterministic"], device)
    seed = int(cfg["seed"])

    split = pd.read_csv(job.split_csv, dtype={"image_id": str, "patient_id": str})
    cache = ImageCache(job.cache_images, job.cache_index)
    train_rows = cache.rows(split.loc[split["split"] == "train", "image_id"])
    val_ids = split.loc[split["split"] == "val", "image_id"]
    val_ids = val_ids.sample(min(len(val_ids), cfg["val_max_images"]), random_state=seed)
    val_images = cache.load(val_ids)

    torch.manual_seed(seed)
    source = BatchSource(cache.images, cfg["batch_size"], seed, device, cfg["data_placement"],
                         rows=train_rows)
    epochs, spe = cfg["epochs"], source.steps_per_epoch
    total = epochs * spe
    built = build(cfg, job.method, cache.channels, device,
                  preset(job.augment, "ssl", cfg["augment_overrides"]), total, cache.size)
    model, aug, opt = built.model, built.aug, cfg["optimizer"]
    warmup = int(round(opt["warmup_epochs"] * spe))

    def on_epoch_end(epoch, state):
        if len(val_images) >= cfg["batch_size"] and dist.rank() == 0:
            row = {"step": (epoch + 1) * spe, "epoch": epoch}
            row.update(_val_loss(model, aug, val_images, cfg, device, seed))
            state.history.append(row)
        return False

    tag = fingerprint(cfg, job.method, job.augment, job.split_csv, job.cache_index,
                      dist.world_size())
    ckpt = Checkpointer(job.ckpt_path, tag)
    state = train_loop(
        modules=model, optimizer=built.optimizer, source=source, epochs=epochs,
        step_fn=built.step_fn,
        lr_fn=lambda g: lr_at(g, total, opt["lr"], opt["schedule"], warmup), ckpt=ckpt,
        seed=seed, ckpt_every=cfg["checkpoint_every"], log_every=cfg["log_every"],
        on_epoch_end=on_epoch_end, desc=f"pretrain {job.dataset}/{job.method}",
        progress=job.progress, pairs_per_step=cfg["batch_size"],
    )
    if dist.rank() == 0:
        save_encoder(model, job, built.mcfg, cache, state)
        write_csv(job.out_metrics, pd.DataFrame(state.history), float_format="%.6g")
        ckpt.remove()
    if dist.is_dist():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


@dataclass
class Built:
    """One pretraining run's pieces: the model (and its DDP wrapper ``net``), optimiser,
    augmentation and the step function the training loop calls."""

    model: MoCo
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    aug: GpuAugment | None
    step_fn: Callable  # (uint8 batch, labels, generator, step) -> (loss, logs)
    forward: Callable  # (view 1, view 2, generator, step) -> (loss, logs), views augmented
    memory_format: torch.memory_format
    mcfg: MoCoConfig


def build(cfg: dict, method: str, channels: int, device: torch.device, augment,
          total_steps: int, image_size: int | None = None) -> Built:
    """Model, optimiser and per-step function, exactly as the ``pretrain`` stage uses them.

    ``augment`` is an AugmentSpec (or None for pre-augmented input); the step function
    takes uint8 batches, augments two views per image and returns (loss, logs).
    """
    mcfg = moco_config(cfg, method, channels)
    if cfg["batch_size"] > mcfg.queue_size:
        raise ValueError(f"pretrain.moco.queue_size ({mcfg.queue_size}) must be >= the batch "
                         f"size ({cfg['batch_size']})")
    model = MoCo(mcfg).to(device)
    if dist.is_dist() and mcfg.bn == "sync":
        from ilmoco.dist import convert_sync_batchnorm

        model = convert_sync_batchnorm(model)
    channels_last = device.type == "cuda" and cfg["channels_last"]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.trainable_modules(), cfg["optimizer"])
    net = model
    if dist.is_dist():
        net = torch.nn.parallel.DistributedDataParallel(
            model, broadcast_buffers=False,
            device_ids=[device.index] if device.type == "cuda" else None)
    if cfg["compile"]:
        model.encoder_q.compile(dynamic=False)
        model.encoder_k.compile(dynamic=False)
    aug = GpuAugment(augment, image_size) if augment is not None else None
    mom = cfg["moco"]
    bs = cfg["batch_size"]
    offset = dist.rank() * (bs // dist.world_size())

    def forward(x1, x2, gen, g):
        with autocast(device, cfg["precision"]):
            return net(x1, x2, gen, update=True,
                       momentum=momentum_at(g, total_steps, mom["momentum"],
                                            mom["momentum_schedule"]))

    def step_fn(x, _y, gen, g):
        x1 = aug(x, gen, bs, offset).contiguous(memory_format=memory_format)
        x2 = aug(x, gen, bs, offset).contiguous(memory_format=memory_format)
        return forward(x1, x2, gen, g)

    return Built(model, net, optimizer, aug, step_fn, forward, memory_format, mcfg)


def save_encoder(model: MoCo, job: PretrainJob, mcfg: MoCoConfig, cache, state) -> None:
    from ilmoco.io import torch_save

    backbone = model.encoder_q.backbone
    sd = {k.replace("_orig_mod.", ""): v.detach().cpu() for k, v in backbone.state_dict().items()}
    meta = {
        "format_version": ENCODER_FORMAT, "kind": "pretrained", "dataset": job.dataset,
        "method": job.method, "arch": mcfg.arch, "in_channels": mcfg.in_channels,
        "image_size": cache.size, "moco": mcfg.to_dict(), "seed": int(job.cfg["seed"]),
        "epochs": int(state.epoch), "git": git_revision(Path(__file__).parent),
        "torch": str(torch.__version__),
    }
    torch_save({"backbone": sd, "meta": meta}, job.out_encoder)
