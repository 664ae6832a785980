"""BYOL, the second SSL base: its loss against an independent computation, and its
mechanics (EMA target without gradient, intermediate terms, side-effect-free validation)."""

import copy

import numpy as np
import pytest
import tolerances as tol
import torch
from stagedata import base_model, term
from test_moco import held_out_loss_ratio

from ilmoco.config.bases import BYOLSettings
from ilmoco.models.losses import byol_loss

SETTINGS = BYOLSettings(dim=16, hidden=32, predictor_hidden=32, momentum=0.9,
                        momentum_schedule="constant")


def tiny(kind="none"):
    torch.manual_seed(0)
    return base_model("byol", SETTINGS, term(kind))


def test_loss_equals_numpy():
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g) * 3
    pn, zn = p.double().numpy(), z.double().numpy()
    expected = np.mean([np.sum((pn[i] / np.linalg.norm(pn[i]) - zn[i] / np.linalg.norm(zn[i]))
                               ** 2) for i in range(5)])
    # float32 against float64: each 2 - 2 cos (<= 4) within 2 (2 * 7 + 4) u (normalising,
    # products, the 7-term sum) + 4 u, and the mean of 5 adds <= 4 * 5 u: 60 u in all
    assert float(byol_loss(p, z)) == pytest.approx(expected, abs=tol.gamma(60, torch.float32))
    assert float(byol_loss(p, 2.5 * p)) == pytest.approx(  # scale-free
        0.0, abs=tol.gamma(60, torch.float32))
    assert float(byol_loss(p, -p)) == pytest.approx(4.0, abs=tol.gamma(60, torch.float32))
    zz = z.clone().requires_grad_(True)
    byol_loss(p.requires_grad_(True), zz).backward()
    assert zz.grad is None  # the target carries no gradient


def test_forward_is_symmetric_and_has_the_terms():
    model = tiny("mse")
    x1, x2 = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    loss, logs = model(x1, x2, update=False)
    assert set(logs) == {"byol", "loss", *[f"mse_block{i}" for i in range(1, 5)]}
    # the same 5 positive float32 terms added in another order: 2 gamma_5 relative
    assert torch.allclose(loss.detach(), logs["byol"] + sum(logs[f"mse_block{i}"]
                                                            for i in range(1, 5)),
                          rtol=tol.sum_rtol(5, torch.float32), atol=0)
    model.eval()
    with torch.no_grad():
        a, _ = model(x1, x2, update=False)
        b, _ = model(x2, x1, update=False)
    assert float(a) == pytest.approx(float(b), rel=1e-5)  # both directions, averaged


def test_only_the_online_side_learns_and_validation_changes_nothing():
    model = tiny("mse")
    x1, x2 = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    loss, _ = model(x1, x2)
    loss.backward()
    assert all(p.grad is None for p in model.target.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    model.eval()
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model(x1, x2, update=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_training_lowers_the_loss_on_a_tiny_batch():
    # 20 steps on one batch: the prediction converges
    assert held_out_loss_ratio(tiny("none")) < 0.6
