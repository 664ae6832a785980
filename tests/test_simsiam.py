"""SimSiam, the third SSL base: its loss against an independent computation, the stop-gradient,
the symmetric terms, and that training lowers its loss."""

import copy

import numpy as np
import pytest
import tolerances as tol
import torch
from stagedata import base_model, term

from ilmoco.config.bases import SimSiamSettings
from ilmoco.models.bases.simsiam import simsiam_loss

SETTINGS = SimSiamSettings(dim=16, hidden=32, predictor_hidden=8)


def tiny(kind="none"):
    torch.manual_seed(0)
    return base_model("simsiam", SETTINGS, term(kind))


def cosine_atol(d: int, n: int) -> float:
    """How far float32 simsiam_loss of n rows of d values may be from float64: each
    normalised value within (d / 2 + 2) u, a product (d + 5) u, the d-term sum (2 d + 4) u
    (of magnitudes <= 1), the n-term mean n u more; 4 u spare (the two views' average)."""
    return tol.gamma(2 * d + n + 8, torch.float32)


def neg_cosine(p, z) -> float:
    """−mean_n cos(p_n, z_n), in float64 numpy."""
    p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
    return -float(np.mean(np.sum(p * z, 1) / (np.linalg.norm(p, axis=1)
                                             * np.linalg.norm(z, axis=1))))


def test_loss_equals_numpy_and_stops_the_gradient():
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 4
    # float32 rounding against float64 (see cosine_atol)
    assert float(simsiam_loss(p, z)) == pytest.approx(neg_cosine(p, z), abs=cosine_atol(5, 6))
    assert float(simsiam_loss(p, 3 * p)) == pytest.approx(  # scale-free
        -1.0, abs=cosine_atol(5, 6))
    pp, zz = p.clone().requires_grad_(True), z.clone().requires_grad_(True)
    simsiam_loss(pp, zz).backward()
    assert zz.grad is None and pp.grad is not None  # the other view: no gradient


def test_the_model_loss_is_the_symmetric_negative_cosine_of_its_parts():
    model = tiny().eval()
    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g)
    with torch.no_grad():
        loss, logs = model(x1, x2, update=False)
        z1, z2 = model.encoder(x1)[0], model.encoder(x2)[0]
        p1, p2 = model.predictor(z1), model.predictor(z2)
    expected = (neg_cosine(p1, z2) + neg_cosine(p2, z1)) / 2
    # float32 rounding against float64 (see cosine_atol): the same p and z, recomputed
    assert float(loss) == pytest.approx(expected, abs=cosine_atol(SETTINGS.dim, 4))
    assert set(logs) == {"simsiam", "loss"}


def test_terms_are_symmetric_and_validation_changes_nothing():
    model = tiny("mse")
    x1, x2 = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    loss, logs = model(x1, x2)
    assert set(logs) == {"simsiam", "loss", *[f"mse_block{i}" for i in range(1, 5)]}
    loss.backward()
    assert all(p.grad is not None for p in model.predictor.parameters())
    model.eval()
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        a, _ = model(x1, x2, update=False)
        b, _ = model(x2, x1, update=False)
    assert float(a) == pytest.approx(float(b), rel=1e-5)  # both directions, averaged
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not model.ema  # no momentum encoder to update


def test_training_lowers_the_loss_on_a_tiny_batch():
    from ilmoco.data.augment import BatchAugment, preset

    model = tiny("mse")
    opt = torch.optim.SGD(model.trainable_modules().parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (8, 1, 32, 32), generator=g, dtype=torch.uint8)
    aug = BatchAugment(preset("histo", "ssl"), 32)
    x1, x2 = aug(x, g), aug(x, g)

    def base_loss():
        with torch.no_grad():
            return float(model(x1, x2, update=False)[1]["simsiam"])

    before = base_loss()
    for _ in range(20):
        loss, _ = model(x1, x2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert base_loss() < before - 0.3  # −cos falls towards −1
