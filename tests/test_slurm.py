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
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from snakerun import ROOT, SMOKE_CONFIG, SMOKE_DATASETS, SMOKE_SSL, planned_jobs, snakemake

from ilmoco.cluster import gpus, site
from ilmoco.io import torch_load

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
    "grouping": False,  # the first run: one SLURM job per job (a second run groups)
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


# site values -> the resources every GPU rule gets (pretrain: with pretrain_gpus)
GPU_FORMS = {
    "gpu": ({}, {"gpu": 1}),
    "gpu_model": ({"gpu_model": "fake"}, {"gpu": 1, "gpu_model": "fake"}),
    "gres": ({"gpu_request": "gres"}, {"gpu": 0, "gres": "gpu:1"}),
    "gres_model": ({"gpu_request": "gres", "gpu_model": "fake"},
                   {"gpu": 0, "gres": "gpu:fake:1"}),
    "constraint": ({"constraint": "ci"}, {"gpu": 1, "constraint": "ci"}),
    "qos": ({"qos": "normal"}, {"gpu": 1, "qos": "normal"}),
    "slurm_extra": ({"slurm_extra": "--nice=10"}, {"gpu": 1, "slurm_extra": "--nice=10"}),
}


@pytest.mark.parametrize("form", sorted(GPU_FORMS))
def test_every_form_of_gpu_request(form):
    values, expected = GPU_FORMS[form]
    prof = site.slurm_profile({**site.DEFAULTS, "cpu_partition": "c", "gpu_partition": "g",
                               "pretrain_gpus": 2, **values})
    for rule in GPU_RULES:
        r = prof["set-resources"][rule]
        got = {k: r[k] for k in ("gpu", "gpu_model", "gres", *site.GPU_JOB_KEYS) if k in r}
        want = dict(expected)
        # every GPU job: the warning before its time limit
        want["slurm_extra"] = " ".join(filter(None, [want.get("slurm_extra"),
                                                     "--signal=USR1@120"]))
        if rule == "pretrain":  # its count is the site's pretrain_gpus
            want = {**want, **({"gres": want["gres"][:-1] + "2"} if "gres" in want
                               else {"gpu": 2})}
        assert got == want, (rule, got)
        assert r["gpu_jobs"] == 1  # one GPU job at a time inside a group's allocation
        # the job reads the count it was given, in either form
        assert gpus.requested_gpus(r) == (2 if rule == "pretrain" else 1)
    assert "gpu" not in prof["set-resources"]["cache"]


def test_the_gpu_count_a_job_reads():
    assert gpus.requested_gpus({"gpu": 3}) == 3
    assert gpus.requested_gpus({"gpu": 0, "gres": "gpu:a100:4"}) == 4
    assert gpus.requested_gpus({"gres": "gpu:2"}) == 2
    assert gpus.requested_gpus({"gres": "gpu"}) == 1
    assert gpus.requested_gpus({"gres": "shard:2"}) == 0
    assert gpus.requested_gpus({}) == 0


@pytest.mark.parametrize("values,message", [
    ({"gpu_request": "gpus"}, r"gpu_request 'gpus' is not one of \['gpu', 'gres'\]"),
    ({"pretrain_gpus": 0}, "pretrain_gpus must be a positive integer, not 0"),
])
def test_bad_site_values_are_refused(tmp_path, values, message):
    write_site(tmp_path / "site.yaml", values)
    with pytest.raises(ValueError, match=message):
        site.load_site(tmp_path / "site.yaml")


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


def local_rules() -> set[str]:
    text = "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    return {r for block in re.findall(r"^localrules:\n((?:[ \t]+\w+,\n)+)", text, re.M)
            for r in re.findall(r"\w+", block)}


def submissions(dry_run: str) -> tuple[int, list[list[int]], list[int]]:
    """From a dry run through the SLURM profile: the SLURM jobs it would submit (group jobs
    and ungrouped jobs of rules that are not local), the runtime requests of each group's
    members, and those of the ungrouped GPU jobs."""
    local = local_rules()
    groups, single, count = [], [], 0
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:rule|localrule) |\[[^\]]+\] Group job )",
                          dry_run):
        if " Group job " in block.split("\n", 1)[0]:
            count += 1
            groups.append([int(m) for m in re.findall(r"runtime=(\d+)", block)])
            continue
        rule = re.search(r"^(?:rule|localrule) (\w+):", block, re.M)
        if rule and rule.group(1) not in local | {"all"}:  # all: no command, never submitted
            count += 1
            if re.search(r"resources:.*\bgpu=[1-9]", block):
                single.append(int(re.search(r"runtime=(\d+)", block).group(1)))
    return count, groups, single


