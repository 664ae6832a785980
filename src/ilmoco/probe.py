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

from ilmoco.backbone import Backbone
from ilmoco.cache import ImageCache
from ilmoco.checkpoints import load_backbone
from ilmoco.classification import loss_fn, n_outputs, probabilities, targets
from ilmoco.datasets.base import DatasetMeta
from ilmoco.evaluation import EarlyStopping, extract_features, selection_score
from ilmoco.io import write_csv, write_json
from ilmoco.registry import BLOCKS, fraction_column
from ilmoco.runtime import resolve_device
from ilmoco.settings import ProbeRun, ProbeSettings, result_fields
from ilmoco.stats import metric_interval, tuned_threshold


def fit_linear(x_tr, y_tr, x_va, y_va, task: str, n_out: int, metric: str,
               cfg: ProbeSettings) -> tuple[nn.Linear, dict]:
    """Linear classifier on standardised features (Adam, mini-batches), the epoch with the
    best validation metric kept. Returns the classifier (expects standardised input) and the
    standardisation."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.from_numpy((x_tr - mu) / sd).float()
    xv = torch.from_numpy((x_va - mu) / sd).float()
    yt = torch.from_numpy(np.asarray(y_tr))
    head = nn.Linear(xt.shape[1], n_out)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stopping = EarlyStopping(cfg.patience)
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            loss = loss_fn(head(xt[idx]), yt[idx], task)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            p_va = probabilities(head(xv), task).numpy()
        _, stop = stopping.update(epoch, selection_score(metric, y_va, p_va, task),
                                  lambda: {k: v.clone() for k, v in head.state_dict().items()})
        if stop:
            break
    head.load_state_dict(stopping.best_state)
    return head, {"mu": mu, "sd": sd, "best_epoch": stopping.best_epoch,
                  "val_score": stopping.best_score}


@torch.no_grad()
def linear_proba(head: nn.Linear, info: dict, x: np.ndarray, task: str) -> np.ndarray:
    return probabilities(head(torch.from_numpy((x - info["mu"]) / info["sd"]).float()),
                         task).numpy()


def probe_sets(split: pd.DataFrame, fraction: float) -> dict[str, pd.DataFrame]:
    """Train (labelled at the probe fraction), val and test rows."""
    col = fraction_column(fraction)
    return {"train": split[(split["split"] == "train") & split[col].astype(bool)],
            "val": split[split["split"] == "val"], "test": split[split["split"] == "test"]}


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


def frozen_backbone(job: ProbeJob, channels: int) -> Backbone:
    if job.model is None:
        torch.manual_seed(job.init_seed)
        return Backbone(job.run.arch, channels, job.zero_init_residual)
    backbone, _ = load_backbone(job.model, dataset=job.run.dataset, method=job.run.method)
    return backbone


def run_probe(job: ProbeJob) -> pd.DataFrame:
    """Probe the frozen encoder of ``job`` at blocks 1-4; writes ``probe.csv`` and
    ``probe.json`` and returns the rows (block, estimate, interval, ...)."""
    r, meta = job.run, job.meta
    split = pd.read_csv(job.split_csv, dtype={"image_id": str, "patient_id": str})
    sets = probe_sets(split, r.settings.fraction)
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
