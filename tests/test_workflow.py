"""The Snakemake workflow: lint, the planned DAG, config layering and errors at dry-run, the
smoke run of the whole DAG, rerun precision (execution vs result settings, code changes),
determinism without network, the resolved configuration and the presets."""

import os
import stat
import subprocess
import sys
import textwrap

import pytest
import yaml
from snakerun import (
    DEMO,
    ROOT,
    SMOKE_CONFIG,
    SMOKE_DATASETS,
    SMOKE_RUNS,
    planned_jobs,
    snakemake,
)

pytestmark = pytest.mark.slow


PRESETS = ROOT / "config" / "presets"


REAL = ROOT / "config" / "real_data.example.yaml"


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_lint_is_clean():
    r = snakemake("--lint", configfiles=(), check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_full_default_dag_dry_run(tmp_path):
    """The embedded demo's whole DAG, planned in an empty directory (never in the checkout,
    whose results/ a finished demo fills)."""
    jobs = planned_jobs(configfiles=(), workdir=tmp_path)
    assert jobs["synthetic_data"] == 3 and jobs["manifest"] == 3 and jobs["cache"] == 3
    assert jobs["pretrain"] == 3 * 3
    assert jobs["finetune"] == 3 * 4 * 3  # datasets x methods x fractions (x 1 seed)
    assert jobs["evaluate"] == jobs["finetune"]
    assert jobs["probe"] == 3 * 5  # 3 SSL encoders, the random-init control, supervised
    assert jobs["cka"] == 3 * 3 and jobs["ks"] == 3 and jobs["paired"] == 3
    assert jobs["tables"] == 1 and jobs["figures"] == 3 and jobs["resolved_config"] == 1
    assert jobs["data_report"] == 1  # all datasets in one report


def test_seeds_multiply_finetuning_also_from_the_command_line(tmp_path):
    cfg = write(tmp_path / "seeds.yaml", "seeds: [0, 1]\n")
    jobs = planned_jobs(configfiles=(*SMOKE_CONFIG, cfg), workdir=tmp_path)
    runs = SMOKE_RUNS * len(SMOKE_DATASETS)
    assert jobs["finetune"] == runs * 2  # datasets x methods x fractions x seeds
    # --config values are strings to Snakemake; the schema's types read them
    jobs = planned_jobs("--config", "seeds=[0,1]", "fractions=[6, 100]",
                        "pretrain={epochs: 3}", workdir=tmp_path)
    assert jobs["finetune"] == runs * 2


@pytest.mark.parametrize("yaml_text,message", [
    ("pretrian: {epochs: 2}\n", "config error at <top level>: Additional properties are not "
                                "allowed ('pretrian' was unexpected)"),
    ("pretrain: {epochs: ten}\n", "config error at pretrain.epochs: 'ten' is not of type "
                                  "'integer'"),
    ("methods: [moco, simclr]\n", "config error at methods: 'simclr' is neither a predefined "
                                  "method"),
    ("use_datasets: [nih_synth, chexpert]\n", "config error at use_datasets: ['chexpert'] "
                                              "not defined under `datasets`"),
    ("datasets: {nih_synth: {format: nih}}\n", "config error at datasets.nih_synth.format: "
                                               "'nih' is not one of"),
    ("probe: {fraction: 50}\n", "config error at probe.fraction: 50 is not one of"),
    ("variants: {x: {base: moco, term: mse, blocks: [5]}}\n",
     "config error at variants.x.blocks.0: 5 is greater than the maximum of 4"),
    ("paired: {baseline: byol}\n", "config error at paired.baseline: 'byol' is not one of"),
    ("methods: [moco, imagenet]\n", "config error at init.weights: method 'imagenet' starts "
                                    "from ImageNet weights: set init.weights"),
    ("pretrain: {arch: 'timm:resnet_not_a_model'}\n",
     "config error at pretrain.arch: 'resnet_not_a_model' is not a timm model"),
    ("pretrain: {arch: 'timm:bad-name'}\n",
     "config error at pretrain.arch: 'timm:bad-name' is not valid under any of the given"),
])


def test_config_errors_surface_at_dry_run(tmp_path, yaml_text, message):
    bad = write(tmp_path / "bad.yaml", yaml_text)
    r = snakemake("-n", workdir=tmp_path, configfiles=(*SMOKE_CONFIG, bad), check=False)
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert message in err, err[-3000:]
    line = next(ln for ln in err.splitlines() if "config error at" in ln)
    assert len(line) < 300  # one clear line, not a schema dump
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_a_wrong_command_line_value_is_refused_in_one_line(tmp_path):
    r = snakemake("-n", "--config", "seeds=[0,x]", workdir=tmp_path, check=False)
    err = r.stdout + r.stderr
    assert r.returncode != 0 and "config error at seeds.1: 'x' is not of type 'integer'" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------ layering and presets


def resolved(tmp_path, *configfiles):
    """Build results/resolved_config.yaml alone (no data needed) and read it."""
    snakemake("results/resolved_config.yaml", workdir=tmp_path, configfiles=configfiles)
    return yaml.safe_load((tmp_path / "results" / "resolved_config.yaml").read_text())


def leaves(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, (*prefix, k))
        else:
            yield (*prefix, k), v


def get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return KeyError
        d = d[k]
    return d


@pytest.mark.parametrize("preset", ["v2", "paper"])
def test_a_real_run_inherits_nothing_from_the_demo(tmp_path, preset):
    """Every demo value that differs from the schema default is absent from a real run,
    unless the files the run names set it themselves."""
    from stagedata import validated

    cfg = resolved(tmp_path, REAL, PRESETS / f"{preset}.yaml")
    named = [yaml.safe_load(REAL.read_text()),
             yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())]
    defaults = validated(named[0])
    demo = yaml.safe_load(DEMO.read_text())
    checked = 0
    for path, value in leaves(demo):
        if path[0] in ("datasets", "use_datasets") or get(defaults, path) == value or any(
                get(n, path) is not KeyError for n in named):
            continue
        assert get(cfg, path) != value, f"{'.'.join(path)} = {value!r} leaked from the demo"
        checked += 1
    assert checked >= 3
    # the leaks found before the demo stopped being a base layer
    assert cfg["pretrain"]["bt"]["projector"] == [2048, 2048, 2048]
    assert cfg["finetune"]["augment_overrides"] == {"blur_sigma": [0.1, 2.0]}
    assert cfg["probe"]["epochs"] == 100 and cfg["cka"]["repeats"] == 50
    assert cfg["finetune"]["min_steps_per_epoch"] == 1
    assert cfg["pretrain"]["knn"]["bank_images"] == 4096


