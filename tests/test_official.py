"""The official code's choices as stage behaviour, on a tiny dataset: the fine-tuning
selection metrics (accuracy, the raw-logit AUC), the validation loss on identical
un-augmented views over the whole validation set, and the official probing protocols (the
layer probes and the --only-ll linear probe: raw features of a train-mode backbone under
no_grad, BatchNorm statistics moving, the last epoch)."""

import json

import numpy as np
import pandas as pd
import pytest
import tolerances as tol
import torch
from sklearn.metrics import accuracy_score, roc_auc_score
from stagedata import prepare, tiny_settings
from test_training import finetune_job, pretrain_job

from ilmoco.data.augment import BatchAugment
from ilmoco.data.batches import BatchSource
from ilmoco.data.cache import ImageCache
from ilmoco.io import read_table, torch_load
from ilmoco.models.resnet import ResNetBackbone
from ilmoco.stages import finetune, linear_probe, pretrain, probe
from ilmoco.training.heads import Classifier, targets
from ilmoco.training.inference import predict_logits
from ilmoco.training.probing import ProbeData, ProbeHeads, train_heads
from ilmoco.training.runtime import prepare as prepare_runtime


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("dr"))


def val_of(paths, meta):
    split = read_table(paths["split"])
    val = split[split["split"] == "val"]
    return ImageCache(paths["images"], paths["index"]).load(val["image_id"]), targets(val, meta)


@pytest.mark.parametrize("select", ["auc_raw_logit", "accuracy"])
def test_the_official_selection_metrics(data, tmp_path, select):
    """The saved (best) model's validation score is the official one: scikit-learn's AUC of
    the raw logit of class 1 (retina), or accuracy = micro F1 (histopathology)."""
    paths, meta = data
    job = finetune_job(paths, meta, tmp_path)
    s = tiny_settings(by_format={"eyepacs_dr": {"select_metric": select}},
                      finetune={"epochs": 2})
    job.run = s.finetune_run("dr", "supervised", 100)
    result = finetune.run(job)
    model = Classifier(ResNetBackbone("resnet18", 3), 2)
    model.load_state_dict(torch_load(job.out_model)["model"])
    images, y = val_of(paths, meta)
    logits = predict_logits(model, images, torch.device("cpu"))
    expected = (roc_auc_score(y, logits[:, 1]) if select == "auc_raw_logit"
                else accuracy_score(y, logits.argmax(1)))
    # the same logits (same weights, kernels, batches); float64 score formulas: ours counts
    # exactly and divides once, sklearn's trapezoids round ~4 times a point, <= len(y) points
    assert result["val_best_score"] == pytest.approx(
        expected, abs=tol.gamma(4 * len(y), torch.float64))
    history = pd.read_csv(job.out_history)
    # history.csv keeps 6 significant digits (%.6g): <= 5e-7 off for a score <= 1
    assert history[f"val_{select}"].max() == pytest.approx(expected, abs=1e-6)


def test_validation_on_identical_views_over_the_whole_validation_set(data, tmp_path,
                                                                    monkeypatch):
    paths, meta = data
    seen = []
    real = pretrain.validation_losses

    def recording(model, aug, images, batch_size, rt, seed, identical=False):
        seen.append((len(images), identical))
        return real(model, aug, images, batch_size, rt, seed, identical=identical)

    monkeypatch.setattr(pretrain, "validation_losses", recording)
    pretrain.run(pretrain_job(paths, tmp_path / "a", "moco", val_max_images=None,
                              val_views="identical"))
    n_val = int((read_table(paths["split"])["split"] == "val").sum())
    assert n_val > 8 and seen == [(n_val, True)] * 2  # every validation image, each epoch
    pretrain.run(pretrain_job(paths, tmp_path / "b", "moco", val_max_images=8))
    assert seen[2:] == [(8, False)] * 2  # the default: a sample, augmented pairs
    # identical views: the loss of each batch with the image itself twice, nothing else
    s = tiny_settings()
    run = s.pretrain_run("dr", "moco")
    from ilmoco.training.ssl import build_model, validation_losses

    rt = prepare_runtime("cpu", "fp32", False, 0)
    torch.manual_seed(0)
    model = build_model(run, 3)
    images, _ = val_of(paths, meta)
    got = validation_losses(model, BatchAugment(run.augment, 16), images, 8, rt, 0,
                            identical=True)
    model.eval()
    with torch.no_grad():
        losses = [float(model(x, x, None, update=False)[1]["loss"]) for x in
                  (torch.from_numpy(images[i:i + 8]).float() / 255
                   for i in range(0, len(images) - 7, 8))]
    # the same float32 batch losses (same kernels and inputs, no shuffle with update=False);
    # only their positive float64 mean is summed in another order
    assert got["val_loss"] == pytest.approx(np.mean(losses),
                                            rel=tol.sum_rtol(len(losses), torch.float64))
    augmented = validation_losses(model, BatchAugment(run.augment, 16), images, 8, rt, 0)
    # approx's default rel=1e-6: augmented pairs move the loss by ~6e-4 relative here
    assert augmented["val_loss"] != pytest.approx(got["val_loss"])


