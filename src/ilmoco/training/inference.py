"""Evaluation shared by fine-tuning, probing, CKA and the pretraining monitor: batched
eval-mode inference, model selection with early stopping, threshold choice, and test
intervals.

* Inference runs the model in eval mode (BatchNorm statistics frozen) under
  ``inference_mode``, restoring the previous mode afterwards. Test probabilities always come
  from fp32 logits; block features may be computed under bf16 autocast on a GPU.
* Selection keeps the epoch with the best validation score; where the score is undefined
  (e.g. validation lacks a class) it falls back on the validation cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ilmoco.evaluation.metrics import macro_auc, metric_fn, selection_metric
from ilmoco.models.backbone import pooled_blocks
from ilmoco.models.losses import upcast
from ilmoco.training.heads import prediction_loss, probabilities
from ilmoco.training.runtime import autocast


def param_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's parameters: inputs are given the same (float32 or float64)."""
    return next(model.parameters()).dtype


@torch.inference_mode()
def predict_proba(model: nn.Module, images: np.ndarray, task: str, device,
                  batch_size: int = 256) -> np.ndarray:
    """Probabilities on un-augmented uint8 images from the model's fp32 (or fp64) logits."""
    was_training = model.training
    model.eval()
    dtype = param_dtype(model)
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[start:start + batch_size])).to(device)
        out.append(probabilities(model(x.to(dtype).div_(255)), task).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0,))


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray, device,
                   batch_size: int = 256) -> np.ndarray:
    """Raw fp32 (or fp64) logits on un-augmented uint8 images, in eval mode."""
    was_training = model.training
    model.eval()
    dtype = param_dtype(model)
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[start:start + batch_size])).to(device)
        out.append(upcast(model(x.to(dtype).div_(255))).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def raw_logit_auc(y, logits: np.ndarray, task: str) -> float:
    """The official retina code's validation score, ``roc_auc_score(y, logits[:, 1])``: the
    AUC of the positive class's raw logit, not of its softmax probability (which ranks by
    ``logits[:, 1] - logits[:, 0]``); multi-label logits rank as their sigmoids."""
    return float(macro_auc(y, logits[:, 1] if task == "binary" else logits)[0])


@torch.inference_mode()
def extract_features(backbone: nn.Module, images: np.ndarray, device, precision: str = "auto",
                     batch_size: int = 256) -> list[np.ndarray]:
    """Globally pooled block 1-4 features, (n, C_i) float32 each; the backbone's mode is
    restored afterwards."""
    was_training = backbone.training
    backbone.eval()
    dtype = param_dtype(backbone)
    out = [[] for _ in range(4)]
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[start:start + batch_size])).to(device)
        with autocast(device, precision):
            _, blocks = backbone(x.to(dtype).div_(255))
        for i, f in enumerate(pooled_blocks(blocks)):
            out[i].append(f.float().cpu())
    backbone.train(was_training)
    return [torch.cat(o).numpy() if o else np.zeros((0, 0), np.float32) for o in out]


def selection_score(metric: str, y, p, task: str) -> float:
    """The validation score that picks the best epoch: the metric (macro F1 for the tuned
    F1, which needs no threshold), or minus the cross-entropy where the metric is undefined."""
    score = float(metric_fn(selection_metric(metric))(y, p)[0])
    if not np.isfinite(score):
        score = -prediction_loss(y, p, task)
    return score


@dataclass
class EarlyStopping:
    """Keeps the best-scoring epoch's state; ``update`` says whether to stop."""

    patience: int
    best_score: float = -np.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict | None = field(default=None, repr=False)

    def update(self, epoch: int, score: float, state_fn=None) -> tuple[bool, bool]:
        """Record ``score`` of ``epoch``; ``state_fn()`` gives the state to keep when it is
        the best so far. Returns (improved, stop)."""
        improved = self.best_epoch < 0 or score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
            if state_fn is not None:
                self.best_state = state_fn()
        else:
            self.bad_epochs += 1
        return improved, self.bad_epochs >= self.patience

    def to_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "best_state": self.best_state}

    @classmethod
    def from_dict(cls, patience: int, d: dict | None) -> EarlyStopping:
        return cls(patience, **d) if d else cls(patience)


def model_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