# The official code's settings (docs/protocol.md), per dataset where they differ.


OFFICIAL = {
    "pretrain": {"arch": "resnet50", "batch_size": 32, "precision": "fp32", "select": "val_loss",
                 "zero_init_residual": "with_term", "val_max_images": None,
                 "val_views": "identical",
                 "augment_overrides": {"blur_sigma": [0.1, 2.0]},
                 "optimizer": {"name": "sgd", "lr": 0.03, "momentum": 0.9,
                               "weight_decay": 0.0001, "decay_norm_and_bias": True,
                               "schedule": "constant", "warmup_epochs": 0},
                 "moco": {"dim": 128, "queue_size": 65536, "momentum": 0.999,
                          "momentum_schedule": "constant", "temperature": 0.07,
                          "head": "linear", "bn": "global"},
                 "mse": {"weights": [0.25] * 4, "pool": [16, 16, 4, 4]},
                 "bt": {"weights": [1, 1, 1, 1], "projector": [2048] * 3, "lambda_on": 5e-5,
                        "lambda_off": 5e-5, "scale": 0.03125}},
    "finetune": {"arch": "resnet50", "epochs": 100, "patience": 100, "batch_size": 16,
                 "min_steps_per_epoch": 1, "zero_init_residual": False,
                 "optimizer": {"name": "adam", "lr": 0.001, "weight_decay": 0,
                               "decay_norm_and_bias": True, "schedule": "constant"}},
    "probe": {"supervised_reference": "finetune", "protocol": "official", "linear": "only_ll",
              "lr": 0.001},
    "cka": {"kernel": "rbf_fixed", "sigma": 0.8, "subset": 1000, "repeats": 50},
    "bootstrap": {"resamples": 500, "paper_interval": True, "paper_interval_spread": "labels"},
}


# dataset -> the official code's choice for it
OFFICIAL_BY_DATASET = {
    "nih": {"image_size": 512, "mse_pool": (16, 16, 4, 4), "ks_reference": "moco",
            "fundus_crop": False, "augment": "chest", "pretrain_batch": 16, "probe_batch": 16,
            "probe_augment": "finetune", "select": "macro_auc", "subset_augment": False,
            "lists": "chest_xray/chest_xray_14_{}_list.txt", "subset": None},
    "idc": {"image_size": 255, "mse_pool": (1, 1, 1, 1), "ks_reference": "moco_bt",
            "fundus_crop": False, "augment": "histo", "pretrain_batch": 32, "probe_batch": 64,
            "probe_augment": "dataset", "select": "accuracy", "subset_augment": True,
            "lists": "breast_cancer_histopathology/{}_split.csv", "subset": None},
    "dr": {"image_size": 299, "mse_pool": (16, 16, 4, 4), "ks_reference": "moco_mse",
           "fundus_crop": True, "augment": "retina", "pretrain_batch": 8, "probe_batch": 16,
           "probe_augment": "finetune", "select": "auc_raw_logit", "subset_augment": False,
           "lists": None, "subset": "bin2"},
}
# zero-initialised residuals: the MSE and BT scripts, not MoCo-only (pl_bolts) or the
# supervised baseline (torchvision's default)
OFFICIAL_ZERO_INIT = {"moco": False, "moco_mse": True, "moco_bt": True}
OFFICIAL_SPLITS = ROOT / "config" / "official_splits.example.yaml"


