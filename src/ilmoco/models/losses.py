"""The losses as pure functions. Everything is computed in fp32 or higher (inputs from a
bf16 autocast region are upcast; float64 stays float64).

Notation: q, k are L2-normalised embeddings (N, D) of the query and key views; the queue
holds K earlier keys (K, D); q_i, k_i are block-i outputs of the query encoder on view 1
and of the momentum (key) encoder on view 2; p is BYOL's prediction of the target
projection z.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32, or in fp64 when it already is (half and bfloat16 are upcast)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def full_precision(fn):
    """Run a loss outside any autocast region: under bf16 autocast a matmul of fp32 inputs
    would otherwise be computed (and rounded) in bf16."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [t for a in args for t in (a if isinstance(a, (list, tuple)) else [a])
                   if isinstance(t, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


@full_precision
def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float):
    """MoCo logits ``[q·k⁺, q·queue] / T`` of shape (N, 1 + K); the positive is column 0."""
    q, k, queue = upcast(q), upcast(k), upcast(queue)
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue.t()
    return torch.cat([l_pos, l_neg], dim=1) / temperature


@full_precision
def infonce_loss(q, k, queue, temperature: float) -> torch.Tensor:
    """InfoNCE against a queue: ``-log softmax(logits)[0]`` averaged over the batch,

        L = -1/N Σ_n log( exp(q_n·k_n/T) / (exp(q_n·k_n/T) + Σ_j exp(q_n·queue_j/T)) ).
    """
    logits = moco_logits(q, k, queue, temperature)
    target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def adaptive_pool(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Average-pool a block output to ``size``×``size``; ``None`` keeps it, 1 is global pooling.

    A size larger than the map is clamped to the map (pooling *up* would only replicate
    values and leave the mean squared error unchanged).
    """
    if size is None:
        return x
    s = (min(size, x.shape[-2]), min(size, x.shape[-1]))
    return F.adaptive_avg_pool2d(x, s)


@full_precision
def intermediate_mse(
    q_blocks: Sequence[torch.Tensor], k_blocks: Sequence[torch.Tensor],
    pool_sizes: Sequence[int | None], weights: Sequence[float],
) -> list[torch.Tensor]:
    """Per-block terms ``λ_i · mean((pool(q_i) − pool(k_i))²)``, the mean over all elements.

    The official chest/retina code pools blocks 1–2 to 16×16 and blocks 3–4 to 4×4; the
    histopathology code uses global pooling (size 1). ``k_i`` carries no gradient.
    """
    terms = []
    for q, k, size, w in zip(q_blocks, k_blocks, pool_sizes, weights, strict=True):
        pq = adaptive_pool(upcast(q), size)
        pk = adaptive_pool(upcast(k.detach()), size)
        terms.append(w * F.mse_loss(pq, pk))
    return terms


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """Flattened off-diagonal elements of a square matrix (Zbontar et al.'s trick)."""
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def batch_standardise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm without affine: (z − mean) / sqrt(biased var + eps), per feature."""
    z = upcast(z)
    mean = z.mean(0, keepdim=True)
    var = z.var(0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


@full_precision
def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambda_on: float = 1.0, lambda_off: float = 5.1e-3,
    scale: float = 1.0,
) -> torch.Tensor:
    """Barlow Twins on projected embeddings (N, D):

        c = BN(z1)ᵀ BN(z2) / N                      (cross-correlation, biased variance)
        L = scale · ( λ_on Σ_i (1 − c_ii)² + λ_off Σ_{i≠j} c_ij² ).

    Presets: the paper's code uses λ_on = λ_off = 5e-5 with scale 1/32; Zbontar et al. use
    λ_on = 1, λ_off = 5.1e-3.
    """
    n = z1.shape[0]
    c = batch_standardise(z1).t() @ batch_standardise(z2) / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = off_diagonal(c).pow(2).sum()
    return scale * (lambda_on * on + lambda_off * off)


@full_precision
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al., 2020), averaged over the batch:

        L = 1/N Σ_n ‖p̂_n − ẑ_n‖² = 1/N Σ_n (2 − 2·cos(p_n, z_n)),   x̂ = x / ‖x‖,

    with p the online network's prediction and z the target projection (no gradient).
    """
    p = F.normalize(upcast(p), dim=1)
    z = F.normalize(upcast(z.detach()), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()
