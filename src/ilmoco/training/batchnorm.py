"""Precise BatchNorm statistics: recomputed with a model's current weights before it is
scored (fine-tuning's ``precise_bn``).

Training leaves running averages (momentum 0.1) of past batches' statistics. After a few
dozen steps of large updates, as fine-tuning on 1 % or 6 % of the labels takes, they lag the
weights, and in eval mode a model can give every image one class while the same weights
with the images' own statistics separate them (measured on the demo's IDC). Recomputing
them on the labelled images is the remedy of Wu & Johnson, "Rethinking 'Batch' in
BatchNorm" (2021), with torch's own ``update_bn``. A module of its own: only fine-tuning
runs it, so an edit here reruns no pretraining.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

PRECISE_BN_IMAGES = 1024  # a cumulative average over this many images: precise to ~1/32


def subset(n: int) -> np.ndarray:
    """The images the statistics are taken on: at most :data:`PRECISE_BN_IMAGES` of ``n``,
    evenly spaced (a caller loads only these; for ``n`` at most that many, all of them)."""
    return np.linspace(0, n - 1, min(n, PRECISE_BN_IMAGES)).round().astype(int)


def precise_bn(model: nn.Module, images: np.ndarray, device, batch_size: int = 256) -> None:
    """BatchNorm statistics of the model's current weights on ``images`` (uint8, the
    :func:`subset` of them), in place of the running averages (``update_bn``: an
    equal-weight average over the batches; the model's mode is kept)."""
    pick = subset(len(images))
    dtype = next(model.parameters()).dtype
    batches = (torch.from_numpy(np.asarray(images[pick[i:i + batch_size]])).to(device)
               .to(dtype).div_(255) for i in range(0, len(pick), batch_size))
    update_bn(batches, model)