def test_the_paper_preset_resolves_to_the_official_settings(tmp_path):
    cfg = resolved(tmp_path, REAL, OFFICIAL_SPLITS, PRESETS / "paper.yaml")
    for path, value in leaves(OFFICIAL):
        assert get(cfg, path) == value, ".".join(path)
    from stagedata import validated

    from ilmoco.config.augment import preset
    from ilmoco.config.resolve import resolve

    s = resolve(validated(cfg))
    assert s.finetune.zero_init_residual is False  # the supervised baseline
    for d, want in OFFICIAL_BY_DATASET.items():
        ds = s.datasets[d]
        assert (ds.image_size, ds.ks_reference, ds.fundus_crop, ds.augment) == (
            want["image_size"], want["ks_reference"], want["fundus_crop"], want["augment"]), d
        mse = s.pretrain_run(d, "moco_mse").term
        assert mse.settings.pool == want["mse_pool"] and mse.weights == (0.25,) * 4, d
        bt = s.pretrain_run(d, "moco_bt").term.settings
        assert (bt.lambda_on, bt.lambda_off, bt.scale, bt.projector) == (
            5e-5, 5e-5, 1 / 32, (2048, 2048, 2048))
        spec = s.pretrain_run(d, "moco").augment
        assert spec.blur_sigma == (0.1, 2.0) and spec.jitter == (0.4, 0.4, 0.4, 0.1)
        assert spec.rotation == (30 if want["augment"] in ("chest", "retina") else 0)
        assert spec.crop_scale == ((0.4, 1.0) if want["augment"] == "histo" else None)
        for m, zero in OFFICIAL_ZERO_INIT.items():
            run = s.pretrain_run(d, m).settings
            assert (run.batch_size, run.zero_init_residual) == (want["pretrain_batch"], zero), (
                d, m)
        # the split: the authors' lists (NIH, IDC) or jama16's bin2 (EyePACS)
        if want["lists"]:
            assert {k: v.split("intermdiate_layer_matter_ssl/")[1]
                    for k, v in ds.split_lists.items()} == {
                k: want["lists"].format(k) for k in ("train", "val", "test")}, d
        else:
            assert ds.split_lists is None
        assert ds.reader_options.get("subset") == want["subset"], d
        # fine-tuning: the official selection metric; the Subset quirk below 100 %
        overrides = {"blur_sigma": [0.1, 2.0]}
        full = preset(want["augment"], "finetune", overrides)
        flips = preset(want["augment"], "dataset", overrides)
        assert flips == (preset("histo", "dataset") if want["augment"] == "histo" else
                         preset("none", "dataset"))  # histopathology: a horizontal flip
        for pct in (1, 6, 100):
            ft = s.finetune_run(d, "moco", pct)
            assert ft.select_metric == want["select"], d
            quirk = want["subset_augment"] and pct < 100
            assert ft.augment == (flips if quirk else full), (d, pct)
        # the official layer probes and the --only-ll linear probe
        for m in s.probe_methods():
            probe = s.probe_run(d, m)
            assert (probe.settings.protocol, probe.settings.batch_size, probe.settings.lr) == (
                "official", want["probe_batch"], 0.001), (d, m)
            assert probe.augment == (full if want["probe_augment"] == "finetune" else flips), (
                d, m)
            only_ll = s.linear_probe_run(d, m)
            assert (only_ll.settings.epochs, only_ll.settings.batch_size, only_ll.augment,
                    only_ll.fraction) == (100, 16, full, 100.0), (d, m)
            assert (only_ll.settings.optimizer.name, only_ll.settings.optimizer.lr) == (
                "adam", 0.001)
    assert s.probe_methods() == ["moco", "moco_mse", "moco_bt", "random_init"]


