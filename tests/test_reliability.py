"""Reliability through Snakemake: a job killed with SIGKILL mid-epoch resumes from its last
checkpoint and ends bit-identical to an uninterrupted run; bad input stops the DAG with one
clear line and leaves no half-written output."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from layouts import nih_rows, write_nih
from snakerun import ROOT, SMOKE_CONFIG, snakemake

from ilmoco.io import torch_load

pytestmark = pytest.mark.slow

LONGER = """
pretrain: {epochs: 4, checkpoint_every: 2}
finetune: {epochs: 4, patience: 4, checkpoint_every: 2}
"""
DATA = "results/nih_synth/data"
PRETRAIN = "results/nih_synth/pretrain/moco_mse"
FINETUNE = "results/nih_synth/finetune/supervised/labeled_100/seed0"


def job_pids(marker: str) -> list[int]:
    """PIDs of running Snakemake job scripts whose command line contains ``marker``."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if ".snakemake/scripts" in cmd and marker in cmd:
                out.append(int(d.name))
    return out


def with_smoke_data(smoke_run, work: Path) -> Path:
    """A work directory holding the smoke run's data stages (raw data, split, cache), so only
    training runs; copies keep their modification times and so stay up to date."""
    for rel in ("data/synthetic/nih_synth", DATA):
        shutil.copytree(smoke_run / rel, work / rel, copy_function=shutil.copy2)
    cfg = work / "longer.yaml"
    cfg.write_text(LONGER)
    return cfg


def run_and_kill(work: Path, target: str, cfg: Path, resume: Path, marker: str):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(work), "--cores", "1", target, "--configfile",
           *map(str, SMOKE_CONFIG), str(cfg)]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if resume.exists():  # a checkpoint is on disk: the job is mid-training
            for pid in job_pids(marker):
                os.kill(pid, signal.SIGKILL)
                killed = True
            if killed:
                break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=240)
    assert killed, "the job finished before it could be killed:\n" + out[-2000:]
    assert proc.returncode != 0
    return out


@pytest.fixture(scope="module")
def reference(smoke_run, tmp_path_factory):
    """An uninterrupted run of the longer configuration."""
    work = tmp_path_factory.mktemp("uninterrupted")
    cfg = with_smoke_data(smoke_run, work)
    snakemake(f"{PRETRAIN}/encoder.pt", f"{FINETUNE}/metrics.json", workdir=work,
              configfiles=(*SMOKE_CONFIG, cfg))
    return work


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_kill_9_mid_epoch_then_rerun_resumes_bit_identical(smoke_run, reference, tmp_path,
                                                            stage):
    work = tmp_path / "work"
    cfg = with_smoke_data(smoke_run, work)
    if stage == "pretrain":
        d, outputs = PRETRAIN, ["encoder.pt", "metrics.csv"]
        target = f"{d}/encoder.pt"
    else:
        d, outputs = FINETUNE, ["model.pt", "metrics.json", "history.csv", "predictions.csv"]
        target = f"{d}/metrics.json"
    run_and_kill(work, target, cfg, work / d / "resume.pt", f"{stage}.py")
    assert (work / d / "resume.pt").exists()
    assert not (work / d / outputs[0]).exists()  # no output from the killed job
    r = snakemake(target, workdir=work, configfiles=(*SMOKE_CONFIG, cfg))
    assert "rule cache:" not in r.stdout + r.stderr  # the copied data stages were reused
    log = (work / "results/nih_synth/logs").glob(f"{stage}_*.log")
    assert any("resuming" in p.read_text() for p in log), r.stdout[-1000:]
    assert not (work / d / "resume.pt").exists()
    for name in outputs:
        a, b = reference / d / name, work / d / name
        if name.endswith(".pt"):
            sa, sb = torch_load(a), torch_load(b)
            wa = sa.get("backbone", sa.get("model"))
            wb = sb.get("backbone", sb.get("model"))
            assert all(torch.equal(wa[k], wb[k]) for k in wa), name
        elif name == "metrics.csv":
            pd.testing.assert_frame_equal(pd.read_csv(a).drop(columns="throughput"),
                                          pd.read_csv(b).drop(columns="throughput"))
        else:
            assert a.read_bytes() == b.read_bytes(), name


def test_changing_the_checkpoint_interval_keeps_a_resume_checkpoint_valid(smoke_run,
                                                                          tmp_path):
    work = tmp_path / "work"
    cfg = with_smoke_data(smoke_run, work)
    target = f"{PRETRAIN}/encoder.pt"
    run_and_kill(work, target, cfg, work / PRETRAIN / "resume.pt", "pretrain.py")
    other = work / "interval.yaml"
    other.write_text(LONGER.replace("checkpoint_every: 2}", "checkpoint_every: 3}", 1))
    snakemake(target, workdir=work, configfiles=(*SMOKE_CONFIG, other))
    log = (work / "results/nih_synth/logs/pretrain_moco_mse.log").read_text()
    assert "resuming" in log and "different configuration" not in log


def real_data_config(tmp_path: Path, root: Path) -> Path:
    cfg = tmp_path / "real.yaml"
    cfg.write_text(f"use_datasets: [nih]\ndatasets:\n  nih: {{format: nih_cxr14, root: {root}}}\n")
    return cfg


def test_missing_image_stops_the_dag_with_one_line(tmp_path):
    rows = nih_rows(6, 2)
    root = write_nih(tmp_path / "nih", rows)
    next(root.glob(f"images_*/images/{rows[3][0]}")).unlink()
    work = tmp_path / "work"
    work.mkdir()
    r = snakemake("results/nih/data/split.csv", workdir=work,
                  configfiles=(*SMOKE_CONFIG, real_data_config(tmp_path, root)), check=False)
    assert r.returncode != 0
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("ERROR: ")]
    assert lines and "1 listed image(s) not found" in lines[0] and rows[3][0] in lines[0]
    assert not (work / "results/nih/data/manifest.csv").exists()


def test_corrupt_image_stops_the_cache_and_leaves_nothing(tmp_path):
    rows = nih_rows(6, 2)
    root = write_nih(tmp_path / "nih", rows, size=(64, 64))
    bad = next(root.glob(f"images_*/images/{rows[5][0]}"))
    bad.write_bytes(bad.read_bytes()[:200])
    work = tmp_path / "work"
    work.mkdir()
    r = snakemake("results/nih/data/cache/images.npy", workdir=work,
                  configfiles=(*SMOKE_CONFIG, real_data_config(tmp_path, root)), check=False)
    assert r.returncode != 0
    assert f"ERROR: {bad}: cannot decode image" in r.stdout + r.stderr
    cache = work / "results/nih/data/cache"
    assert not (cache / "images.npy").exists() and not list(cache.glob("*.tmp"))
    assert (work / "results/nih/data/manifest.csv").exists()  # earlier stages kept


def test_checkpoint_of_another_dataset_is_refused(smoke_run, tmp_path):
    from ilmoco.checkpoints import load_backbone
    from ilmoco.io import InputError

    enc = smoke_run / "results/dr_synth/pretrain/moco_mse/encoder.pt"
    with pytest.raises(InputError, match=r"trained with dataset='dr_synth' but this run "
                                         r"needs dataset='nih_synth'"):
        load_backbone(enc, dataset="nih_synth", method="moco_mse")
    with pytest.raises(InputError, match=r"in_channels=3 but this run needs in_channels=1"):
        load_backbone(enc, dataset="dr_synth", in_channels=1)
