"""Linear probes of one encoder at blocks 1-4 (the block-4 probe is the linear probe
unless ``probe.linear: only_ll``).

``probe.protocol: frozen`` (default): the backbone is frozen *in eval mode* (BatchNorm uses
its running statistics and they do not move); its globally pooled block 1-4 features are
extracted once, standardised, and a linear classifier per block is trained on them with
early stopping on validation, then evaluated on test with a bootstrap interval.

``probe.protocol: official``: the official probing code (``probing_moco_*.py``): raw pooled
features of the backbone under ``no_grad`` in train mode (BatchNorm statistics move), the
training images augmented (``probe_augment``), Adam at ``probe.lr``, every epoch run and the
last kept (:mod:`ilmoco.training.probing`). The official code reported validation only:
``val_score`` is that number; the test estimate and interval are reported here in addition.

Probed encoders: each pretrained encoder, the random-init control (the pretraining's own
starting point: same seed, same initialisation) and, as a reference, the supervised model
fine-tuned on 100 % labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import nn

from ilmoco import numerics
from ilmoco.config.settings.fields import result_fields
from ilmoco.config.settings.probe import ProbeRun
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
from ilmoco.training.inference import extract_features
from ilmoco.training.linear_probe import fit_linear, linear_proba
from ilmoco.training.probing import (
    ProbeData,
    ProbeHeads,
    head_probabilities,
    probed_backbone,
    train_heads,
)
from ilmoco.training.runtime import fingerprint, prepare, resolve_device


@dataclass
class ProbeJob:
    """One probed encoder: ``model`` is an ``encoder.pt`` / ``model.pt``, or None for the
    random-init control (``init_seed`` and ``zero_init_residual`` give its initialisation)."""

    run: ProbeRun
    model: str | None
    init_seed: int
    zero_init_residual: bool
    split_csv: str
    meta: DatasetMeta
    cache_images: str
    cache_index: str
    out_csv: str
    out_json: str
    resume_path: str | None = None  # the official protocol's resume checkpoint
    code: str = ""  # the code version (a code change must not resume an old checkpoint)


def frozen_backbone(job: ProbeJob, channels: int) -> nn.Module:
    return probed_backbone(job.model, job.run.backbone.builder, job.run.arch, channels,
                           job.zero_init_residual, job.init_seed, dataset=job.run.dataset,
                           method=job.run.method)


def run(job: ProbeJob) -> pd.DataFrame:
    """Probe the encoder of ``job`` at blocks 1-4 with its protocol; writes ``probe.csv``
    and ``probe.json`` and returns the rows (block, estimate, interval, ...)."""
    if job.run.settings.protocol == "official":
        return run_official(job)
    r, meta = job.run, job.meta
    sets = labelled_sets(read_table(job.split_csv), r.settings.fraction, job.split_csv)
    cache = ImageCache(job.cache_images, job.cache_index)
    device = resolve_device(r.device)
    backbone = frozen_backbone(job, cache.channels).to(device)
    ids = pd.concat([v["image_id"] for v in sets.values()])
    all_feats = extract_features(backbone, cache.load(ids), device, r.precision)
    bounds = np.cumsum([0] + [len(v) for v in sets.values()])
    feats = {k: [f[bounds[i]:bounds[i + 1]] for f in all_feats] for i, k in enumerate(sets)}
    y = {k: targets(v, meta) for k, v in sets.items()}
    groups = sets["test"]["patient_id"].to_numpy() if meta.patient_ids else None
    rows = []
    for b, block in enumerate(BLOCKS):
        x = {k: f[b] for k, f in feats.items()}
        head, info = fit_linear(x["train"], y["train"], x["val"], y["val"], meta.task,
                                n_outputs(meta), r.metric, r.settings)
        threshold = tuned_threshold(r.metric, y["val"],
                                    partial(linear_proba, head, info, x["val"], meta.task))
        ci = metric_interval(y["test"], linear_proba(head, info, x["test"], meta.task),
                           r.metric, threshold, groups, r.bootstrap)
        rows.append({"dataset": r.dataset, "method": r.method, "block": block,
                     "metric": r.metric, "estimate": ci["estimate"], "ci_low": ci["ci_low"],
                     "ci_high": ci["ci_high"], "n_test": ci["n_images"],
                     "n_train": len(x["train"]), "best_epoch": info["best_epoch"],
                     "val_score": info["val_score"], "feature_dim": x["train"].shape[1]})
    df = pd.DataFrame(rows)
    write_csv(job.out_csv, df, float_format="%.6g")
    write_json(job.out_json, {"rows": rows, "settings": result_fields(r),
                              "numerics": numerics.describe(),
                              "model": job.model or "random-init"})
    return df


def test_row(r, block: str, y_val, p_val, y_test, p_test, groups) -> dict:
    """The test estimate and interval of one probe (the threshold chosen on validation)."""
    threshold = tuned_threshold(r.metric, y_val, p_val)
    ci = metric_interval(y_test, p_test, r.metric, threshold, groups, r.bootstrap)
    return {"dataset": r.dataset, "method": r.method, "block": block, "metric": r.metric,
            "estimate": ci["estimate"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
            "n_test": ci["n_images"]}


def run_official(job: ProbeJob) -> pd.DataFrame:
    """The official probing protocol (module docstring): one pass of the train-mode backbone
    per step feeds a head per block; the last epoch's heads are scored."""
    r, s, meta = job.run, job.run.settings, job.meta
    rt = prepare(r.device, r.precision, False, s.seed)
    sets = labelled_sets(read_table(job.split_csv), s.fraction, job.split_csv)
    cache = ImageCache(job.cache_images, job.cache_index)
    backbone = frozen_backbone(job, cache.channels)
    probe = ProbeHeads(backbone, range(len(BLOCKS)), n_outputs(meta)).to(rt.device, rt.dtype)
    train, val, test = sets["train"], sets["val"], sets["test"]
    data = ProbeData(BatchSource(cache.images, s.batch_size, s.seed, rt.device,
                                 labels=targets(train, meta), rows=cache.rows(train["image_id"])),
                     cache.view(val["image_id"]), targets(val, meta))
    aug = BatchAugment(r.augment, cache.size, rt.dtype) if r.augment is not None else None
    resume = ResumeCheckpoint(job.resume_path, fingerprint(
        result_fields(r), job.model or "random-init", job.init_seed, job.split_csv,
        job.cache_index, job.cache_images, job.code)) if job.resume_path else None
    optimizer = torch.optim.Adam(probe.heads.parameters(), lr=s.lr,
                                 weight_decay=s.weight_decay)
    state = train_heads(probe, data, augment=aug, optimizer=optimizer, lr_fn=lambda _: s.lr,
                        epochs=s.epochs, rt=rt, task=meta.task, metric=r.metric, seed=s.seed,
                        resume=resume, progress="lines",
                        desc=f"probe {r.dataset}/{r.method}")
    p_val = head_probabilities(probe, data.val_images, rt, meta.task)
    p_test = head_probabilities(probe, cache.view(test["image_id"]), rt, meta.task)
    y_test = targets(test, meta)
    groups = test["patient_id"].to_numpy() if meta.patient_ids else None
    last = [h for h in state.history if "loss" not in h][-1]
    rows = []
    for b, block in enumerate(BLOCKS):
        rows.append({**test_row(r, block, data.y_val, p_val[b], y_test, p_test[b], groups),
                     "n_train": len(train), "best_epoch": int(state.epoch) - 1,
                     "val_score": last[f"val_{block}"],
                     "feature_dim": backbone.block_dims[b]})
    df = pd.DataFrame(rows)
    write_csv(job.out_csv, df, float_format="%.6g")
    write_json(job.out_json, {
        "rows": rows, "settings": result_fields(r), "model": job.model or "random-init",
        "numerics": numerics.describe(), "protocol": "official",
        "reported_officially": "val_score (the official probing code evaluated validation "
        "only; estimate and ci_* are test, reported here too)",
        "history": [h for h in state.history if "loss" not in h]})
    if resume is not None:
        resume.remove()
    return df