def test_the_v2_preset_resolves_to_its_documented_values(tmp_path):
    cfg = resolved(tmp_path, REAL, PRESETS / "v2.yaml")
    documented = {"pretrain": {"arch": "resnet50", "batch_size": 256,
                               "optimizer": {"lr": 0.03, "schedule": "cosine",
                                             "warmup_epochs": 5},
                               "moco": {"temperature": 0.2, "head": "mlp", "bn": "split",
                                        "bn_splits": 8, "momentum_schedule": "cosine"}},
                  "finetune": {"patience": 10, "optimizer": {"name": "adam", "lr": 0.0003}},
                  "cka": {"kernel": "linear"}}
    for path, value in leaves(documented):
        assert get(cfg, path) == value, ".".join(path)
    for d in ("nih", "idc", "dr"):
        assert cfg["by_format"][cfg["datasets"][d]["format"]]["image_size"] == 224
    # the clean choices, not the official code's quirks
    from stagedata import validated

    from ilmoco.config.resolve import resolve

    s = resolve(validated(cfg))
    assert (s.probe.protocol, s.probe.linear, s.bootstrap.paper_interval) == (
        "frozen", "layer", False)
    assert (s.pretrain.val_views, s.pretrain.zero_init_residual) == ("augmented", True)
    for d, ds in s.datasets.items():
        assert ds.split_lists is None and ds.reader_options.get("subset") is None
        assert not ds.official_subset_augment and ds.select_metric is None
        assert s.pretrain_run(d, "moco").settings.batch_size == 256
    preset = yaml.safe_load((PRESETS / "v2.yaml").read_text())  # execution settings
    assert preset["pretrain"]["compile"] is True and preset["finetune"]["compile"] is True


def test_the_ablation_example_plans_one_pretraining_per_variant(tmp_path):
    cfg = yaml.safe_load((ROOT / "config/ablation.example.yaml").read_text())
    ssl = [m for m in cfg["methods"] if m != "supervised"]
    assert len(ssl) >= 10 and len(cfg["use_datasets"]) == 1
    jobs = planned_jobs(configfiles=(DEMO, ROOT / "config/ablation.example.yaml"),
                        workdir=tmp_path)
    assert jobs["pretrain"] == len(ssl)
    assert jobs["finetune"] == len(cfg["methods"]) * len(cfg["fractions"]) * len(cfg["seeds"])
    assert jobs["cka"] == len(ssl) and jobs["paired"] == 1


def test_runtime_requests_follow_the_labelled_images(tmp_path):
    """A paper-preset dry-run (before any data is read) asks for less time for 1 % than
    for 100 % fine-tuning."""
    roots = {d: tmp_path / d for d in ("nih", "idc", "dr")}
    for r in roots.values():
        r.mkdir()
    real = write(tmp_path / "real.yaml", "use_datasets: [nih, idc, dr]\ndatasets:\n" + "".join(
        f"  {d}: {{format: {f}, root: {roots[d]}}}\n"
        for d, f in (("nih", "nih_cxr14"), ("idc", "idc_breast"), ("dr", "eyepacs_dr"))))
    r = snakemake("-n", "results/nih/finetune/moco/labeled_1/seed0/metrics.json",
                  "results/nih/finetune/moco/labeled_100/seed0/metrics.json",
                  workdir=tmp_path, configfiles=(real, PRESETS / "paper.yaml"))
    import re

    runtimes = {}
    for block in re.split(r"\n(?=rule \w+:)", r.stdout + r.stderr):
        m = re.match(r"rule finetune:", block)
        if m:
            pct = re.search(r"pct=([0-9.]+)", block).group(1)
            runtimes[pct] = int(re.search(r"runtime=(\d+)", block).group(1))
    assert runtimes["1"] < runtimes["100"] / 5, runtimes


# ------------------------------------------------------------------ the smoke DAG


def test_gpu_jobs_are_limited_to_the_gpus_of_the_machine(tmp_path):
    """Without --resources, a machine with 2 GPUs runs at most 2 GPU jobs at once."""
    def provided(*args):
        r = snakemake("results/resolved_config.yaml", "-F", *args, workdir=tmp_path,
                      env={"CUDA_VISIBLE_DEVICES": "0,1"})
        return next(ln for ln in (r.stdout + r.stderr).splitlines()
                    if ln.startswith("Provided resources"))

    assert 'Resource("gpu", 2)' in provided()
    assert 'Resource("gpu", 1)' in provided("--resources", "gpu=1")  # the user's limit wins


def test_files_follow_the_umask(tmp_path):
    def run(mask):
        return subprocess.run(
            [sys.executable, "-c", "import os, sys; from ilmoco.io import write_text; "
             f"os.umask({mask}); write_text(sys.argv[1], 'x')", str(tmp_path / f"{mask}.txt")],
            check=True)

    run(0o022)
    run(0o077)
    assert stat.S_IMODE(os.stat(tmp_path / f"{0o022}.txt").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / f"{0o077}.txt").st_mode) == 0o600
