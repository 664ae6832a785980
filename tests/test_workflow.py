"""The Snakemake workflow: lint, the planned DAG, config errors at dry-run, the smoke run of
the whole DAG, cached reruns, determinism, and no network at run time."""

import json
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from snakerun import ROOT, SMOKE, planned_jobs, snakemake

from ilmoco.codehash import code_hash, module_closure

pytestmark = pytest.mark.slow


def test_lint_is_clean():
    r = snakemake("--lint", configfiles=(), check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_full_default_dag_dry_run():
    jobs = planned_jobs(configfiles=(), workdir=None)
    assert jobs["synthetic_data"] == 3 and jobs["manifest"] == 3 and jobs["cache"] == 3
    assert jobs["pretrain"] == 3 * 3
    assert jobs["finetune"] == 3 * 4 * 3  # datasets x methods x fractions (x 1 seed)
    assert jobs["probe"] == 3 * 4 and jobs["cka"] == 3 * 3 and jobs["ks"] == 3
    assert jobs["tables"] == 1 and jobs["figures"] == 3


def test_seeds_multiply_finetuning(tmp_path):
    cfg = tmp_path / "seeds.yaml"
    cfg.write_text("seeds: [0, 1]\n")
    jobs = planned_jobs(configfiles=(SMOKE, cfg), workdir=tmp_path)
    assert jobs["finetune"] == 3 * 4 * 2 * 2


@pytest.mark.parametrize("yaml_text,message", [
    ("pretrian: {epochs: 2}\n", "config error at <top level>: Additional properties are not "
                                "allowed ('pretrian' was unexpected)"),
    ("pretrain: {epochs: ten}\n", "config error at pretrain.epochs: 'ten' is not of type "
                                  "'integer'"),
    ("methods: [moco, simclr]\n", "config error at methods.1: 'simclr' is not one of"),
    ("use_datasets: [nih_synth, chexpert]\n", "config error at use_datasets: ['chexpert'] "
                                              "not defined under `datasets`"),
    ("datasets: {nih_synth: {format: nih}}\n", "config error at datasets.nih_synth.format: "
                                               "'nih' is not one of"),
    ("probe: {fraction: 50}\n", "config error at probe.fraction: 50 is not one of"),
])
def test_config_errors_surface_at_dry_run(tmp_path, yaml_text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    r = snakemake("-n", workdir=tmp_path, configfiles=(SMOKE, bad), check=False)
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert message in err, err[-3000:]
    line = next(ln for ln in err.splitlines() if "config error at" in ln)
    assert len(line) < 300  # one clear line, not a schema dump
    assert not (tmp_path / "results").exists()


def test_code_hash_follows_library_imports():
    files = {p.name for p in module_closure(str(ROOT / "workflow/scripts/pretrain.py"))}
    assert {"moco.py", "losses.py", "augment.py", "engine.py", "backbone.py"} <= files
    assert "tables.py" not in files and "figures.py" not in files
    split_files = {p.name for p in module_closure(str(ROOT / "workflow/scripts/split.py"))}
    assert "split.py" in split_files and "moco.py" not in split_files
    assert code_hash(ROOT / "workflow/scripts/pretrain.py") != code_hash(
        ROOT / "workflow/scripts/split.py")


# ------------------------------------------------------------------ the smoke DAG

def test_smoke_dag_produces_every_result(smoke_run):
    res = smoke_run / "results"
    for ds in ("nih_synth", "idc_synth", "dr_synth"):
        for m in ("supervised", "moco", "moco_mse", "moco_bt"):
            for pct in ("6", "100"):
                d = res / ds / "finetune" / m / f"labeled_{pct}" / "seed0"
                metrics = json.loads((d / "metrics.json").read_text())
                assert metrics["ci_low"] <= metrics["estimate"] <= metrics["ci_high"]
                assert metrics["seed"] == 0 and metrics["fraction"] == float(pct)
                assert (d / "model.pt").exists() and (d / "predictions.csv").exists()
        for m in ("moco", "moco_mse", "moco_bt"):
            assert (res / ds / "pretrain" / m / "encoder.pt").exists()
            assert not (res / ds / "pretrain" / m / "resume.pt").exists()
        assert not list((res / ds / "probe").glob("*/features.npz"))  # temp() removed
    for t in ("finetune", "linear_probe", "layer_probe", "feature_reuse", "ks_distance"):
        for ext in ("csv", "md", "tex"):
            assert (res / "tables" / f"{t}.{ext}").stat().st_size > 0
    ft = pd.read_csv(res / "tables" / "finetune.csv")
    assert len(ft) == 3 * 4 * 2 and set(ft.columns) >= {"estimate", "ci_low", "ci_high",
                                                         "n_seeds"}


def test_nothing_to_do_after_a_run(smoke_run):
    assert planned_jobs(workdir=smoke_run) == {}


def test_changing_a_finetune_hyperparameter_reruns_only_downstream(smoke_run, tmp_path):
    cfg = tmp_path / "lr.yaml"
    cfg.write_text("finetune: {optimizer: {lr: 0.002}}\n")
    jobs = planned_jobs(workdir=smoke_run, configfiles=(SMOKE, cfg))
    assert jobs["finetune"] == 24
    assert not {"synthetic_data", "manifest", "split", "cache", "pretrain"} & set(jobs)
    assert set(jobs) <= {"finetune", "features", "probe", "cka", "ks", "tables", "figures",
                         "all"}


def test_changing_the_split_seed_reruns_everything_downstream_of_the_split(smoke_run,
                                                                            tmp_path):
    cfg = tmp_path / "seed.yaml"
    cfg.write_text("split: {seed: 1}\n")
    jobs = planned_jobs(workdir=smoke_run, configfiles=(SMOKE, cfg))
    assert jobs["split"] == 3 and jobs["pretrain"] == 9 and jobs["finetune"] == 24
    assert not {"synthetic_data", "manifest", "cache"} & set(jobs)


def test_changing_library_code_reruns_the_stages_that_import_it(smoke_run, tmp_path):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path / "repo"
    for f in files:
        if (ROOT / f).is_file():
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, copy / f)
    losses = copy / "src/ilmoco/losses.py"
    losses.write_text(losses.read_text() + "\n# a change in the loss module\n")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n",
                        "--snakefile", str(copy / "Snakefile"), "--directory", str(smoke_run),
                        "--configfile", str(SMOKE), "--cores", "1"],
                       capture_output=True, text=True, cwd=smoke_run)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-2000:]
    assert "rule pretrain:" in text and "params have changed" in text
    assert "rule split:" not in text and "rule cache:" not in text


