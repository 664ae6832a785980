"""The ``linear_probe`` stage (``probe.linear: only_ll``): the paper's Table 1 linear probe as
the official code ran it, ``fine_tune_mocov2.py --only-ll``.

That is the fine-tuning run of the probe's label fraction with the backbone's forward under
``no_grad`` while the module stays in train mode (BatchNorm statistics move): a linear head
on the pooled block-4 output, trained with the fine-tuning's augmentation, batch, optimiser
and epochs, and the last epoch kept (the official code never loaded its best checkpoint).
Writes ``linear.csv`` (one row: the test estimate with its interval, the last epoch's
validation score) and ``linear.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ilmoco import numerics
from ilmoco.config.settings.fields import result_fields
from ilmoco.config.settings.linear_probe import LinearProbeRun
from ilmoco.data.augment import BatchAugment
from ilmoco.data.batches import BatchSource
from ilmoco.data.cache import ImageCache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.data.split import labelled_sets
from ilmoco.evaluation.bootstrap import metric_interval
from ilmoco.evaluation.metrics import tuned_threshold
from ilmoco.io import read_table, write_csv, write_json
from ilmoco.names import BLOCKS
from ilmoco.training.checkpoints import ResumeCheckpoint
from ilmoco.training.heads import n_outputs, targets
from ilmoco.training.optim import build_optimizer, schedule
from ilmoco.training.probing import (
    ProbeData,
    ProbeHeads,
    head_probabilities,
    probed_backbone,
    train_heads,
)
from ilmoco.training.runtime import fingerprint, prepare


@dataclass
class LinearProbeJob:
    """One encoder's ``--only-ll`` probe: ``model`` an ``encoder.pt`` / ``model.pt``, or None
    for the random-init control (``init_seed``, ``zero_init_residual``)."""

    run: LinearProbeRun
    model: str | None
    init_seed: int
    zero_init_residual: bool
    split_csv: str
    meta: DatasetMeta
    cache_images: str
    cache_index: str
    out_csv: str
    out_json: str
    resume_path: str | None = None
    code: str = ""


def run(job: LinearProbeJob) -> pd.DataFrame:
    """Train and score the ``--only-ll`` probe of ``job``; writes ``linear.csv`` and
    ``linear.json`` and returns the row."""
    r, s, meta = job.run, job.run.settings, job.meta
    rt = prepare(s.device, s.precision, s.deterministic, r.seed)
    sets = labelled_sets(read_table(job.split_csv), r.fraction, job.split_csv)
    train, val, test = sets["train"], sets["val"], sets["test"]
    cache = ImageCache(job.cache_images, job.cache_index)
    backbone = probed_backbone(job.model, r.backbone.builder, r.arch, cache.channels,
                               job.zero_init_residual, job.init_seed, dataset=r.dataset,
                               method=r.method)
    last_block = len(BLOCKS) - 1  # the pooled embedding the fine-tuning head reads
    probe = ProbeHeads(backbone, (last_block,), n_outputs(meta)).to(rt.device, rt.dtype)
    source = BatchSource(cache.images, s.batch_size, r.seed, rt.device, s.data_placement,
                         labels=targets(train, meta), rows=cache.rows(train["image_id"]),
                         min_steps=s.min_steps_per_epoch)
    data = ProbeData(source, cache.view(val["image_id"]), targets(val, meta))
    aug = BatchAugment(r.augment, cache.size, rt.dtype) if r.augment is not None else None
    resume = ResumeCheckpoint(job.resume_path, fingerprint(
        result_fields(r), job.model or "random-init", job.init_seed, job.split_csv,
        job.cache_index, job.cache_images, job.code)) if job.resume_path else None
    state = train_heads(
        probe, data, augment=aug, optimizer=build_optimizer(probe.heads, s.optimizer),
        lr_fn=schedule(s.optimizer, s.epochs * source.steps_per_epoch, source.steps_per_epoch),
        epochs=s.epochs, rt=rt, task=meta.task, metric=r.metric, seed=r.seed, resume=resume,
        checkpoint_every=s.checkpoint_every, log_every=s.log_every, progress=s.progress,
        desc=f"linear probe {r.dataset}/{r.method}")
    (p_val,) = head_probabilities(probe, data.val_images, rt, meta.task)
    (p_test,) = head_probabilities(probe, cache.view(test["image_id"]), rt, meta.task)
    y_test = targets(test, meta)
    groups = test["patient_id"].to_numpy() if meta.patient_ids else None
    threshold = tuned_threshold(r.metric, data.y_val, p_val)
    ci = metric_interval(y_test, p_test, r.metric, threshold, groups, r.bootstrap)
    epochs = [h for h in state.history if "loss" not in h]
    row = {"dataset": r.dataset, "method": r.method, "block": BLOCKS[last_block],
           "metric": r.metric, "estimate": ci["estimate"], "ci_low": ci["ci_low"],
           "ci_high": ci["ci_high"], "n_test": ci["n_images"], "n_train": len(train),
           "epochs": int(state.epoch), "val_score": epochs[-1][f"val_{BLOCKS[last_block]}"],
           "feature_dim": backbone.block_dims[last_block], "protocol": "only_ll"}
    df = pd.DataFrame([row])
    write_csv(job.out_csv, df, float_format="%.6g")
    write_json(job.out_json, {"row": row, **ci, "settings": result_fields(r),
                              "numerics": numerics.describe(),
                              "model": job.model or "random-init", "history": epochs})
    if resume is not None:
        resume.remove()
    return df
