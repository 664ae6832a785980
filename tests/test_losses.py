"""Each loss against an independent straightforward re-computation (loops / NumPy)."""

import math

import numpy as np
import pytest
import tolerances as tol
import torch
import torch.nn.functional as F

from ilmoco.models.losses import (
    adaptive_pool,
    barlow_twins_loss,
    infonce_loss,
    intermediate_mse,
    moco_logits,
    off_diagonal,
)


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def test_infonce_equals_loop():
    q, k, queue = unit(6, 16, seed=1), unit(6, 16, seed=2), unit(50, 16, seed=3)
    T = 0.2
    qn, kn, Q = q.double().numpy(), k.double().numpy(), queue.double().numpy()
    losses = []
    for n in range(6):
        pos = qn[n] @ kn[n] / T
        neg = [qn[n] @ Q[j] / T for j in range(50)]
        denom = math.exp(pos) + sum(math.exp(v) for v in neg)
        losses.append(-(pos - math.log(denom)))
    # float32 logits are dots of 16 terms with sum |q_i k_i| <= 1: gamma_16 / T each, in the
    # positive and in logsumexp; the 51 exps' sum, shift, exp and log roundings: gamma_64
    f32 = torch.float32
    assert float(infonce_loss(q, k, queue, T)) == pytest.approx(
        np.mean(losses), abs=2 * tol.gamma(16, f32) / T + tol.gamma(64, f32))


def test_logits_layout_and_fp32():
    q, k, queue = unit(4, 8).bfloat16(), unit(4, 8, seed=5), unit(10, 8, seed=6)
    logits = moco_logits(q, k, queue, 0.07)
    assert logits.shape == (4, 11) and logits.dtype == torch.float32
    # the same float32 dots of 8 terms of unit rows (sum |q_i k_i| <= 1), maybe reordered
    assert torch.allclose(logits[:, 0], (q.float() * k).sum(1) / 0.07, rtol=0,
                          atol=tol.sum_rtol(8, torch.float32) / 0.07)
    assert torch.allclose(logits[:, 1:], q.float() @ queue.t() / 0.07, rtol=0,
                          atol=tol.sum_rtol(8, torch.float32) / 0.07)


def np_pool(x, s):
    n, c, h, w = x.shape
    s = min(s, h)
    return x.reshape(n, c, s, h // s, s, w // s).mean(axis=(3, 5))


def test_intermediate_mse_equals_numpy():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4, 16, 16), (3, 8, 8, 8), (3, 16, 4, 4), (3, 32, 2, 2)]
    qb = [torch.randn(s, generator=g) for s in shapes]
    kb = [torch.randn(s, generator=g) for s in shapes]
    pools, weights = [16, 4, 4, 1], [0.25, 0.5, 1.0, 2.0]
    terms = intermediate_mse(qb, kb, pools, weights)
    for t, q, k, s, w in zip(terms, qb, kb, pools, weights):
        a, b = np_pool(q.double().numpy(), s), np_pool(k.double().numpy(), s)
        # a float32 mean of <= q.numel() positive squares against float64
        assert float(t) == pytest.approx(w * ((a - b) ** 2).mean(),
                                         rel=tol.random_sum_rtol(q.numel(), torch.float32))
    # pooling larger than the map is clamped; 1 is global average pooling
    assert adaptive_pool(qb[3], 16).shape == (3, 32, 2, 2)
    # two orders of a mean of 64 values, near 0: 2 gamma_64 of the largest magnitude
    assert torch.allclose(adaptive_pool(qb[1], 1)[:, :, 0, 0], qb[1].mean((2, 3)), rtol=0,
                          atol=tol.sum_rtol(64, torch.float32) * float(qb[1].abs().max()))


def test_mse_gradient_only_through_query():
    q = torch.randn(2, 3, 4, 4, requires_grad=True)
    k = torch.randn(2, 3, 4, 4, requires_grad=True)
    intermediate_mse([q], [k], [2], [1.0])[0].backward()
    assert q.grad is not None and k.grad is None


def reference_barlow_twins(z1, z2, lambd):
    """Zbontar et al.'s reference (facebookresearch/barlowtwins main.py, one GPU)."""
    bn = torch.nn.BatchNorm1d(z1.shape[1], affine=False)
    c = bn(z1).T @ bn(z2)
    c.div_(z1.shape[0])
    on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diag = off_diagonal(c).pow_(2).sum()
    return on_diag + lambd * off_diag


def test_barlow_twins_equals_reference():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 20, generator=g), torch.randn(32, 20, generator=g) * 3 + 1
    ours = barlow_twins_loss(z1, z2, lambda_on=1.0, lambda_off=5.1e-3, scale=1.0)
    # c: standardising (mean, var) and a dot of 32 terms, network_rtol(3, 32) apart; the loss
    # moves by 2 |1 - c_ii| dc_ii (+ off-diagonal), < 4 dc relative here (|c_ii| < 0.5)
    assert float(ours) == pytest.approx(float(reference_barlow_twins(z1, z2, 5.1e-3)),
                                        rel=4 * tol.network_rtol(3, 32, torch.float32))


def test_barlow_twins_official_weighting_equals_loop():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(16, 6)), rng.normal(size=(16, 6))
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + 1e-5)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + 1e-5)
    c = np.zeros((6, 6))
    for i in range(6):
        for j in range(6):
            c[i, j] = sum(a[n, i] * b[n, j] for n in range(16)) / 16
    on = sum((1 - c[i, i]) ** 2 for i in range(6))
    off = sum(c[i, j] ** 2 for i in range(6) for j in range(6) if i != j)
    expected = (5e-5 * on + 5e-5 * off) / 32
    got = barlow_twins_loss(torch.tensor(z1), torch.tensor(z2), 5e-5, 5e-5, 1 / 32)
    # as above in float64 with N = 16 (|c_ii| < 0.5 here)
    assert float(got) == pytest.approx(expected, rel=4 * tol.network_rtol(3, 16, torch.float64))


def test_barlow_twins_biased_variance_small_batch():
    z = torch.randn(4, 5)
    # identical views: c_ii -> 1 with biased variance, so the on-diagonal term vanishes
    assert float(barlow_twins_loss(z, z, 1.0, 0.0)) < 1e-4


def test_off_diagonal():
    x = torch.arange(16.0).view(4, 4)
    mask = ~torch.eye(4, dtype=torch.bool)
    assert torch.equal(off_diagonal(x), x[mask])


@pytest.mark.parametrize("which", ["infonce", "mse", "bt"])
def test_losses_decrease_over_20_steps(which):
    torch.manual_seed(0)
    q = torch.randn(16, 32, requires_grad=True)
    k, queue = unit(16, 32, seed=1), unit(64, 32, seed=2)
    blocks_k = [torch.randn(16, 8, 4, 4)]
    qb = torch.randn(16, 8, 4, 4, requires_grad=True)
    params = [q, qb]
    opt = torch.optim.SGD(params, lr={"infonce": 20.0, "mse": 200.0, "bt": 0.5}[which])

    def loss():
        if which == "infonce":
            return infonce_loss(F.normalize(q, dim=1), k, queue, 0.2)
        if which == "mse":
            return intermediate_mse([qb], blocks_k, [2], [1.0])[0]
        return barlow_twins_loss(q, k, 1.0, 5e-3)

    values = []
    for _ in range(20):
        lv = loss()
        values.append(float(lv.detach()))
        opt.zero_grad()
        lv.backward()
        opt.step()
    assert values[-1] < 0.8 * values[0]