def test_the_paper_run_is_few_allocations(tmp_path):
    """The paper preset through the profile of the example site: its short GPU jobs share
    allocations (Snakemake group jobs), no group asks for longer than the longest single
    GPU job, and SLURM sees at least 5x fewer jobs than the DAG has."""
    home = tmp_path / "config"
    env = {**os.environ, "XDG_CONFIG_HOME": str(home),
           "ILMOCO_SITE": str(home / "ilmoco/site.yaml")}
    (home / "ilmoco").mkdir(parents=True)
    (home / "ilmoco/site.yaml").write_text((ROOT / "profiles/slurm/site.example.yaml")
                                           .read_text())
    make_profile(env)
    roots = tmp_path / "roots.yaml"  # the real roots, empty: the public sizes are planned
    roots.write_text(yaml.safe_dump({"datasets": {d: {"root": str(tmp_path / d)}
                                                  for d in ("nih", "idc", "dr")}}))
    for d in ("nih", "idc", "dr", "w"):
        (tmp_path / d).mkdir()
    configs = (ROOT / "config/real_data.example.yaml", ROOT / "config/presets/paper.yaml",
               roots)
    r = snakemake("-n", "--profile", "slurm", workdir=tmp_path / "w", env=env,
                  configfiles=configs)
    text = r.stdout + r.stderr
    total = sum(planned_jobs("--profile", "slurm", workdir=tmp_path / "w", env=env,
                             configfiles=configs).values())
    count, groups, single = submissions(text)
    assert groups and single and all(len(g) > 1 for g in groups)
    assert max(sum(g) for g in groups) <= max(single)
    assert 5 * count <= total, (count, total)
    # a site that turns grouping off submits every job of a non-local rule on its own
    (home / "ilmoco/site.yaml").write_text(yaml.safe_dump({"grouping": False}))
    make_profile(env)
    r = snakemake("-n", "--profile", "slurm", workdir=tmp_path / "w", env=env,
                  configfiles=configs)
    alone, no_groups, _ = submissions(r.stdout + r.stderr)
    jobs = planned_jobs("--profile", "slurm", workdir=tmp_path / "w", env=env,
                        configfiles=configs)
    assert not no_groups
    assert alone == sum(n for rule, n in jobs.items() if rule not in local_rules() | {"all"})
    assert alone == count - len(groups) + sum(len(g) for g in groups)


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


class Resources(dict):
    __getattr__ = dict.__getitem__


