"""Classification heads of the three kinds of task: targets, outputs, loss, probabilities.

Multi-label (NIH): one sigmoid + BCE per label. Binary (IDC, EyePACS): a 2-way softmax with
cross-entropy, as the paper. Multi-class (some MedMNIST sets): K-way softmax. Losses and
probabilities are computed in fp32 or higher.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ilmoco.datasets.base import DatasetMeta
from ilmoco.losses import upcast


def n_outputs(meta: DatasetMeta) -> int:
    return meta.n_classes if meta.task != "binary" else 2


def targets(df: pd.DataFrame, meta: DatasetMeta) -> np.ndarray:
    if meta.task == "multilabel":
        return df[meta.label_columns].to_numpy().astype(np.float32)
    return df[meta.label_columns[0]].to_numpy().astype(np.int64)


def loss_fn(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    logits = upcast(logits)
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    return F.cross_entropy(logits, y.long())


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Multi-label: sigmoid per label; binary: softmax P(positive); multi-class: softmax."""
    logits = upcast(logits)
    if task == "multilabel":
        return torch.sigmoid(logits)
    p = torch.softmax(logits, dim=1)
    return p[:, 1] if task == "binary" else p


def prediction_loss(y, p, task: str) -> float:
    """Cross-entropy of predicted probabilities (the validation fallback score)."""
    y, p = np.asarray(y), np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    if task == "multiclass":
        return float(-np.log(p[np.arange(len(y)), y]).mean())
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