def heads_probe(blocks, seed=0):
    torch.manual_seed(seed)
    backbone = ResNetBackbone("resnet18", 3)
    return ProbeHeads(backbone, blocks, 2)


def test_official_probing_moves_batchnorm_and_trains_only_the_heads(data):
    """The backbone runs under no_grad in train mode: its weights stay, its BatchNorm
    running statistics move; one pass feeding four heads equals a run per head."""
    paths, meta = data
    split = read_table(paths["split"])
    cache = ImageCache(paths["images"], paths["index"])
    train = split[split["split"] == "train"]
    images, y = val_of(paths, meta)
    rt = prepare_runtime("cpu", "fp32", False, 0)

    def fit(p):
        src = BatchSource(cache.images, 8, 0, rt.device, labels=targets(train, meta),
                          rows=cache.rows(train["image_id"]))
        opt = torch.optim.Adam(p.heads.parameters(), lr=1e-3)
        return train_heads(p, ProbeData(src, images, y), augment=None, optimizer=opt,
                           lr_fn=lambda _: 1e-3, epochs=2, rt=rt, task="binary",
                           metric="macro_auc", seed=0, resume=None, progress="quiet")

    four = heads_probe(range(4))
    start = {k: v.clone() for k, v in four.state_dict().items()}
    state = fit(four)
    end = four.state_dict()
    for k, v in start.items():
        if k.startswith("backbone.") and k.endswith(("weight", "bias")):
            assert torch.equal(v, end[k]), k  # no gradient reaches the backbone
    assert not torch.equal(start["backbone.bn1.running_mean"], end["backbone.bn1.running_mean"])
    assert not torch.equal(start["heads.2.weight"], end["heads.2.weight"])
    assert [h["epoch"] for h in state.history if "val_block1" in h] == [0, 1]
    one = heads_probe([2])
    one.load_state_dict({k.replace("heads.2.", "heads.0."): v for k, v in start.items()
                         if not k.startswith(("heads.0.", "heads.1.", "heads.3."))})
    fit(one)
    # the same float32 operations in the same order (the summed losses give each head the
    # gradient of its own), so the weights are bitwise equal
    assert torch.equal(one.heads[0].weight, four.heads[2].weight)


def test_the_official_probe_stage(data, tmp_path):
    paths, meta = data
    s = tiny_settings(probe={"protocol": "official", "epochs": 2, "batch_size": 8})
    out = tmp_path / "probe"
    out.mkdir()
    job = probe.ProbeJob(
        run=s.probe_run("dr", "random_init"), model=None, init_seed=0, zero_init_residual=True,
        split_csv=str(paths["split"]), meta=meta, cache_images=str(paths["images"]),
        cache_index=str(paths["index"]), out_csv=str(out / "probe.csv"),
        out_json=str(out / "probe.json"), resume_path=str(out / "resume.pt"))
    df = probe.run(job)
    assert list(df["block"]) == ["block1", "block2", "block3", "block4"]
    assert (df["best_epoch"] == 1).all()  # the last epoch, no selection
    saved = json.loads((out / "probe.json").read_text())
    assert saved["protocol"] == "official" and saved["settings"]["settings"]["protocol"] == (
        "official")
    last = saved["history"][-1]
    # the same floats: JSON round-trips them exactly
    assert df["val_score"].tolist() == [last[f"val_{b}"] for b in df["block"]]
    assert (df["ci_low"] <= df["estimate"]).all() and (df["estimate"] <= df["ci_high"]).all()
    assert not (out / "resume.pt").exists()


def test_the_only_ll_linear_probe_stage(data, tmp_path):
    paths, meta = data
    s = tiny_settings(finetune={"epochs": 3}, probe={"linear": "only_ll"})
    pre = pretrain_job(paths, tmp_path / "pre", "moco")
    pretrain.run(pre)
    out = tmp_path / "ll"
    job = linear_probe.LinearProbeJob(
        run=s.linear_probe_run("dr", "moco"), model=pre.out_encoder, init_seed=0,
        zero_init_residual=True, split_csv=str(paths["split"]), meta=meta,
        cache_images=str(paths["images"]), cache_index=str(paths["index"]),
        out_csv=str(out / "linear.csv"), out_json=str(out / "linear.json"),
        resume_path=str(out / "resume.pt"))
    df = linear_probe.run(job)
    row = df.iloc[0]
    assert (row["block"], row["protocol"], row["epochs"]) == ("block4", "only_ll", 3)
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"] and np.isfinite(row["val_score"])
    assert row["feature_dim"] == 512
    saved = json.loads((out / "linear.json").read_text())
    assert len(saved["history"]) == 3 and saved["settings"]["settings"]["epochs"] == 3