@pytest.mark.parametrize("form", sorted(GPU_FORMS))
def test_each_gpu_request_is_accepted_by_sbatch(cluster, tmp_path, form):
    """The sbatch line the executor plugin builds from each written GPU request form is
    accepted by the real slurmctld (``sbatch --test-only``)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    # one GPU: on this 2-core node two fake GPUs at one CPU each are refused in every form
    # ("Requested node configuration is not available"); the counts are tested above
    prof = site.slurm_profile({**site.DEFAULTS, **CI_SITE, **GPU_FORMS[form][0]})
    for rule in ("pretrain", "finetune"):
        job = SimpleNamespace(resources=Resources(prof["set-resources"][rule]), threads=1)
        params = {"run_uuid": f"ilmoco-{form}", "slurm_logfile": str(tmp_path / "%j.log"),
                  "comment_str": f"rule_{rule}", "account": "", "partition": "-p debug",
                  "workdir": str(tmp_path)}
        call = get_submit_command(job, params) + set_gres_string(job)
        call = call.replace("sbatch --parsable", "sbatch --test-only") + " --wrap true"
        r = subprocess.run(call, shell=True, capture_output=True, text=True,
                           env={**os.environ, **cluster})
        assert r.returncode == 0 and "to start at" in r.stderr, (call, r.stdout + r.stderr)


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

    # (a) the GPU jobs again with grouping: the short ones share one allocation, which runs
    # them one after the other and gives the same bytes
    write_site(home / "ilmoco/site.yaml", {**CI_SITE, "grouping": True, "group_minutes": 120})
    make_profile(env)
    grouped = tmp_path / "grouped"
    for data in ("results/dr_synth/data", "data/synthetic/dr_synth"):  # the data stage's
        shutil.copytree(work / data, grouped / data)
    r = snakemake(*targets, *args, workdir=grouped, env=env, timeout=600)
    text = r.stdout + r.stderr
    group_ids = set(re.findall(r"Group job (\S+) \(jobs", text))
    slurm_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    gpu_jobs = [j for j, rule in jobs.items() if rule in GPU_RULES]
    # alone: 5 GPU jobs (pretrain, two fine-tunings, probe, CKA); grouped: the pretraining
    # and one allocation for the 4 short jobs (4 x 30 min <= group_minutes)
    assert len(gpu_jobs) == 5 and len(group_ids) == 1 and len(slurm_ids) == 2, text
    for slurm_id in slurm_ids:
        show = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True,
                              text=True, env=env).stdout
        assert "JobState=COMPLETED" in show, show
    for p in ("6", "100"):
        rel = f"results/dr_synth/finetune/moco_mse/labeled_{p}/seed0/predictions.csv"
        assert (grouped / rel).read_bytes() == (work / rel).read_bytes(), rel
    for rel in ("results/dr_synth/probe/moco_mse/probe.csv",
                "results/dr_synth/analysis/cka_moco_mse.csv"):
        assert (grouped / rel).read_bytes() == (work / rel).read_bytes(), rel

    # a job that fails (NaN loss) is reported as failed, not waited on forever
    bad = tmp_path / "nan.yaml"
    bad.write_text("pretrain: {optimizer: {lr: 1.0e+30}}\n")
    r = snakemake("results/dr_synth/pretrain/moco_mse/encoder.pt", *args, workdir=work,
                  env=env, configfiles=(*SMOKE_CONFIG, bad), check=False, timeout=300)
    assert r.returncode != 0
    assert "Error in rule pretrain" in r.stdout + r.stderr


def test_a_signalled_pretraining_resumes_to_the_same_encoder(cluster, tmp_path):
    """(c) SLURM's warning signal mid-run (``scancel --signal=USR1``, what ``--signal=USR1@<s>``
    sends before the time limit): the job checkpoints and stops ("preempted at step k"),
    Snakemake's retry resumes there ("resumed ... at step k") and the encoder equals that of
    an uninterrupted run."""
    home = tmp_path / "config"
    env = {**os.environ, **cluster, "XDG_CONFIG_HOME": str(home),
           "ILMOCO_SITE": str(home / "ilmoco/site.yaml")}
    write_site(home / "ilmoco/site.yaml", {**CI_SITE, "extra": {**CI_SITE["extra"],
                                                                 "retries": 1}})
    make_profile(env)
    longer = tmp_path / "longer.yaml"  # long enough to be signalled mid-run
    longer.write_text("pretrain: {epochs: 12, checkpoint_every: 1000}\n")
    configs = (*SMOKE_CONFIG, longer)
    args = ("--config", "use_datasets=[dr_synth]", "methods=[moco_mse]")
    target = "results/dr_synth/pretrain/moco_mse/encoder.pt"
    reference = tmp_path / "reference"
    reference.mkdir()
    snakemake(target, *args, "--cores", "1", workdir=reference, configfiles=configs)
    work = tmp_path / "signalled"
    for data in ("results/dr_synth/data", "data/synthetic/dr_synth"):
        shutil.copytree(reference / data, work / data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), target,
         *args, "--profile", "slurm", "--configfile", *map(str, configs)],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = work / "results/dr_synth/logs/pretrain_moco_mse.log"
    deadline, signalled = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None and signalled is None:
        if log.is_file() and "epoch 2/12" in log.read_text():
            ids = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True,
                                 text=True, env=env).stdout.split("\n")
            signalled = next(i.split()[0] for i in ids if "rule_pretrain" in i)
            subprocess.run(["scancel", "--signal=USR1", signalled], env=env, check=True)
        time.sleep(0.5)
    out, _ = proc.communicate(timeout=600)
    assert signalled and proc.returncode == 0, out
    slurm_logs = "".join(p.read_text() for p in (work / "logs/slurm").rglob("*.log"))
    k = re.search(r"preempted at step (\d+)", slurm_logs)
    assert k, slurm_logs[-3000:]
    assert f"resumed pretrain dr_synth/moco_mse at step {k.group(1)} " in \
        slurm_logs + log.read_text()
    a = torch_load(reference / target)["backbone"]
    b = torch_load(work / target)["backbone"]
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