def test_report_builds(smoke_run):
    snakemake("--report", "results/report.html", workdir=smoke_run)
    html = (smoke_run / "results" / "report.html").read_text(errors="ignore")
    assert len(html) > 10_000 and "finetune" in html


NO_NETWORK = textwrap.dedent("""
    import socket

    def _blocked(*args, **kwargs):
        raise OSError("network access blocked by the test suite")

    socket.socket.connect = _blocked
    socket.socket.connect_ex = _blocked
    socket.create_connection = _blocked
    socket.getaddrinfo = _blocked
""")


def test_rerun_is_deterministic_and_needs_no_network(smoke_run, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    work = tmp_path / "again"
    work.mkdir()
    snakemake(workdir=work, env={"PYTHONPATH": str(site)})
    compared = 0
    for a in (smoke_run / "results").rglob("*"):
        rel = a.relative_to(smoke_run)
        if a.suffix not in (".csv", ".json", ".md", ".tex") or "logs" in rel.parts:
            continue
        b = work / rel
        if a.name == "metrics.csv" and "pretrain" in rel.parts:  # throughput is timing
            da, db = pd.read_csv(a), pd.read_csv(b)
            pd.testing.assert_frame_equal(da.drop(columns="throughput"),
                                          db.drop(columns="throughput"))
        else:
            assert a.read_bytes() == b.read_bytes(), rel
        compared += 1
    assert compared > 100
