"""Linear probes on frozen features (the linear probe is the block-4 row of layer probing).

A linear classifier per block is trained on the cached features (see ``features``) of a
frozen backbone, selected on validation, and evaluated on test with a bootstrap CI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ilmoco.backbone import BLOCKS
from ilmoco.datasets.base import DatasetMeta
from ilmoco.features import load_features
from ilmoco.io import write_csv, write_json
from ilmoco.stats import best_f1_threshold, bootstrap_ci, metric_fn
from ilmoco.tasks import loss_fn, n_outputs, prediction_loss, probabilities, targets


def fit_linear(x_tr, y_tr, x_va, y_va, task: str, n_out: int, metric: str, cfg: dict,
               seed: int) -> tuple[nn.Linear, dict]:
    """Linear classifier on standardised features (Adam, mini-batches), the epoch with the
    best validation metric kept. Returns the classifier (expects standardised input) and the
    standardisation."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.from_numpy((x_tr - mu) / sd).float()
    xv = torch.from_numpy((x_va - mu) / sd).float()
    yt = torch.from_numpy(np.asarray(y_tr))
    head = nn.Linear(xt.shape[1], n_out)
    opt = torch.optim.Adam(head.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    score_fn = metric_fn("f1_macro" if metric == "f1_pos_tuned" else metric)
    best, best_state, best_epoch, bad = -np.inf, None, -1, 0
    bs = cfg["batch_size"]
    for epoch in range(cfg["epochs"]):
        perm = torch.randperm(len(xt), generator=g)
        for start in range(0, len(xt), bs):
            idx = perm[start:start + bs]
            loss = loss_fn(head(xt[idx]), yt[idx], task)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            p_va = probabilities(head(xv), task).numpy()
        score = float(score_fn(y_va, p_va)[0])
        if not np.isfinite(score):  # e.g. validation lacks a class: fall back on val loss
            score = -prediction_loss(y_va, p_va, task)
        if score > best:
            best, best_epoch, bad = score, epoch, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg["patience"]:
                break
    head.load_state_dict(best_state)
    return head, {"mu": mu, "sd": sd, "best_epoch": best_epoch, "val_score": best}


@torch.no_grad()
def _proba(head: nn.Linear, info: dict, x: np.ndarray, task: str) -> np.ndarray:
    return probabilities(head(torch.from_numpy((x - info["mu"]) / info["sd"]).float()),
                         task).numpy()


@dataclass
class ProbeJob:
    dataset: str
    method: str
    features: str
    split_csv: str
    meta: DatasetMeta
    metric: str
    cfg: dict
    bootstrap: dict
    out_csv: str
    out_json: str


def run_probe(job: ProbeJob) -> pd.DataFrame:
    index, feats = load_features(job.features)
    split = pd.read_csv(job.split_csv, dtype={"image_id": str, "patient_id": str})
    split = split.set_index("image_id")
    parts = {k: index.index[index["set"] == k] for k in ("train", "val", "test")}
    lab = {k: split.loc[index.loc[v, "image_id"]] for k, v in parts.items()}
    y = {k: targets(v, job.meta) for k, v in lab.items()}
    rows = []
    for block in BLOCKS:
        x = {k: feats[block][v] for k, v in parts.items()}
        head, info = fit_linear(x["train"], y["train"], x["val"], y["val"], job.meta.task,
                                n_outputs(job.meta), job.metric, job.cfg, job.cfg["seed"])
        p_test = _proba(head, info, x["test"], job.meta.task)
        threshold = None
        if job.metric == "f1_pos_tuned":
            threshold = best_f1_threshold(y["val"], _proba(head, info, x["val"], job.meta.task))
        groups = lab["test"]["patient_id"].to_numpy() if job.meta.patient_ids else None
        ci = bootstrap_ci(y["test"], p_test, metric_fn(job.metric, threshold), groups,
                          job.bootstrap["resamples"], job.bootstrap["seed"],
                          job.bootstrap["level"])
        rows.append({"dataset": job.dataset, "method": job.method, "block": block,
                     "metric": job.metric, "estimate": ci["estimate"], "ci_low": ci["ci_low"],
                     "ci_high": ci["ci_high"], "n_test": ci["n_images"],
                     "n_train": len(x["train"]), "best_epoch": info["best_epoch"],
                     "val_score": info["val_score"], "feature_dim": x["train"].shape[1]})
    df = pd.DataFrame(rows)
    write_csv(job.out_csv, df, float_format="%.6g")
    write_json(job.out_json, {"rows": rows, "config": {"probe": job.cfg,
                                                       "bootstrap": job.bootstrap}})
    return df
