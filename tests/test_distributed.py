"""Data-parallel pretraining (2 gloo processes on CPU) computes what the single-process run
with the same global batch computes: keys gathered before enqueueing, BN synchronised, BT
over the global batch, augmentation draws sliced from the global batch.

Only what is exactly comparable is compared across process counts: in fp32, the first
step's loss and parameter update (the gradient) at a tight tolerance; over several steps,
float64 runs, in which fp32 rounding is not there for training dynamics to amplify. (An
fp32 trajectory of 2 processes drifts from the 1-process one by BLAS-dependent rounding,
differently on every CPU model.)
"""

import numpy as np
import pandas as pd
import pytest
import tolerances as tol
import torch
from stagedata import prepare, tiny_settings
from test_training import pretrain_job

from ilmoco.cluster import gpus
from ilmoco.io import torch_load
from ilmoco.stages import pretrain
from ilmoco.training.ssl import build_model

SYNC = {"moco": {"queue_size": 32, "bn": "sync", "bn_splits": 1, "momentum": 0.9}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("dr_dist"), n_patients=30)


def run_both(data, tmp_path, method, **pretrain_over):
    paths, _ = data
    settings = tiny_settings(pretrain={**SYNC, "epochs": 1, "log_every": 1, **pretrain_over})
    single = pretrain_job(paths, tmp_path / "one", method, settings=settings)
    pretrain.run(single)
    double = pretrain_job(paths, tmp_path / "two", method, settings=settings)
    gpus.run_data_parallel(pretrain.run, (double,), nprocs=2)
    return single, double


def loss_terms(metrics_csv) -> pd.DataFrame:
    df = pd.read_csv(metrics_csv)
    df = df[df["infonce"].notna()]
    return df[[c for c in df.columns if c in ("infonce", "loss")
               or c.startswith(("mse_", "bt_"))]]


def initial_backbone(job) -> dict:
    """The backbone before any step: the model pretraining builds from its seed."""
    torch.manual_seed(job.run.settings.seed)
    model = build_model(job.run, 3)
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["moco_bt"])
def test_first_step_matches_in_fp32(data, tmp_path, method, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # batch 32 of the ~42 train images: exactly one step
    single, double = run_both(data, tmp_path, method, batch_size=32)
    a, b = loss_terms(single.out_metrics), loss_terms(double.out_metrics)
    assert len(a) == len(b) == 1
    # one process sums the batch's gradient in one order, two in halves then all-reduced:
    # rounding differences, compared in norm (an element near zero has no relative
    # precision). Depth 24 (ResNet-18, head, BT projector), reductions of at most 8192 terms
    # (the stem's weight gradient: 32 images x 16 x 16 positions)
    rtol = tol.network_rtol(24, 8192, torch.float32)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=rtol)  # as derived above
    w0 = initial_backbone(single)
    wa = torch_load(single.out_encoder)["backbone"]
    wb = torch_load(double.out_encoder)["backbone"]
    moved = 0
    for k in wa:
        if wa[k].is_floating_point() and "running" not in k:
            da, db = wa[k] - w0[k], wb[k] - w0[k]  # -lr * (gradient + weight decay)
            assert (da - db).norm() <= rtol * da.norm(), (k, float((da - db).norm()
                                                                 / da.norm()))
            moved += int(da.abs().max() > 0)
    assert moved > 10  # the step changed the weights: the update is what was compared


@pytest.mark.slow
@pytest.mark.parametrize("method", ["moco_mse", "moco_bt"])
def test_several_steps_match_in_fp64(data, tmp_path, method, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    single, double = run_both(data, tmp_path, method, precision="fp64")
    a, b = loss_terms(single.out_metrics), loss_terms(double.out_metrics)
    assert len(a) == len(b) >= 4
    # Several steps amplify each step's rounding difference (per step at most
    # network_rtol(24, 8192, float64) = 3e-12): a trajectory is ill-conditioned, so the bound
    # is half of float64's digits, sqrt(u) = 1e-8, which leaves that rounding an amplification
    # of ~3000 (measured: 3e-10 after 5 steps, i.e. ~100), while a computation that differs
    # (BN not synchronised, keys not gathered) moves the weights by >= 1e-3 of their update
    half_digits = tol.unit_roundoff(torch.float64) ** 0.5
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=half_digits)  # as above
    w0 = initial_backbone(single)
    wa = torch_load(single.out_encoder)["backbone"]
    wb = torch_load(double.out_encoder)["backbone"]
    for k in wa:
        if wa[k].is_floating_point():
            assert wa[k].dtype == torch.float64
        if wa[k].is_floating_point() and "running" not in k:
            da, db = wa[k] - w0[k], wb[k] - w0[k]  # the sum of the steps' updates, compared
            assert (da - db).norm() <= half_digits * da.norm(), (k, float((da - db).norm()
                                                                        / da.norm()))
