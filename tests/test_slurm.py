"""The cluster profile: generated from the site file by the documented one-time step, then
used exactly as the README says (``snakemake --profile slurm``) against a real single-node
SLURM (munge + slurmctld + slurmd).

Starting SLURM installs packages and changes /etc, so it runs only when asked:
``ILMOCO_TEST_SLURM=1`` (``.ci/run`` sets it) on a machine with root and apt-get. The
profile generation and a dry-run through the profile run everywhere.
"""

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from snakerun import ROOT, planned_jobs, snakemake

from ilmoco import site

HERE = Path(__file__).parent / "slurm"


GPU_RULES = {"pretrain", "finetune", "probe", "cka"}


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
    assert jobs["pretrain"] == 3
    r = snakemake("--lint", "--profile", "slurm", configfiles=(), check=False, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
