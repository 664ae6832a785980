"""The cluster profile: generated from the site file by the documented one-time step, then
used exactly as the README says (``snakemake --profile slurm``) against a real single-node
SLURM (munge + slurmctld + slurmd), which runs the smoke DAG and must give the same bytes as
the local smoke run.

Starting SLURM installs packages and changes /etc, so it runs only when asked:
``ILMOCO_TEST_SLURM=1`` (``.ci/run`` sets it) on a machine with root and apt-get. The
profile generation and a dry-run through the profile run everywhere.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from snakerun import ROOT, SMOKE_CONFIG, SMOKE_DATASETS, SMOKE_SSL, planned_jobs, snakemake

from ilmoco.cluster import site

HERE = Path(__file__).parent / "slurm"
GPU_RULES = {"pretrain", "finetune", "probe", "linear_probe", "cka"}
OPTED_IN = os.environ.get("ILMOCO_TEST_SLURM") == "1"

# A small test cluster: one `debug` partition, no accounting daemon (squeue status), short
# status intervals, and resources that fit a 2-core node.
CI_SITE = {
    "cpu_partition": "debug", "gpu_partition": "debug", "status_command": "squeue",
    "resources": {"mem_mb": 1500, "cpus_per_gpu": 1, "runtime": 30}, "threads": 1,
    "extra": {"jobs": 4, "latency-wait": 5, "retries": 0, "keep-going": False,
              "slurm-init-seconds-before-status-checks": 2,
              "seconds-between-status-checks": 2},
}

pytestmark = pytest.mark.slow


def write_site(path: Path, values: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values))


def test_profile_from_the_site_file(tmp_path):
    prof = site.slurm_profile({**site.DEFAULTS, "cpu_partition": "short", "gpu_partition":
                               "a100q", "account": "proj1", "gpu_model": "a100",
                               "extra": {"slurm-requeue": True}})
    assert prof["executor"] == "slurm" and prof["slurm-requeue"] is True
    assert prof["default-resources"]["slurm_partition"] == "short"
    assert prof["default-resources"]["slurm_account"] == "proj1"
    for rule in GPU_RULES:
        r = prof["set-resources"][rule]
        assert (r["slurm_partition"], r["gpu"], r["gpu_model"]) == ("a100q", 1, "a100")
    assert "slurm-no-account" not in prof and "slurm-status-command" not in prof
    bare = site.slurm_profile({**site.DEFAULTS, "cpu_partition": "c", "gpu_partition": "g",
                               "status_command": "squeue"})
    assert "slurm_account" not in bare["default-resources"]
    assert "gpu_model" not in bare["set-resources"]["pretrain"]
    assert bare["slurm-no-account"] is True and bare["slurm-status-command"] == "squeue"
    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    assert "@gpu_partition@" in text and "EDIT" not in text  # nothing to edit in the repo


def test_unknown_site_key_is_refused(tmp_path):
    write_site(tmp_path / "site.yaml", {"gpu_partiton": "g"})
    with pytest.raises(ValueError, match="unknown site key.*gpu_partiton"):
        site.load_site(tmp_path / "site.yaml")


def make_profile(env) -> None:
    r = subprocess.run(["make", "-s", "slurm-profile"], cwd=ROOT, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_one_time_step_then_profile_by_name(tmp_path):
    """`make slurm-profile` writes ~/.config/snakemake/slurm from the site file; a dry-run
    with `--profile slurm` then plans the DAG; the repository is untouched."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "ILMOCO_SITE": str(tmp_path / "config/ilmoco/site.yaml")}
    before = git_status()
    r = subprocess.run(["make", "-s", "slurm-profile"], cwd=ROOT, env=env, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "fill in your partitions" in r.stdout + r.stderr
    assert (tmp_path / "config/ilmoco/site.yaml").read_text() == (
        ROOT / "profiles/slurm/site.example.yaml").read_text()
    write_site(tmp_path / "config/ilmoco/site.yaml", {**CI_SITE, "max_runtime": 45})
    make_profile(env)
    prof = yaml.safe_load((tmp_path / "config/snakemake/slurm/config.yaml").read_text())
    assert prof["set-resources"]["pretrain"]["slurm_partition"] == "debug"
    assert git_status() == before
    jobs = planned_jobs("--profile", "slurm", workdir=tmp_path, env=env)
    assert jobs["pretrain"] == len(SMOKE_SSL) * len(SMOKE_DATASETS)
    r = snakemake("--lint", "--profile", "slurm", configfiles=(), check=False, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ the same DAG through SLURM

@pytest.fixture(scope="module")
def cluster():
    can_run = os.geteuid() == 0 and (shutil.which("apt-get") or shutil.which("slurmctld"))
    if not OPTED_IN:  # checked first: without the opt-in nothing is installed or changed
        pytest.skip("starting a real SLURM changes /etc: set ILMOCO_TEST_SLURM=1 (CI does)")
    if not can_run:
        pytest.skip("needs root and apt-get to start a local SLURM")
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
    yield {"SLURM_CONF": str(state / "slurm.conf")}
    subprocess.run([str(HERE / "stop.sh"), str(state)], timeout=60)
    for name, pid in pids.items():  # stopped exactly what we started
        assert not Path(f"/proc/{pid}").exists(), f"{name} ({pid}) still running"
    shutil.rmtree(state, ignore_errors=True)


def test_smoke_dag_through_slurm(cluster, request, tmp_path):
    home = tmp_path / "config"
    env = {**os.environ, **cluster, "XDG_CONFIG_HOME": str(home),
           "ILMOCO_SITE": str(home / "ilmoco/site.yaml")}
    write_site(home / "ilmoco/site.yaml", CI_SITE)
    before = git_status()
    make_profile(env)
    assert git_status() == before
    work = tmp_path / "work"
    work.mkdir()
    # One dataset and one method: every stage from the raw layout to KS on a short critical
    # path (SLURM status polling costs seconds per stage); the cross-dataset report rules
    # run locally (localrules) and are tested on the local run.
    args = ("--profile", "slurm", "--config", "use_datasets=[dr_synth]", "methods=[moco_mse]")
    targets = ["results/dr_synth/analysis/ks.csv", "results/dr_synth/analysis/cka_moco_mse.csv",
               "results/dr_synth/probe/moco_mse/probe.csv"]
    r = snakemake(*targets, *args, workdir=work, env=env, timeout=600)
    text = r.stdout + r.stderr
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", text))
    jobs = {jid: rule for rule, jid in re.findall(r"rule (\w+):\n(?:.*\n)*?\s+jobid: (\d+)",
                                                 text)}
    local = {jid for jid, rule in jobs.items() if rule in ("manifest", "split", "ks")}
    assert len(jobs) == 10 and set(jobs) - local == set(submitted), \
        "every job but the small local ones must be a SLURM job"
    logs = list((work / "logs/slurm").rglob("*.log"))
    for jid, slurm_id in submitted.items():
        assert any(p.stem == slurm_id for p in logs), (jobs.get(jid), slurm_id)
        show = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True,
                              text=True, env=env).stdout
        assert "JobState=COMPLETED" in show, show
        asked_gpu = re.search(r"Tres\w*=\S*gpu", show) is not None
        assert asked_gpu == (jobs[jid] in GPU_RULES), (jobs[jid], show)
    # the same bytes as the local run (asked for only now: another worker builds it meanwhile)
    smoke_run = request.getfixturevalue("smoke_run")
    for rel in ["results/dr_synth/data/split.csv", "results/dr_synth/data/cache/images.npy"] + [
            f"results/dr_synth/finetune/moco_mse/labeled_{p}/seed0/predictions.csv"
            for p in ("6", "100")]:
        assert (work / rel).read_bytes() == (smoke_run / rel).read_bytes(), rel

    # a job that fails (NaN loss) is reported as failed, not waited on forever
    bad = tmp_path / "nan.yaml"
    bad.write_text("pretrain: {optimizer: {lr: 1.0e+30}}\n")
    r = snakemake("results/dr_synth/pretrain/moco_mse/encoder.pt", *args, workdir=work,
                  env=env, configfiles=(*SMOKE_CONFIG, bad), check=False, timeout=300)
    assert r.returncode != 0
    assert "Error in rule pretrain" in r.stdout + r.stderr
