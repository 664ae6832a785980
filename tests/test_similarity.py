"""CKA: identities, invariances, and agreement with the Gram-matrix (HSIC) definition."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from ilmoco.evaluation.similarity import (
    cka,
    cka_over_subsets,
    cka_subsets,
    kernel_cka,
    linear_cka,
    rbf_cka,
)


def reps(n=60, p=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    return x, np.tanh(x @ rng.normal(size=(p, 8))) + 0.3 * rng.normal(size=(n, 8))


def test_identity_is_one():
    x, _ = reps()
    # numerator and denominator are the same float64 sums: 1 up to a rounding or two, far
    # inside approx's default rel 1e-6
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert rbf_cka(x, x) == pytest.approx(1.0)


def test_invariant_to_orthogonal_maps_and_isotropic_scaling():
    x, y = reps()
    q = ortho_group.rvs(10, random_state=1)
    base = linear_cka(x, y)
    # float64 HSIC: 60 x 60 centred Gram products, rounding <= gamma_3600 = 4e-13 of the CKA's
    # denominator (Cauchy-Schwarz; linear CKA: shorter sums); 2 CKAs x 2: 1e-10 leaves 60x
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(3.7 * x, 0.2 * y) == pytest.approx(base, abs=1e-10)
    assert rbf_cka(x @ q, y) == pytest.approx(rbf_cka(x, y), abs=1e-10)
    assert rbf_cka(2.5 * x, y) == pytest.approx(rbf_cka(x, y), abs=1e-10)  # median bandwidth


def test_not_invariant_to_arbitrary_invertible_maps():
    x, y = reps()
    a = np.diag(np.r_[10.0, np.ones(9)])  # invertible, not orthogonal x isotropic
    assert abs(linear_cka(x @ a, y) - linear_cka(x, y)) > 0.01


def test_linear_cka_equals_hsic_of_gram_matrices():
    x, y = reps(n=25)
    # the same CKA through 25 x 25 Gram matrices: 4 gamma_625 = 3e-13, as above; 1e-10 leaves
    # 300x
    assert linear_cka(x, y) == pytest.approx(kernel_cka(x @ x.T, y @ y.T), abs=1e-10)


def test_direct_formula_small_inputs():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, -1.0]])
    y = np.array([[0.5], [1.0], [-1.0], [2.0]])
    n = len(x)
    h = np.eye(n) - 1 / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    expected = hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))
    # 4 x 4 traces against the Frobenius form: float64 sums of <= 16 terms, a few dozen u;
    # approx's default rel 1e-6 is far above
    assert linear_cka(x, y) == pytest.approx(expected)


def test_rbf_median_bandwidth_direct():
    x, y = reps(n=15)

    def gram(a):
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        sigma = np.median(d[np.triu_indices(len(a), 1)])
        return np.exp(-(d**2) / (2 * sigma**2))

    # 15 x 15 Gram matrices, distances by differences against |a|^2 + |b|^2 - 2ab (a few u of
    # |x|^2 each): ~4 gamma_225 = 1e-13, as above; 1e-10 leaves 1000x
    assert rbf_cka(x, y) == pytest.approx(kernel_cka(gram(x), gram(y)), abs=1e-10)


def test_subsets_without_replacement_when_the_test_set_is_larger():
    subs = cka_subsets(50, 20, 5, seed=3)
    assert len(subs) == 5 and all(len(s) == 20 and len(set(s)) == 20 for s in subs)
    again = cka_subsets(50, 20, 5, seed=3)  # seeded
    assert all(np.array_equal(a, b) for a, b in zip(subs, again))
    assert not all(np.array_equal(subs[0], s) for s in subs[1:])
    small = cka_subsets(12, 20, 4, seed=0)  # test set not larger: bootstrap resamples of all
    assert all(len(s) == 12 for s in small) and any(len(set(s)) < 12 for s in small)


def yuanli_rbf_cka(x, y, sigma):
    """The official code's CKA.py (yuanli2333/CKA-Centered-Kernel-Alignment) written out:
    K = exp(-d²/(2σ²)), HSIC = tr(K H L H) with the explicit centering matrix H."""
    def rbf(a):
        gx = a @ a.T
        kx = np.diag(gx) - gx + (np.diag(gx) - gx).T
        return np.exp(kx * (-0.5 / (sigma * sigma)))

    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic(k, l):
        return np.sum((h @ k @ h) * (h @ l @ h))

    kx, ky = rbf(x), rbf(y)
    return hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))


def test_fixed_sigma_rbf_averaged_over_subsets_matches_independent_computation():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(90, 6)) * 0.3  # pooled-feature scale: the kernel does not saturate
    y = np.tanh(x @ rng.normal(size=(6, 5))) * 0.4 + 0.05 * rng.normal(size=(90, 5))
    subs = cka_subsets(90, 40, 7, seed=1)
    r = cka_over_subsets(x, y, subs, kernel="rbf_fixed", sigma=0.8, level=0.9)
    ref = np.array([yuanli_rbf_cka(x[s], y[s], 0.8) for s in subs])
    # 7 CKAs of 40 x 40 Gram matrices, 4 gamma_1600 = 7e-13 apart (as above); their mean, sd
    # and percentiles move no more: 1e-10 leaves 100x
    assert r["cka"] == pytest.approx(ref.mean(), abs=1e-10)
    assert r["std"] == pytest.approx(ref.std(), abs=1e-10)
    assert r["ci_low"] == pytest.approx(np.percentile(ref, 5), abs=1e-10)
    assert r["ci_high"] == pytest.approx(np.percentile(ref, 95), abs=1e-10)
    assert r["n"] == 40 and r["repeats"] == 7
    # the official formula on 90 x 90 Gram matrices: 4 gamma_8100 = 4e-12 apart (as above),
    # far inside approx's default rel 1e-6
    assert cka(x, y, "rbf_fixed", sigma=0.8) == pytest.approx(yuanli_rbf_cka(x, y, 0.8))
    # a fixed bandwidth is not scale invariant (unlike the median heuristic)
    assert cka(10 * x, y, "rbf_fixed", sigma=0.8) != pytest.approx(cka(x, y, "rbf_fixed"))
