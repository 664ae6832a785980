"""Encoders in and out, through the DAG of the smoke run: its timm variant, its exports
loaded with the README's recipes, its TensorBoard event files; then the ``imagenet``
method from a weights file of random weights (a stand-in for ImageNet's), fine-tuned,
probed, compared (as the paired baseline) and in every table, and rerun when the file is
replaced."""

import json
import shutil

import pandas as pd
import pytest
import torch
import torchvision
import yaml
from snakerun import (
    SMOKE_CONFIG,
    SMOKE_DATASETS,
    SMOKE_METHODS,
    planned_jobs,
    readme_recipe,
    snakemake,
)

from ilmoco.training.checkpoints import load_backbone

pytestmark = pytest.mark.slow

D = "results/dr_synth"


def test_the_timm_variant_pretrains_with_its_term_on_all_blocks(smoke_run):
    curve = pd.read_csv(smoke_run / D / "pretrain/resnet18d_bt/metrics.csv")
    assert all((curve[f"bt_block{i}"].dropna() > 0).all() for i in range(1, 5))
    _, meta = load_backbone(smoke_run / D / "pretrain/resnet18d_bt/encoder.pt")
    assert meta["arch"] == "timm:resnet18d"
    selection = json.loads((smoke_run / D / "finetune/resnet18d_bt/labeled_100/seed0/"
                            "selection.json").read_text())
    assert selection["settings"]["settings"]["arch"] == "timm:resnet18d"
    layer = pd.read_csv(smoke_run / "results/tables/layer_probe.csv")
    assert set(layer.loc[layer["method"] == "resnet18d_bt", "block"]) == {
        "block1", "block2", "block3", "block4"}


@pytest.mark.parametrize("method,library", [("moco_mse", "torchvision"),
                                            ("resnet18d_bt", "timm")])
def test_the_exports_load_with_the_readme_recipes(smoke_run, method, library):
    import re

    export = smoke_run / D / "pretrain" / method / "encoder.safetensors"
    code = re.sub(r'^path = "[^"]*"', f"path = {str(export)!r}", readme_recipe(library),
                  count=1, flags=re.M)
    images = torch.rand(4, 3, 16, 16)
    scope = {"images": images}
    exec(compile(code, f"README.md ({library} recipe)", "exec"), scope)
    backbone, _ = load_backbone(smoke_run / D / "pretrain" / method / "encoder.pt")
    with torch.no_grad():
        want, _ = backbone.eval()(images)
    # the stock model runs the same modules on the exported (bitwise) weights, and the same
    # pooling: the same float32 operations, so equal
    torch.testing.assert_close(scope["embedding"], want, rtol=0, atol=0)


def test_every_training_job_wrote_its_tensorboard_events(smoke_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = smoke_run / D / "tensorboard"
    runs = {p.parent.relative_to(tb).as_posix() for p in tb.rglob("events.out.tfevents.*")}
    ssl = [m for m in SMOKE_METHODS if m != "supervised"]
    assert {f"pretrain/{m}" for m in ssl} <= runs
    assert {f"finetune/{m}/labeled_{p}/seed0" for m in SMOKE_METHODS for p in (6, 100)} <= runs
    acc = EventAccumulator(str(tb / "pretrain/moco"), size_guidance={"scalars": 0})
    acc.Reload()
    curve = pd.read_csv(smoke_run / D / "pretrain/moco/metrics.csv")
    logged = curve.dropna(subset=["infonce"])
    assert [e.step for e in acc.Scalars("infonce")] == logged["step"].tolist()
    # metrics.csv keeps 6 significant digits (%.6g, <= 5e-6 relative); events hold float32
    assert [e.value for e in acc.Scalars("infonce")] == pytest.approx(
        logged["infonce"].tolist(), rel=1e-5)


@pytest.fixture(scope="module")
def imagenet_run(smoke_run, tmp_path_factory):
    """The smoke run's results with the ``imagenet`` method added: only its jobs and the
    summaries run. Its weights file holds a torchvision resnet18 of random weights."""
    work = tmp_path_factory.mktemp("imagenet")
    for rel in ("data", "results"):
        shutil.copytree(smoke_run / rel, work / rel, copy_function=shutil.copy2)
    torch.manual_seed(0)
    weights = work / "resnet18_imagenet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    cfg = work / "imagenet.yaml"
    cfg.write_text(yaml.safe_dump({"methods": [*SMOKE_METHODS, "imagenet"],
                                   "init": {"weights": str(weights)},
                                   "paired": {"baseline": "imagenet"}}))
    configs = (*SMOKE_CONFIG, cfg)
    planned = planned_jobs(workdir=work, configfiles=configs)
    n = len(SMOKE_DATASETS)  # one init_encoder per dataset, fine-tuned at 6 and 100 %
    assert planned["init_encoder"] == n and planned["finetune"] == 2 * n, planned
    assert "pretrain" not in planned and "cache" not in planned, planned
    snakemake(workdir=work, configfiles=configs)
    return work, configs, weights


def test_the_imagenet_method_is_in_every_table(imagenet_run):
    work, _, _ = imagenet_run
    tables = work / "results/tables"
    ft = pd.read_csv(tables / "finetune.csv")
    assert set(ft.loc[ft["method"] == "imagenet", "fraction"]) == {6, 100}
    for name in ("linear_probe", "layer_probe", "feature_reuse"):
        assert "imagenet" in set(pd.read_csv(tables / f"{name}.csv")["method"]), name
    paired = pd.read_csv(tables / "paired_difference.csv")
    assert set(paired["baseline"]) == {"imagenet"}
    assert set(paired["method"]) == set(SMOKE_METHODS)
    assert "ImageNet" in (tables / "finetune.md").read_text()
    _, meta = load_backbone(work / D / "pretrain/imagenet/encoder.pt")
    assert meta["method"] == "imagenet" and meta["epochs"] == 0
    assert (work / D / "pretrain/imagenet/encoder.safetensors").is_file()
    assert (work / "results/figures/dr_synth/layer_probe.png").is_file()


def test_replacing_the_weights_file_reruns_the_imagenet_jobs_only(imagenet_run):
    work, configs, weights = imagenet_run
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    jobs = planned_jobs(workdir=work, configfiles=configs)
    n = len(SMOKE_DATASETS)
    assert (jobs["init_encoder"], jobs["finetune"], jobs["probe"]) == (n, 2 * n, n), jobs
    assert "pretrain" not in jobs
