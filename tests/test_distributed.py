"""Data-parallel pretraining (2 gloo processes on CPU) follows the single-process run with
the same global batch: keys gathered before enqueueing, BN synchronised, BT over the global
batch, augmentation draws sliced from the global batch."""

import os

import numpy as np
import pandas as pd
import pytest
import torch
from stagedata import prepare
from test_training import pretrain_job

from ilmoco import gpus, pretrain
from ilmoco.io import torch_load


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("dr_dist"), n_patients=30)


@pytest.mark.parametrize("method", ["moco_mse", "moco_bt"])
def test_two_processes_match_one(data, tmp_path, method, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    paths, _ = data
    cfg = dict(epochs=1, batch_size=8, moco={"queue_size": 32, "bn": "sync",
                                             "bn_splits": 1, "momentum": 0.9})
    single = pretrain_job(paths, tmp_path / "one", method)
    single.cfg["moco"].update(cfg["moco"])
    single.cfg.update(epochs=1, log_every=1)
    pretrain.run(single)

    double = pretrain_job(paths, tmp_path / "two", method)
    double.cfg = single.cfg
    gpus.run_data_parallel(pretrain.run, (double,), nprocs=2)

    a, b = pd.read_csv(single.out_metrics), pd.read_csv(double.out_metrics)
    terms = [c for c in a.columns if c in ("infonce", "loss") or c.startswith(("mse_", "bt_"))]
    assert len(a) == len(b) and len(a.dropna(subset=["infonce"])) >= 3
    np.testing.assert_allclose(a[terms].to_numpy(), b[terms].to_numpy(), rtol=2e-3, atol=1e-5)
    wa = torch_load(single.out_encoder)["backbone"]
    wb = torch_load(double.out_encoder)["backbone"]
    for k in wa:
        if wa[k].is_floating_point():
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-4)


def test_claim_gpus_pins_distinct_free_devices(tmp_path):
    env_a, env_b = {}, {}
    assert gpus.claim_gpus(1, lock_dir=tmp_path, devices=[0, 1], env=env_a) == [0]
    assert gpus.claim_gpus(1, lock_dir=tmp_path, devices=[0, 1], env=env_b) == [1]
    assert env_a["CUDA_VISIBLE_DEVICES"] == "0" and env_b["CUDA_VISIBLE_DEVICES"] == "1"
    with pytest.raises(RuntimeError, match="needed 1 free GPU"):
        gpus.claim_gpus(1, lock_dir=tmp_path, devices=[0, 1], env={})
    # a scheduler's choice (SLURM sets CUDA_VISIBLE_DEVICES) is left alone
    assert gpus.claim_gpus(1, lock_dir=tmp_path, devices=[0, 1],
                           env={"CUDA_VISIBLE_DEVICES": "3"}) is None
    assert gpus.claim_gpus(0, lock_dir=tmp_path, devices=[0]) is None
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)


def test_visible_gpu_indices(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert gpus.visible_gpu_indices(str(tmp_path)) == [0, 1]
