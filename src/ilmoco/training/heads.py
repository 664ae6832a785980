"""Classification heads of the three kinds of task: the classifier, targets, outputs, loss,
probabilities.

Multi-label (NIH): one sigmoid + BCE per label (labels of -1, ignored uncertain labels, are
masked out). Binary (IDC, EyePACS): a 2-way softmax with
cross-entropy, as the paper. Multi-class (some MedMNIST sets): K-way softmax. Losses and
probabilities are computed in fp32 or higher.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ilmoco.data.formats.base import DatasetMeta
from ilmoco.models.losses import upcast


class Classifier(nn.Module):
    """A backbone and a new linear head on its pooled embedding (fine-tuning)."""

    def __init__(self, backbone: nn.Module, n_out: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_dim, n_out)

    def forward(self, x):
        emb, _ = self.backbone(x)
        return self.head(emb)


def n_outputs(meta: DatasetMeta) -> int:
    return meta.n_classes if meta.task != "binary" else 2


def targets(df: pd.DataFrame, meta: DatasetMeta) -> np.ndarray:
    if meta.task == "multilabel":
        return df[meta.label_columns].to_numpy().astype(np.float32)
    return df[meta.label_columns[0]].to_numpy().astype(np.int64)


def loss_fn(logits: torch.Tensor, y: torch.Tensor, task: str,
            masked: bool = False) -> torch.Tensor:
    """``masked`` (multi-label data with ignored labels, -1): the mean BCE over the known
    labels only. The caller knows it from its labels once, so no step syncs the device."""
    logits = upcast(logits)
    if task == "multilabel":
        if masked:
            known = (y >= 0).to(logits.dtype)
            bce = F.binary_cross_entropy_with_logits(logits, y.clamp(min=0).to(logits.dtype),
                                                     reduction="none")
            return (bce * known).sum() / known.sum().clamp(min=1)
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    return F.cross_entropy(logits, y.long())


def has_masked(y) -> bool:
    """Whether multi-label targets hold ignored (-1) labels."""
    return bool((np.asarray(y) < 0).any())


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
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if (y < 0).any():  # ignored multi-label entries
        return float(ce[y >= 0].mean())
    return float(ce.mean())
