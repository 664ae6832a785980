"""The ``pretrain`` stage: a self-supervised method (a base with an intermediate term) on the
train split's images.

Writes ``encoder.pt`` (the learning branch's backbone plus the metadata later stages check)
and ``metrics.csv`` (every loss term, learning rate and throughput at each log interval; per
epoch the validation losses and the kNN monitor). Validation uses fixed augmentation draws
and changes nothing: the momentum encoder and the queue are only touched by training steps.
The saved encoder is the last epoch's, or (``select: val_loss``, as the official code) the
epoch with the lowest validation loss; the official code's validation loss is that of the
whole validation set (``val_max_images: null``) with the image itself as both views
(``val_views: identical``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ilmoco import dist, numerics
from ilmoco.config.settings.fields import result_fields
from ilmoco.config.settings.pretrain import PretrainRun
from ilmoco.data.batches import BatchSource
from ilmoco.data.cache import ImageCache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import read_table, write_csv
from ilmoco.runlog import log
from ilmoco.training.checkpoints import ResumeCheckpoint, save_encoder
from ilmoco.training.events import EventLog
from ilmoco.training.inference import model_state
from ilmoco.training.loop import train_loop
from ilmoco.training.optim import schedule
from ilmoco.training.runtime import fingerprint, prepare
from ilmoco.training.ssl import KnnMonitor, setup, validation_losses


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
    events_dir: str | None = None  # TensorBoard event files (not an output)


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
    split = read_table(job.split_csv)
    cache = ImageCache(job.cache_images, job.cache_index)
    train = split[split["split"] == "train"]
    val = split[split["split"] == "val"]
    if s.val_max_images is not None:
        val = val.sample(min(len(val), s.val_max_images), random_state=s.seed)
    val_images = cache.view(val["image_id"])

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
                                         s.seed, identical=s.val_views == "identical"))
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
        dist.world_size(), job.code, r.init.weights if r.init else None))
    events = EventLog(job.events_dir, s.tensorboard)
    state = train_loop(
        modules=model, optimizer=parts.optimizer, source=source, epochs=s.epochs,
        step_fn=parts.step_fn, lr_fn=schedule(s.optimizer, total, steps_per_epoch),
        resume=resume, seed=s.seed, checkpoint_every=s.checkpoint_every,
        log_every=s.log_every, on_epoch_end=events.after(on_epoch_end),
        desc=f"pretrain {r.dataset}/{r.method}", progress=s.progress,
        pairs_per_step=s.batch_size,
    )
    events.close(state.history)
    if dist.rank() == 0:
        selected = state.epoch - 1
        if "best_backbone" in state.extra:
            model.backbone.load_state_dict(state.extra["best_backbone"])
            selected = state.extra["best_epoch"]
        save_encoder(job.out_encoder, model.backbone, {
            "dataset": r.dataset, "method": r.method, "arch": s.arch,
            "builder": r.backbone.builder,
            "in_channels": cache.channels, "image_size": cache.size, "seed": s.seed,
            "epochs": int(state.epoch), "selected_epoch": int(selected),
            "settings": result_fields(r), "numerics": numerics.describe()})
        write_csv(job.out_metrics, pd.DataFrame(state.history), float_format="%.6g")
        resume.remove()
    if dist.is_dist():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
