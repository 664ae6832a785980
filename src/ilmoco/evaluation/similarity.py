"""Centered kernel alignment (Kornblith et al., 2019), HSIC formulation.

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)),   HSIC(K, L) = tr(K H L H)

with H the centering matrix (the 1/(n−1)² factors cancel). Linear kernels K = X Xᵀ give

    CKA_lin(X, Y) = ‖Yᵀ X‖_F² / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F)   on column-centred X, Y.

RBF kernels use exp(−‖xᵢ − xⱼ‖² / (2σ²)), with σ = ``scale`` × the median pairwise distance
(``rbf``) or a fixed σ (``rbf_fixed``; the official code's choice, σ = 0.8 on raw pooled
features, which can saturate the kernel when features are large).

Feature reuse is averaged over random test subsets, as the official code (50 subsets of
1,000 test images): :func:`cka_subsets` draws them, :func:`cka_over_subsets` averages.
"""

from __future__ import annotations

import numpy as np

from ilmoco.evaluation.bootstrap import percentile_interval


def _center(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x - x.mean(0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between representations x (n, p) and y (n, q) of the same n inputs."""
    x, y = _center(x), _center(y)
    num = np.linalg.norm(y.T @ x, "fro") ** 2
    den = np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")
    return float(num / den) if den > 0 else float("nan")


def _rbf_gram(x: np.ndarray, scale: float = 1.0, sigma: float | None = None) -> np.ndarray:
    """RBF Gram matrix with a fixed ``sigma``, or ``scale`` × the median distance."""
    x = np.asarray(x, np.float64)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    if sigma is None:
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


def rbf_cka(x: np.ndarray, y: np.ndarray, scale: float = 1.0,
            sigma: float | None = None) -> float:
    return kernel_cka(_rbf_gram(x, scale, sigma), _rbf_gram(y, scale, sigma))


def cka(x, y, kernel: str = "linear", rbf_scale: float = 1.0, sigma: float = 0.8) -> float:
    """CKA with a ``linear``, median-bandwidth ``rbf`` or fixed-``sigma`` ``rbf_fixed`` kernel."""
    if kernel == "linear":
        return linear_cka(x, y)
    if kernel == "rbf":
        return rbf_cka(x, y, rbf_scale)
    if kernel == "rbf_fixed":
        return rbf_cka(x, y, sigma=sigma)
    raise ValueError(f"unknown CKA kernel {kernel!r}; use linear, rbf or rbf_fixed")


def cka_subsets(n: int, size: int, repeats: int, seed: int) -> list[np.ndarray]:
    """``repeats`` index sets into ``n`` test images: random subsets of ``size`` drawn
    without replacement (the official 50 × 1,000), or, when the test set is not larger
    than ``size``, bootstrap resamples of all ``n`` (so the repeats still differ)."""
    rng = np.random.default_rng(seed)
    if n > size:
        return [np.sort(rng.choice(n, size, replace=False)) for _ in range(repeats)]
    return [np.sort(rng.integers(0, n, n)) for _ in range(repeats)]


def cka_over_subsets(x, y, subsets, kernel: str = "linear", level: float = 0.95,
                     rbf_scale: float = 1.0, sigma: float = 0.8) -> dict:
    """Mean CKA over the subsets (rows of x and y), with a percentile interval and the
    standard deviation across subsets."""
    vals = np.array([cka(x[i], y[i], kernel, rbf_scale, sigma) for i in subsets])
    ok = vals[np.isfinite(vals)]
    lo, hi = percentile_interval(vals, level)
    return {"cka": float(np.mean(ok)) if len(ok) else float("nan"), "ci_low": lo,
            "ci_high": hi, "std": float(np.std(ok)) if len(ok) else float("nan"),
            "n": int(len(subsets[0])) if subsets else 0, "repeats": len(subsets)}
