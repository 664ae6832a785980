"""CKA: identities, invariances, and agreement with the Gram-matrix (HSIC) definition."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from ilmoco.similarity import cka_with_spread, kernel_cka, linear_cka, rbf_cka


def reps(n=60, p=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    return x, np.tanh(x @ rng.normal(size=(p, 8))) + 0.3 * rng.normal(size=(n, 8))


def test_identity_is_one():
    x, _ = reps()
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert rbf_cka(x, x) == pytest.approx(1.0)


def test_invariant_to_orthogonal_maps_and_isotropic_scaling():
    x, y = reps()
    q = ortho_group.rvs(10, random_state=1)
    base = linear_cka(x, y)
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
    assert linear_cka(x, y) == pytest.approx(expected)


def test_rbf_median_bandwidth_direct():
    x, y = reps(n=15)

    def gram(a):
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        sigma = np.median(d[np.triu_indices(len(a), 1)])
        return np.exp(-(d**2) / (2 * sigma**2))

    assert rbf_cka(x, y) == pytest.approx(kernel_cka(gram(x), gram(y)), abs=1e-10)


def test_spread_brackets_estimate():
    x, y = reps(n=80)
    r = cka_with_spread(x, y, resamples=30, seed=0)
    assert r["n"] == 80 and r["cka"] == pytest.approx(linear_cka(x, y))
    assert r["ci_low"] <= r["cka"] + 0.05 and r["ci_high"] >= r["cka"] - 0.05
    assert r == cka_with_spread(x, y, resamples=30, seed=0)
