"""Linear probes on frozen features (the linear probe is the block-4 row of layer probing).

The backbone is frozen *in eval mode*: BatchNorm uses its running statistics and they do not
move (the official probing code kept BN in train mode, so its statistics drifted). Its
globally pooled block 1-4 features are extracted once; a linear classifier per block is
trained on them, selected on validation, and evaluated on test with a bootstrap interval.

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

from ilmoco.config.settings import ProbeRun, result_fields
from ilmoco.data.cache import ImageCache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.data.split import labelled_sets
from ilmoco.evaluation.bootstrap import metric_interval
from ilmoco.evaluation.metrics import tuned_threshold
from ilmoco.io import read_table, write_csv, write_json
from ilmoco.models.backbone import build_backbone
from ilmoco.names import BLOCKS
from ilmoco.training.checkpoints import load_backbone
from ilmoco.training.heads import n_outputs, targets
from ilmoco.training.inference import extract_features
from ilmoco.training.linear_probe import fit_linear, linear_proba
from ilmoco.training.runtime import resolve_device


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


def frozen_backbone(job: ProbeJob, channels: int) -> nn.Module:
    if job.model is None:
        torch.manual_seed(job.init_seed)
        return build_backbone(job.run.backbone.builder, job.run.arch, channels,
                              job.zero_init_residual)
    backbone, _ = load_backbone(job.model, dataset=job.run.dataset, method=job.run.method)
    return backbone


def run(job: ProbeJob) -> pd.DataFrame:
    """Probe the frozen encoder of ``job`` at blocks 1-4; writes ``probe.csv`` and
    ``probe.json`` and returns the rows (block, estimate, interval, ...)."""
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
                              "model": job.model or "random-init"})
    return df
