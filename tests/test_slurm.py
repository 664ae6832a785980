"""The SLURM profile against a real single-node SLURM (munge + slurmctld + slurmd).

Runs where root and apt-get are available (CI); elsewhere it is skipped. The cluster is
started by tests/slurm/start.sh and exactly its daemons are stopped afterwards.
"""

import copy
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from snakerun import ROOT, SMOKE, planned_jobs, snakemake

HERE = Path(__file__).parent / "slurm"
GPU_RULES = {"pretrain", "finetune", "features", "cka"}

can_run = os.geteuid() == 0 and (shutil.which("apt-get") or shutil.which("slurmctld"))
pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(not can_run or os.environ.get("ILMOCO_SKIP_SLURM") == "1",
                                 reason="needs root and apt-get to start a local SLURM")]


def test_profile_dry_run_and_lint_without_a_cluster():
    jobs = planned_jobs("--workflow-profile", str(ROOT / "profiles/slurm"), configfiles=())
    assert jobs["pretrain"] == 9
    r = snakemake("--lint", "--workflow-profile", str(ROOT / "profiles/slurm"), configfiles=(),
                  check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def cluster():
    # slurmctld runs as user `slurm`: its state must not sit in pytest's private (0700) tmp
    state = Path(tempfile.mkdtemp(prefix="ilmoco-slurm-", dir="/tmp"))
    state.chmod(0o755)
    r = subprocess.run([str(HERE / "start.sh"), str(state)], capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        subprocess.run([str(HERE / "stop.sh"), str(state)], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    pids = {p.stem: int(p.read_text()) for p in state.glob("*.pid") if p.stem in
            ("slurmctld", "slurmd", "munged")}
    env = {"SLURM_CONF": str(state / "slurm.conf")}
    yield env
    subprocess.run([str(HERE / "stop.sh"), str(state)], timeout=60)
    for name, pid in pids.items():  # stopped exactly what we started
        assert not Path(f"/proc/{pid}").exists(), f"{name} ({pid}) still running"
    shutil.rmtree(state, ignore_errors=True)


def ci_profile(base: Path, out: Path, logdir: Path) -> Path:
    """The cluster profile with the CI overlay (local partition, squeue status, tiny
    resources) applied."""
    prof = yaml.safe_load((base / "config.yaml").read_text())
    overlay = yaml.safe_load((HERE / "ci-overlay.yaml").read_text())
    merged = copy.deepcopy(prof)
    for key, value in overlay.items():
        if key in ("default-resources",):
            merged[key] = {**prof.get(key, {}), **value}
        elif key == "set-resources-all":
            for rule in merged["set-resources"]:
                merged["set-resources"][rule].update(value)
        elif key == "set-threads-all":
            merged["set-threads"] = {r: value for r in prof["set-threads"]}
        else:
            merged[key] = value
    merged["slurm-logdir"] = str(logdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(merged))
    return out


def test_smoke_dag_through_slurm(cluster, smoke_run, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    logdir = work / "logs" / "slurm"
    prof = ci_profile(ROOT / "profiles/slurm", tmp_path / "profile", logdir)
    # The smoke DAG of one dataset and one method: every stage from the raw layout to KS on
    # a short critical path (SLURM status polling costs ~10 s per stage), within the CI
    # budget; the cross-dataset report rules are CPU-only and tested locally.
    args = ("--workflow-profile", str(prof), "--config", "use_datasets=[idc_synth]",
            "methods=[moco_mse]")
    targets = ["results/idc_synth/analysis/ks.csv", "results/idc_synth/analysis/cka_moco_mse.csv",
               "results/idc_synth/probe/moco_mse/probe.csv"]
    r = snakemake(*targets, *args, workdir=work, env=cluster, timeout=600)
    text = r.stdout + r.stderr
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", text))
    jobs = {jid: rule for rule, jid in re.findall(r"rule (\w+):\n(?:.*\n)*?\s+jobid: (\d+)",
                                                 text)}
    assert len(jobs) == 11 and set(jobs) == set(submitted), "every job must be a SLURM job"
    # every job left its log in the SLURM log directory
    logs = list(logdir.rglob("*.log"))
    for jid, slurm_id in submitted.items():
        assert any(p.stem == slurm_id for p in logs), (jobs.get(jid), slurm_id)
        show = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True,
                              text=True, env={**os.environ, **cluster}).stdout
        assert "JobState=COMPLETED" in show, show
        asked_gpu = re.search(r"Tres\w*=\S*gpu", show) is not None
        assert asked_gpu == (jobs[jid] in GPU_RULES), (jobs[jid], show)
    # the same bytes as the local run
    for rel in ["results/idc_synth/data/split.csv"] + [
            f"results/idc_synth/finetune/{m}/labeled_{p}/seed0/metrics.json"
            for m in ("moco_mse",) for p in ("6", "100")]:
        assert (work / rel).read_bytes() == (smoke_run / rel).read_bytes(), rel

    # a job that fails (NaN loss) is reported as failed, not waited on forever
    bad = tmp_path / "nan.yaml"
    bad.write_text("pretrain: {optimizer: {lr: 1.0e+30}}\n")
    r = snakemake("results/idc_synth/pretrain/moco_mse/encoder.pt", *args, workdir=work,
                  env=cluster, configfiles=(SMOKE, bad), check=False, timeout=300)
    assert r.returncode != 0
    assert "Error in rule pretrain" in r.stdout + r.stderr
