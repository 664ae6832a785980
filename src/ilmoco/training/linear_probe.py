"""A linear classifier on frozen features: the probe of one block (the linear probe is the
block-4 probe)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ilmoco.config.settings.probe import ProbeSettings
from ilmoco.training.heads import has_masked, loss_fn, probabilities
from ilmoco.training.inference import EarlyStopping, selection_score


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
    masked = has_masked(y_tr)
    head = nn.Linear(xt.shape[1], n_out)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stopping = EarlyStopping(cfg.patience)
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            loss = loss_fn(head(xt[idx]), yt[idx], task, masked)
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
