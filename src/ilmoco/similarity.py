"""Centered kernel alignment (Kornblith et al., 2019), HSIC formulation.

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)),   HSIC(K, L) = tr(K H L H)

with H the centering matrix (the 1/(n−1)² factors cancel). Linear kernels K = X Xᵀ give

    CKA_lin(X, Y) = ‖Yᵀ X‖_F² / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F)   on column-centred X, Y.

RBF kernels use exp(−‖xᵢ − xⱼ‖² / (2σ²)) with σ = ``scale`` × the median pairwise distance
(the official code's fixed σ = 0.8 on raw features can saturate the kernel).
"""

from __future__ import annotations

import numpy as np


def _center(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x - x.mean(0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between representations x (n, p) and y (n, q) of the same n inputs."""
    x, y = _center(x), _center(y)
    num = np.linalg.norm(y.T @ x, "fro") ** 2
    den = np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")
    return float(num / den) if den > 0 else float("nan")


def _rbf_gram(x: np.ndarray, scale: float) -> np.ndarray:
    x = np.asarray(x, np.float64)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    med = np.median(np.sqrt(d2[np.triu_indices(len(x), 1)]))
    sigma = scale * med if med > 0 else 1.0
    return np.exp(-d2 / (2 * sigma * sigma))


def _hsic(k: np.ndarray, l: np.ndarray) -> float:
    kc = k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()
    lc = l - l.mean(0, keepdims=True) - l.mean(1, keepdims=True) + l.mean()
    return float((kc * lc).sum())


def kernel_cka(k: np.ndarray, l: np.ndarray) -> float:
    """CKA of two Gram matrices."""
    den = np.sqrt(_hsic(k, k) * _hsic(l, l))
    return _hsic(k, l) / den if den > 0 else float("nan")


def rbf_cka(x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> float:
    return kernel_cka(_rbf_gram(x, scale), _rbf_gram(y, scale))


def cka(x, y, kernel: str = "linear", rbf_scale: float = 1.0) -> float:
    if kernel == "linear":
        return linear_cka(x, y)
    if kernel == "rbf":
        return rbf_cka(x, y, rbf_scale)
    raise ValueError(f"unknown CKA kernel {kernel!r}; use linear or rbf")


def cka_with_spread(x, y, kernel: str = "linear", resamples: int = 50, seed: int = 0,
                    level: float = 0.95, rbf_scale: float = 1.0) -> dict:
    """CKA on all rows plus a bootstrap spread (rows resampled with replacement)."""
    rng = np.random.default_rng(seed)
    est = cka(x, y, kernel, rbf_scale)
    n = len(x)
    reps = np.array([cka(x[i], y[i], kernel, rbf_scale)
                     for i in (rng.integers(0, n, n) for _ in range(resamples))])
    a = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(reps, [a, 100 - a]) if resamples else (np.nan, np.nan)
    return {"cka": est, "ci_low": float(lo), "ci_high": float(hi),
            "std": float(np.nanstd(reps)) if resamples else float("nan"), "n": int(n)}
