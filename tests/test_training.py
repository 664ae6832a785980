"""Pretraining and fine-tuning runs on a tiny dataset: resume is bit-identical, NaN stops the
run, the best validation epoch is the one evaluated, probes leave BatchNorm untouched."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from stagedata import Crash, crash_once_at, prepare, tiny_settings

from ilmoco.data import batches
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import InputError, torch_load
from ilmoco.models.resnet import ResNetBackbone as Backbone
from ilmoco.stages import finetune, pretrain
from ilmoco.training import checkpoints, loop
from ilmoco.training.inference import extract_features


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("dr"))


def pretrain_job(paths, out, method="moco_mse", settings=None, **pretrain_over):
    out.mkdir(parents=True, exist_ok=True)
    settings = settings or tiny_settings(pretrain=pretrain_over)
    return pretrain.PretrainJob(
        run=settings.pretrain_run("dr", method), split_csv=str(paths["split"]),
        meta=DatasetMeta.from_dict(__import__("json").loads(paths["meta"].read_text())),
        cache_images=str(paths["images"]), cache_index=str(paths["index"]),
        out_encoder=str(out / "encoder.pt"), out_metrics=str(out / "metrics.csv"),
        resume_path=str(out / "resume.pt"))


def test_pretrain_outputs(data, tmp_path):
    paths, _ = data
    job = pretrain_job(paths, tmp_path, "moco_bt")
    pretrain.run(job)
    enc = torch_load(job.out_encoder)
    assert enc["meta"]["method"] == "moco_bt" and enc["meta"]["dataset"] == "dr"
    assert enc["meta"]["in_channels"] == 3 and enc["meta"]["arch"] == "resnet18"
    Backbone("resnet18", 3).load_state_dict(enc["backbone"])  # strict: exactly a backbone
    m = pd.read_csv(job.out_metrics)
    for col in ("step", "lr", "infonce", "bt_block1", "bt_block4", "loss", "throughput",
                "val_infonce"):
        assert col in m.columns, col
    assert not (tmp_path / "resume.pt").exists()  # the resume checkpoint is cleaned up


def test_pretrain_resume_is_bit_identical(data, tmp_path, monkeypatch):
    paths, _ = data
    pretrain.run(pretrain_job(paths, tmp_path / "full"))
    # interrupted run: 7 steps per epoch, a checkpoint once 3 steps have passed (global
    # steps 3, 6, 9: the epoch end at 7 is too soon); crash at global step 11, two steps
    # after the checkpoint at (epoch 1, step 2)
    crash_once_at(monkeypatch, 11)
    job = pretrain_job(paths, tmp_path / "resumed")
    with pytest.raises(Crash):
        pretrain.run(job)
    assert (tmp_path / "resumed" / "resume.pt").exists()
    position = torch_load(tmp_path / "resumed" / "resume.pt")["loop"]
    assert (position["epoch"], position["step"]) == (1, 2)
    pretrain.run(job)
    a = torch_load(tmp_path / "full" / "encoder.pt")["backbone"]
    b = torch_load(tmp_path / "resumed" / "encoder.pt")["backbone"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma = pd.read_csv(tmp_path / "full" / "metrics.csv").drop(columns="throughput")
    mb = pd.read_csv(tmp_path / "resumed" / "metrics.csv").drop(columns="throughput")
    pd.testing.assert_frame_equal(ma, mb)


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_a_signal_checkpoints_stops_and_the_retry_resumes_bit_identical(
        data, tmp_path, monkeypatch, capsys, signum):
    """SLURM's warning (SIGUSR1) or its time limit / preemption (SIGTERM) mid-epoch: the step
    finishes, a resume checkpoint is written at it, the job stops saying so, and the retry
    resumes there and ends as the uninterrupted run (test_pretrain_resume_is_bit_identical's
    reference)."""
    from ilmoco.training import runtime

    paths, _ = data
    pretrain.run(pretrain_job(paths, tmp_path / "full"))
    real_step, sent = runtime.step_generator, []

    def signalling(seed, at, device):
        if at == 11 and not sent:  # global step 11 = epoch 1, step 4 of 7
            sent.append(at)
            os.kill(os.getpid(), signum)
        return real_step(seed, at, device)

    monkeypatch.setattr(loop, "step_generator", signalling)
    job = pretrain_job(paths, tmp_path / "resumed")
    before = signal.getsignal(signum)
    with pytest.raises(loop.Preempted, match=r"preempted at step 12 \(epoch 1, step 5 of"):
        pretrain.run(job)
    assert signal.getsignal(signum) is before  # the handler in place before is restored
    position = torch_load(tmp_path / "resumed" / "resume.pt")["loop"]
    assert (position["epoch"], position["step"]) == (1, 5)
    capsys.readouterr()
    pretrain.run(job)
    assert "resumed pretrain dr/moco_mse at step 12 (epoch 1, step 5 of the epoch)" in \
        capsys.readouterr().err
    a = torch_load(tmp_path / "full" / "encoder.pt")["backbone"]
    b = torch_load(tmp_path / "resumed" / "encoder.pt")["backbone"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_another_config_is_not_resumed(data, tmp_path):
    paths, _ = data
    job = pretrain_job(paths, tmp_path)
    ck = checkpoints.ResumeCheckpoint(job.resume_path, "other-config")
    ck.save({"modules": {}, "optimizer": {}, "loop": {}})
    pretrain.run(job)  # would fail to load the empty state if it tried
    assert (tmp_path / "encoder.pt").exists()


def test_nan_loss_stops_with_the_step(data, tmp_path):
    paths, _ = data
    src = batches.BatchSource(np.zeros((16, 1, 4, 4), np.uint8), 4, 0, torch.device("cpu"))
    w = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([w], lr=0.1)

    def step_fn(x, y, gen, g):
        loss = w.sum() * (float("nan") if g == 5 else 1.0)
        return loss, {"loss": loss.detach()}

    with pytest.raises(loop.NonFiniteLoss, match="at step 5 .epoch 1."):
        loop.train_loop(modules=torch.nn.ParameterList([w]), optimizer=opt, source=src,
                        epochs=3, step_fn=step_fn, lr_fn=lambda g: 0.1, resume=None, seed=0,
                        progress="quiet")
    assert torch.isfinite(w).all()  # stopped before the bad step's update


class _RecordingCheckpoint(checkpoints.ResumeCheckpoint):
    """Records the loop position of every save instead of writing it."""

    def __init__(self):
        self.saved = []

    def load(self):
        return None

    def save(self, state):
        self.saved.append((state["loop"]["epoch"], state["loop"]["step"]))


@pytest.mark.parametrize("every,positions", [
    # once 3 steps have passed: an epoch end (7, 14 steps) too soon after one is skipped
    (3, [(0, 3), (0, 6), (1, 2), (1, 5)]),
    (7, [(1, 0), (2, 0)]),  # due exactly at the epoch ends
    (0, [(1, 0), (2, 0)]),  # 0: at each epoch end
])
def test_checkpoints_once_checkpoint_every_steps_have_passed(every, positions):
    src = batches.BatchSource(np.zeros((28, 1, 2, 2), np.uint8), 4, 0, torch.device("cpu"))
    w = torch.nn.Parameter(torch.ones(1))
    ck = _RecordingCheckpoint()
    loop.train_loop(modules=torch.nn.ParameterList([w]), optimizer=torch.optim.SGD([w], lr=0.1),
                    source=src, epochs=2, step_fn=lambda x, y, gen, g: (w.sum(), {}),
                    lr_fn=lambda g: 0.1, resume=ck, seed=0, checkpoint_every=every,
                    progress="quiet")
    assert src.steps_per_epoch == 7 and ck.saved == positions


def test_small_labelled_sets_are_cycled_to_the_minimum_steps():
    src = batches.BatchSource(np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1), 4, 0,
                              torch.device("cpu"), min_steps=5)
    assert src.steps_per_epoch == 5
    seen = np.concatenate([src.indices(0, s) for s in range(5)])
    assert len(seen) == 20 and set(seen) == set(range(6))
    assert set(np.bincount(seen)) <= {3, 4}  # whole passes over the set, then a partial one
    assert batches.BatchSource(np.zeros((40, 1, 1, 1), np.uint8), 4, 0,
                               torch.device("cpu"), min_steps=5).steps_per_epoch == 10


def finetune_job(paths, meta, out, encoder=None, method="supervised", **finetune_over):
    out.mkdir(parents=True, exist_ok=True)
    settings = tiny_settings(finetune=finetune_over)
    return finetune.FinetuneJob(
        run=settings.finetune_run("dr", method), pct=100, seed=0,
        split_csv=str(paths["split"]), meta=meta, cache_images=str(paths["images"]),
        cache_index=str(paths["index"]), encoder=encoder,
        out_predictions=str(out / "predictions.csv"),
        out_predictions_last=str(out / "predictions_last.csv"),
        out_selection=str(out / "selection.json"), out_model=str(out / "model.pt"),
        out_history=str(out / "history.csv"), resume_path=str(out / "resume.pt"))


def score(job, meta, **bootstrap):
    """``metrics.json`` of a fine-tuning job, as the ``evaluate`` stage writes it."""
    from ilmoco.config.settings.bootstrap import BootstrapSettings
    from ilmoco.stages.evaluate import run as evaluate

    out = Path(job.out_selection).parent / "metrics.json"
    b = BootstrapSettings(**{"resamples": 50, "seed": 0, "level": 0.95,
                             "paper_interval": False, **bootstrap})
    return evaluate(predictions=job.out_predictions, predictions_last=job.out_predictions_last,
                    selection=job.out_selection, meta=meta, bootstrap=b, out_metrics=out)


def test_best_validation_epoch_is_the_one_evaluated(data, tmp_path, monkeypatch):
    paths, meta = data
    scores = iter([0.55, 0.90, 0.60, 0.58])  # epoch 1 is best, the last epoch is worse
    snapshots = []
    real_predict = finetune.predict_proba

    def recording_predict(model, images, *a, **k):
        snapshots.append({n: v.clone() for n, v in model.state_dict().items()})
        return real_predict(model, images, *a, **k)

    monkeypatch.setattr(finetune, "predict_proba", recording_predict)
    monkeypatch.setattr(finetune, "selection_score", lambda *a: next(scores))
    job = finetune_job(paths, meta, tmp_path)
    result = finetune.run(job)
    assert result["best_epoch"] == 1 and result["epochs_run"] == 4
    saved = torch_load(job.out_model)["model"]
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)
    assert not all(torch.equal(saved[k], snapshots[3][k]) for k in saved)
    score(job, meta)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["ci_low"] <= m["estimate"] <= m["ci_high"] and m["bootstrap_unit"] == "patient"
    assert m["best_epoch"] == 1 and m["last_epoch"]["epoch"] == 3
    pred = pd.read_csv(job.out_predictions)
    assert list(pred.columns) == ["image_id", "patient_id", "y_referable", "p_referable"]
    assert pred["p_referable"].between(0, 1).all()
    # the best epoch (1) and the last (3) predict differently
    last = pd.read_csv(job.out_predictions_last)
    # np.allclose's default (rtol 1e-5): two epochs' probabilities differ by far more
    assert not np.allclose(last["p_referable"], pred["p_referable"])


def test_scoring_matches_the_metrics_of_the_predictions(data, tmp_path):
    """metrics.json from the predictions as written: the same AUC as scikit-learn, the
    paper-style interval when asked; the interval settings need no retraining."""
    from sklearn.metrics import roc_auc_score

    paths, meta = data
    job = finetune_job(paths, meta, tmp_path, epochs=2)
    finetune.run(job)
    pred = pd.read_csv(job.out_predictions)
    m = score(job, meta, paper_interval=True, resamples=200)
    # an AUC is a count of ordered pairs over a count: both float64 from the same file,
    # equal up to one division's rounding (2**-53), far inside approx's default rel 1e-6
    assert m["estimate"] == pytest.approx(roc_auc_score(pred["y_referable"], pred["p_referable"]))
    assert m["paper_ci_low"] <= m["paper_mean"] <= m["paper_ci_high"]
    assert m["n_resamples"] == 200 and m["bootstrap"]["paper_interval"] is True


def test_early_stopping(data, tmp_path, monkeypatch):
    paths, meta = data
    scores = iter([0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    monkeypatch.setattr(finetune, "selection_score", lambda *a: next(scores))
    result = finetune.run(finetune_job(paths, meta, tmp_path, epochs=6, patience=2))
    assert result["best_epoch"] == 0 and result["epochs_run"] == 3


def test_finetune_refuses_a_mismatched_encoder(data, tmp_path):
    paths, meta = data
    pre = pretrain_job(paths, tmp_path / "pre", "moco")
    pretrain.run(pre)
    with pytest.raises(InputError, match=r"trained with method='moco' but this run needs "
                                         r"method='moco_mse'"):
        finetune.run(finetune_job(paths, meta, tmp_path / "ft", pre.out_encoder, "moco_mse"))
    # an SSL method is fine-tuned on its encoder's arch (pretrain.arch or the variant's)
    job = finetune_job(paths, meta, tmp_path / "ft", pre.out_encoder, "moco")
    job.run = tiny_settings(pretrain={"arch": "resnet50"}).finetune_run("dr", "moco")
    with pytest.raises(InputError, match=r"arch='resnet18' but this run needs arch='resnet50'"):
        finetune.run(job)
    result = finetune.run(finetune_job(paths, meta, tmp_path / "ok", pre.out_encoder, "moco"))
    assert result["encoder"] == pre.out_encoder


def test_feature_extraction_leaves_batchnorm_untouched():
    torch.manual_seed(0)
    b = Backbone("resnet18", 1).train()
    b(torch.randn(8, 1, 32, 32))  # give BN non-trivial running statistics
    before = {k: v.clone() for k, v in b.state_dict().items()}
    feats = extract_features(b, np.random.randint(0, 255, (10, 1, 32, 32), dtype=np.uint8),
                             torch.device("cpu"), batch_size=4)
    assert b.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())
    assert [f.shape for f in feats] == [(10, 64), (10, 128), (10, 256), (10, 512)]


def test_meta_round_trip(data):
    _, meta = data
    assert DatasetMeta.from_dict(meta.to_dict()) == meta


def test_multilabel_data_through_finetuning_and_probing(tmp_path_factory):
    """NIH-layout multi-label data (14 sigmoids) through fine-tuning and layer probing; the
    smoke DAG covers the binary path."""
    from ilmoco.stages.probe import ProbeJob
    from ilmoco.stages.probe import run as run_probe

    paths, meta = prepare(tmp_path_factory.mktemp("nih"), fmt="nih_cxr14", n_patients=40)
    assert meta.task == "multilabel" and len(meta.label_columns) == 14
    s = tiny_settings(datasets={"dr": {"format": "nih_cxr14"}}, finetune={"epochs": 2})
    out = tmp_path_factory.mktemp("nih_ft")
    job = finetune.FinetuneJob(
        run=s.finetune_run("dr", "supervised"), pct=100, seed=0, split_csv=str(paths["split"]),
        meta=meta, cache_images=str(paths["images"]), cache_index=str(paths["index"]),
        encoder=None, out_predictions=str(out / "p.csv"),
        out_predictions_last=str(out / "p_last.csv"), out_selection=str(out / "sel.json"),
        out_model=str(out / "model.pt"), out_history=str(out / "h.csv"),
        resume_path=str(out / "resume.pt"))
    finetune.run(job)
    result = score(job, meta)
    assert result["metric"] == "macro_auc" and 0 <= result["estimate"] <= 1
    pred = pd.read_csv(out / "p.csv")
    assert sum(c.startswith("p_") for c in pred.columns) == 14
    df = run_probe(ProbeJob(
        run=s.probe_run("dr", "random_init"), model=None, init_seed=0, zero_init_residual=True,
        split_csv=str(paths["split"]), meta=meta, cache_images=str(paths["images"]),
        cache_index=str(paths["index"]), out_csv=str(out / "probe.csv"),
        out_json=str(out / "probe.json")))
    assert list(df["block"]) == ["block1", "block2", "block3", "block4"]
    assert (df["ci_low"] <= df["estimate"]).all() and (df["estimate"] <= df["ci_high"]).all()


def test_the_encoder_of_the_lowest_validation_loss_is_kept(data, tmp_path, monkeypatch):
    """``select: val_loss`` (the official code) saves the epoch of the lowest validation loss:
    the same weights as a run stopped after that epoch (constant learning rate)."""
    paths, _ = data
    losses = iter([3.0, 1.0, 2.0, 4.0])  # epoch 1 is the best, not the last
    real = pretrain.validation_losses

    def scripted(*args, **kwargs):
        out = real(*args, **kwargs)
        return {**out, "val_loss": next(losses)}

    monkeypatch.setattr(pretrain, "validation_losses", scripted)
    const = {"schedule": "constant", "warmup_epochs": 0}
    job = pretrain_job(paths, tmp_path / "sel", "moco", epochs=4, select="val_loss",
                       optimizer=const)
    pretrain.run(job)
    best = 1
    meta = torch_load(job.out_encoder)["meta"]
    assert meta["selected_epoch"] == best and meta["epochs"] == 4
    monkeypatch.setattr(pretrain, "validation_losses", real)
    short = pretrain_job(paths, tmp_path / "short", "moco", epochs=best + 1, select="last",
                         optimizer=const)
    pretrain.run(short)
    a = torch_load(job.out_encoder)["backbone"]
    b = torch_load(short.out_encoder)["backbone"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_weight_decay_on_norm_and_bias_only_when_asked():
    from ilmoco.training.optim import param_groups

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.Linear(4, 2))
    decay, no_decay = param_groups(net, 1e-4, decay_norm_and_bias=False)
    assert [p.ndim for p in decay["params"]] == [4, 2] and no_decay["weight_decay"] == 0
    assert len(no_decay["params"]) == 4  # conv bias, BN weight and bias, linear bias
    decay, no_decay = param_groups(net, 1e-4, decay_norm_and_bias=True)
    assert len(decay["params"]) == 6 and not no_decay["params"]


def textbook_step(name, p, g, state, t, lr, momentum, wd, betas=(0.9, 0.999), eps=1e-8):
    """One step of SGD (momentum, L2), Adam (L2) or AdamW (decoupled) in float64, as the
    papers write them (torch's documented update rules)."""
    if name == "adamw":
        p = p * (1 - lr * wd)
    elif wd:
        g = g + wd * p
    if name == "sgd":
        state["buf"] = g if t == 1 else momentum * state["buf"] + g
        return p - lr * state["buf"]
    b1, b2 = betas
    state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
    state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
    m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)
    return p - lr * m_hat / (v_hat.sqrt() + eps)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_the_fused_optimiser_kernel_makes_the_same_update(name):
    """``optimizer.fused`` changes the speed, not the update: both kernels, fed the same
    gradients, stay within float32 rounding of the textbook update computed in float64.

    The gradients are given, not computed from each kernel's parameters: a gradient that is
    zero up to rounding (a bias before BatchNorm) is noise whose sign Adam turns into a step
    of ±lr, so comparing trajectories of computed gradients compares rounding noise (on an
    AMD EPYC, 0.011 on such a bias; every other parameter within 3e-8)."""
    import tolerances as tol

    from ilmoco.config.settings.training import OptimizerSettings
    from ilmoco.training.optim import build_optimizer

    lr, momentum, wd, steps = 0.01, 0.9, 1e-3, 5
    torch.manual_seed(0)
    start = [p.detach().clone() for p in
             torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 2)).parameters()]
    g = torch.Generator().manual_seed(1)
    grads = [[torch.randn(p.shape, generator=g) for p in start] for _ in range(steps)]

    def trained(fused):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = build_optimizer(torch.nn.ParameterList(params), OptimizerSettings(
            name, lr, momentum, wd, False, fused, "constant", 0))
        for step in grads:
            for p, gp in zip(params, step):
                p.grad = gp.clone()
            opt.step()
        return [p.detach() for p in params]

    # float64 reference, and each element's rounding budget along its trajectory: one
    # rounding of the stored parameter per step (u |p|) plus the update's own roundings
    # (~16 float32 operations per element in Adam, fewer in SGD: ops_rtol(16) |step|)
    ref, bound = [p.double() for p in start], [torch.zeros_like(p, dtype=torch.float64)
                                               for p in start]
    states = [{} for _ in start]
    for t, step in enumerate(grads, 1):
        for i, (gp, state) in enumerate(zip(step, states)):
            decay = wd if start[i].ndim > 1 else 0.0  # param_groups: no decay on biases
            new = textbook_step(name, ref[i], gp.double(), state, t, lr, momentum, decay)
            bound[i] += (tol.unit_roundoff(torch.float32) * new.abs()
                         + tol.ops_rtol(16, torch.float32) * (new - ref[i]).abs())
            ref[i] = new
    fused, loop = trained(True), trained(False)
    for p0, r, b, a, c in zip(start, ref, bound, fused, loop):
        assert (r - p0.double()).abs().max() > 1e-3  # the parameters moved
        assert ((a.double() - r).abs() <= b).all(), (name, (a.double() - r).abs().max())
        assert ((c.double() - r).abs() <= b).all(), (name, (c.double() - r).abs().max())
