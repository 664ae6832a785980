"""Everything that reads the smoke run (config.yaml + config/smoke.yaml, the whole DAG, run
once per test session by the ``smoke_run`` fixture of conftest.py): its outputs, what reruns
after setting and code changes, the report, a byte-identical rerun without network, kill -9
then resume, data-parallel pretraining. The same DAG through a real SLURM is in
test_slurm.py."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from snakerun import (
    ROOT,
    SMOKE_CONFIG,
    SMOKE_DATASETS,
    SMOKE_METHODS,
    SMOKE_RUNS,
    SMOKE_SSL,
    planned_jobs,
    snakemake,
)

from ilmoco.io import read_json, torch_load

pytestmark = pytest.mark.slow
D = len(SMOKE_DATASETS)  # job counts per dataset, times the datasets


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_smoke_dag_produces_every_result(smoke_run):
    res, ds = smoke_run / "results", "dr_synth"
    methods = SMOKE_METHODS
    for m in methods:
        for pct in ("6", "100"):
            d = res / ds / "finetune" / m / f"labeled_{pct}" / "seed0"
            metrics = json.loads((d / "metrics.json").read_text())
            assert metrics["ci_low"] <= metrics["estimate"] <= metrics["ci_high"]
            assert metrics["seed"] == 0 and metrics["fraction"] == float(pct)
            assert metrics["last_epoch"]["estimate"] is not None
            assert (d / "model.pt").exists() and (d / "predictions.csv").exists()
    for m in methods[1:]:
        assert (res / ds / "pretrain" / m / "encoder.pt").exists()
        assert not (res / ds / "pretrain" / m / "resume.pt").exists()
        curve = pd.read_csv(res / ds / "pretrain" / m / "metrics.csv")
        assert any(c.startswith("knn_") for c in curve.columns)  # the monitor ran
    byol = pd.read_csv(res / ds / "pretrain" / "byol_bt" / "metrics.csv")
    assert {"byol", "bt_block1", "bt_block4"} <= set(byol.columns)
    assert (res / ds / "probe" / "random_init" / "probe.csv").exists()
    paired = pd.read_csv(res / ds / "analysis" / "paired.csv")
    assert set(paired["method"]) == set(SMOKE_METHODS) - {"moco"}
    assert set(paired["baseline"]) == {"moco"}
    split = pd.read_csv(res / ds / "data" / "split.csv")
    assert set(split["half"]) == {"train", "test"}  # both EyePACS halves were read
    for t in ("finetune", "linear_probe", "layer_probe", "feature_reuse", "ks_distance",
              "paired_difference", "paper_comparison"):
        for ext in ("csv", "md", "tex"):
            assert (res / "tables" / f"{t}.{ext}").stat().st_size > 0
    ft = pd.read_csv(res / "tables" / "finetune.csv")
    assert len(ft) == SMOKE_RUNS * D and set(ft.columns) >= {"estimate", "ci_low", "ci_high",
                                                     "n_seeds"}
    assert "nothing to compare" in (res / "tables" / "paper_comparison.md").read_text()
    assert "Random init" in (res / "tables" / "layer_probe.md").read_text()
    finetune_md = (res / "tables" / "finetune.md").read_text()
    assert "BYOL+BT" in finetune_md and "SimSiam+MSE" in finetune_md  # display names
    cfg = yaml.safe_load((res / "resolved_config.yaml").read_text())
    assert cfg["variants"]["byol_bt"]["base"] == "byol" and cfg["pretrain"]["epochs"] == 2
    assert "device" not in cfg["pretrain"]  # execution settings are not part of it


def test_smoke_runs_a_users_csv_with_a_multiclass_task(smoke_run):
    """table_synth: format image_table (a CSV + 12-bit values in 16-bit PNGs), three
    classes, through every stage, table, figure and the data report."""
    res, ds = smoke_run / "results", "table_synth"
    meta = json.loads((res / ds / "data/dataset.json").read_text())
    assert meta["format"] == "image_table" and meta["task"] == "multiclass"
    assert meta["classes"] == ["equal", "up", "down"] and meta["channels"] == 1
    split = pd.read_csv(res / ds / "data/split.csv")
    assert set(split["finding"]) == {0, 1, 2} and set(split["view"]) == {"PA"}  # filtered
    cache = np.load(res / ds / "data/cache/images.npy")
    assert cache.shape[1:] == (1, 16, 16) and cache.max() > 200  # windowed, not /257
    pred = pd.read_csv(res / ds / "finetune/moco/labeled_100/seed0/predictions.csv")
    assert {"p_0", "p_1", "p_2"} <= set(pred.columns)
    # a float32 (or wider) softmax, written %.9g (exact for float32): the 3 sum to 1 within
    # ~5 float32 roundings (3e-7); atol 1e-5 (+ rtol 1e-5 x 1) leaves 60x
    assert np.allclose(pred[["p_0", "p_1", "p_2"]].sum(1), 1, atol=1e-5)
    ft = pd.read_csv(res / "tables/finetune.csv")
    assert set(ft["dataset"]) == set(SMOKE_DATASETS)
    for f in ("finetune", "layer_probe", "feature_reuse", "ks_cdf", "pretrain_loss",
              "paired_difference"):
        assert (res / "figures" / ds / f"{f}.png").stat().st_size > 0
    # the data report of both datasets
    rep = res / "data_report"
    prev = pd.read_csv(rep / ds / "prevalence.csv")
    for subset, part in prev.groupby("subset"):
        assert part["prevalence"].sum() == pytest.approx(1, abs=1e-5), subset  # one class each
    files = pd.read_csv(rep / ds / "files.csv")  # 16-bit storage, 12-bit values (11 if dim)
    assert set(map(tuple, files[["type", "mode", "bits"]].values.tolist())) == {
        ("PNG", "I;16", 16)}
    assert files["bits_used"].max() == 12 and files["bits_used"].min() > 8
    for d in SMOKE_DATASETS:
        splits = pd.read_csv(rep / d / "splits.csv").set_index("subset")
        manifest = pd.read_csv(res / d / "data/manifest.csv")
        assert splits.loc["all", "images"] == len(manifest)
        assert splits.loc[["train", "val", "test"], "images"].sum() == len(manifest)
        assert Image.open(rep / d / "contact_sheet.png").format == "PNG"
    assert "## table_synth (synthetic)" in (rep / "summary.md").read_text()


def test_every_log_has_a_header_and_an_end(smoke_run):
    logs = list((smoke_run / "results").rglob("logs/*.log")) + list(
        (smoke_run / "logs").rglob("*.log"))
    assert len(logs) > 25
    for log in logs:
        lines = log.read_text().splitlines()
        assert lines and lines[0].startswith("== ") and "git " in lines[0], log
        assert lines[-1].startswith("== done in"), log
        assert "\r" not in log.read_text(), log  # line-based progress in files
    ft = (smoke_run / "results/dr_synth/logs/finetune_moco_labeled_6_seed0.log").read_text()
    assert "settings " in ft.splitlines()[0] and "best validation epoch" in ft
    ev = (smoke_run / "results/dr_synth/logs/evaluate_moco_labeled_6_seed0.log").read_text()
    assert "test macro_auc" in ev.splitlines()[-2]
    pre = (smoke_run / "results/dr_synth/logs/pretrain_moco.log").read_text()
    assert "epoch 1/2 |" in pre and "epoch 2/2 |" in pre
    # the demo's numerics: portable, pinned in every job that computes with torch
    for log in (ft, ev, pre):
        head = log.splitlines()[0]
        assert "numerics portable" in head, head
    assert "numerics portable (ATen AVX2, 1 thread)" in pre.splitlines()[0]
    metrics = read_json(smoke_run / "results/dr_synth/finetune/moco/labeled_6/seed0/"
                        "metrics.json")
    assert metrics["numerics"]["mode"] == "portable" and metrics["numerics"]["aten"] == "AVX2"
    assert metrics["settings"]["settings"]["numerics"] == "portable"  # a result field


def test_a_fine_tuning_that_predicts_one_class_is_flagged_not_shown(smoke_run, tmp_path):
    """Over the smoke run's fine-tunings: each metrics.json's one_class is what its test
    predictions show (one decision for every image), and a run whose model gives every image
    the same probability scores a constant prediction's AUC and reads "predicts one class"
    in the tables and in the README's account, never as a number."""
    from ilmoco.evaluation.metrics import decisions
    from ilmoco.evaluation.predictions import read_predictions
    from ilmoco.reporting import tables
    from ilmoco.reporting.summary import one_class_runs, paired_sentences
    from ilmoco.stages import evaluate

    res = smoke_run / "results"
    files = sorted(res.glob("*/finetune/*/labeled_*/seed*/metrics.json"))
    assert len(files) == SMOKE_RUNS * D
    for f in files:
        m = read_json(f)
        _, y, p = read_predictions(f.parent / "predictions.csv")
        d = decisions(m["metric"], y, p, m["threshold"]).reshape(len(y), -1)
        assert m["one_class"] == bool((d == d[:1]).all()), f
    run = res / "dr_synth/finetune/moco_mse/labeled_6/seed0"
    flat = tmp_path / "flat"
    flat.mkdir()
    df = pd.read_csv(run / "predictions.csv")
    p_col = next(c for c in df.columns if c.startswith("p_"))
    df[p_col] = 0.25  # one probability for every test image
    df.to_csv(flat / "predictions.csv", index=False)
    shutil.copy(run / "predictions_last.csv", flat / "predictions_last.csv")
    shutil.copy(run / "selection.json", flat / "selection.json")
    from ilmoco.data.formats.base import DatasetMeta
    meta = DatasetMeta.from_dict(read_json(res / "dr_synth/data/dataset.json"))
    settings = yaml.safe_load((res / "resolved_config.yaml").read_text())["bootstrap"]
    from ilmoco.config.settings.bootstrap import BootstrapSettings
    result = evaluate.run(predictions=flat / "predictions.csv",
                          predictions_last=flat / "predictions_last.csv",
                          selection=flat / "selection.json", meta=meta,
                          bootstrap=BootstrapSettings(**settings),
                          out_metrics=flat / "metrics.json")
    assert result["one_class"] and result["estimate"] == 0.5  # every pair of scores tied
    out = tmp_path / "tables"
    built = tables.build_all(
        finetune_metrics=[flat / "metrics.json" if f.parent == run else f for f in files],
        probes=[], ckas=[], kss=[], paireds=[res / "dr_synth/analysis/paired.csv"],
        out_dir=out, order=SMOKE_METHODS, display={})
    row = next(ln for ln in (out / "finetune.md").read_text().splitlines()
               if ln.startswith("| dr_synth") and "| 6 % |" in ln)
    head = next(ln for ln in (out / "finetune.md").read_text().splitlines()
                if ln.startswith("| dataset"))
    cell = dict(zip([c.strip() for c in head.split("|")], [c.strip() for c in row.split("|")]))
    assert cell["moco_mse"] == "predicts one class"
    text = " ".join(paired_sentences(built["paired_difference"], {}, {},
                                     flat=one_class_runs(built["finetune"])))
    assert "dr_synth, 6 % labels, against moco:" in text
    assert "predicts one class: moco_mse" in text.split("dr_synth, 6 % labels")[1]


def test_results_are_readable_by_colleagues(smoke_run):
    """Files written through a temporary file follow the umask (022 here), not mkstemp's
    0600."""
    for f in ["results/dr_synth/data/split.csv", "results/tables/finetune.csv",
              "results/dr_synth/pretrain/moco/encoder.pt",
              "results/figures/dr_synth/finetune.png"]:
        mode = (smoke_run / f).stat().st_mode
        assert mode & stat.S_IRGRP and mode & stat.S_IROTH, (f, oct(mode))


def test_nothing_to_do_after_a_run(smoke_run):
    assert planned_jobs(workdir=smoke_run) == {}


def test_execution_settings_plan_nothing(smoke_run, tmp_path):
    cfg = write(tmp_path / "exec.yaml", """\
        pretrain: {checkpoint_every: 7, device: cpu, compile: false, data_placement: host,
                   progress: lines, channels_last: false, tensorboard: false}
        finetune: {checkpoint_every: 5, device: cpu, data_placement: memmap, progress: quiet,
                   tensorboard: false}
        cache: {workers: threads, checkpoint_every: 7}
    """)
    assert planned_jobs(workdir=smoke_run, configfiles=(*SMOKE_CONFIG, cfg)) == {}


def test_a_result_setting_reruns_its_stage_and_what_depends_on_it(smoke_run, tmp_path):
    cfg = write(tmp_path / "lr.yaml", "finetune: {optimizer: {lr: 0.002}}\n")
    jobs = planned_jobs(workdir=smoke_run, configfiles=(*SMOKE_CONFIG, cfg))
    assert jobs["finetune"] == SMOKE_RUNS * D
    assert not {"synthetic_data", "manifest", "split", "cache", "pretrain"} & set(jobs)
    assert set(jobs) <= {"finetune", "evaluate", "probe", "cka", "ks", "paired", "tables",
                         "figures", "all", "resolved_config"}
    cfg = write(tmp_path / "epochs.yaml", "pretrain: {epochs: 3}\n")
    jobs = planned_jobs(workdir=smoke_run, configfiles=(*SMOKE_CONFIG, cfg))
    assert jobs["pretrain"] == len(SMOKE_SSL) * D
    assert jobs["finetune"] == len(SMOKE_SSL) * 2 * D  # not supervised
    assert not {"synthetic_data", "manifest", "split", "cache"} & set(jobs)
    cfg = write(tmp_path / "bt.yaml", "pretrain: {bt: {lambda_off: 0.001}}\n")
    jobs = planned_jobs(workdir=smoke_run, configfiles=(*SMOKE_CONFIG, cfg))
    smoke = yaml.safe_load(SMOKE_CONFIG[1].read_text())
    bt = [m for m, v in smoke["variants"].items() if v["term"] == "bt"]
    assert len(bt) == 2 and jobs["pretrain"] == D * len(bt)  # only Barlow Twins methods
    # interval settings: only the statistics, never the training
    cfg = write(tmp_path / "boot.yaml", "bootstrap: {resamples: 60}\n")
    jobs = planned_jobs(workdir=smoke_run, configfiles=(*SMOKE_CONFIG, cfg))
    assert jobs["evaluate"] == SMOKE_RUNS * D
    assert not {"pretrain", "finetune", "cka", "ks"} & set(jobs)


def test_changing_the_split_seed_reruns_everything_downstream_of_the_split(smoke_run,
                                                                            tmp_path):
    cfg = write(tmp_path / "seed.yaml", "split: {seed: 1}\n")
    jobs = planned_jobs(workdir=smoke_run, configfiles=(*SMOKE_CONFIG, cfg))
    assert jobs["split"] == D and jobs["pretrain"] == len(SMOKE_SSL) * D
    assert jobs["finetune"] == SMOKE_RUNS * D
    assert not {"synthetic_data", "manifest", "cache"} & set(jobs)


def repo_copy(tmp_path):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path / "repo"
    for f in files:
        if (ROOT / f).is_file():
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, copy / f)
    return copy


def test_comments_and_docstrings_in_the_library_rerun_nothing(smoke_run, tmp_path):
    copy = repo_copy(tmp_path)
    modules = sorted((copy / "src/ilmoco").rglob("*.py"))
    assert len(modules) > 30
    for m in modules:
        text = m.read_text()
        text = text.replace('"""', '"""Edited. ', 1) if text.lstrip().startswith('"""') \
            else text
        m.write_text(text + "\n# a comment appended to every library module\n")
    jobs = planned_jobs(workdir=smoke_run, snakefile=copy / "Snakefile")
    assert jobs == {}, jobs


def test_a_code_change_reruns_only_the_stages_that_run_it(smoke_run, tmp_path):
    copy = repo_copy(tmp_path)
    # another format's reader; a report module
    for name in ("data/formats/nih.py", "reporting/figures.py"):
        f = copy / "src/ilmoco" / name
        f.write_text(f.read_text() + "\nCHANGED = True\n")
    assert planned_jobs(workdir=smoke_run, snakefile=copy / "Snakefile") == {
        "figures": D, "all": 1}
    byol = copy / "src/ilmoco/models/bases/byol.py"  # one base: only its own pretraining
    byol.write_text(byol.read_text() + "\nCHANGED = True\n")
    jobs = planned_jobs(workdir=smoke_run, snakefile=copy / "Snakefile")
    assert jobs["pretrain"] == D and jobs["finetune"] == 2 * D  # byol_bt at 6 and 100 %
    losses = copy / "src/ilmoco/models/losses.py"  # the losses: training and what follows
    losses.write_text(losses.read_text() + "\nCHANGED = True\n")
    jobs = planned_jobs(workdir=smoke_run, snakefile=copy / "Snakefile")
    assert jobs["pretrain"] == len(SMOKE_SSL) * D and jobs["finetune"] == SMOKE_RUNS * D
    assert jobs["probe"] == (len(SMOKE_SSL) + 2) * D  # the control, the supervised model
    assert not {"synthetic_data", "manifest", "split", "cache"} & set(jobs)


COMPUTE = {"synthetic_data", "manifest", "split", "cache", "pretrain", "finetune", "evaluate",
           "probe", "cka", "ks", "paired"}


@pytest.mark.parametrize("edit", ["caption", "display name", "figure"])
def test_presentation_edits_rerun_no_compute_stage(smoke_run, tmp_path, edit):
    """A table caption, a method's display name or a figure function reruns the report
    only: none of them is part of a compute stage's code or settings."""
    copy = repo_copy(tmp_path)
    path, old, new = {
        "caption": ("reporting/specs.py", "Fine-tuned test metric (x100)",
                    "Fine-tuned test metric (x 100)"),
        "display name": ("config/methods.py", '"MoCo+MSE", "ssl"', '"MoCo + MSE", "ssl"'),
        "figure": ("reporting/figures.py", 'ax.set_xlabel("labelled training images")',
                   'ax.set_xlabel("labelled training images (share)")'),
    }[edit]
    f = copy / "src/ilmoco" / path
    assert old in f.read_text()
    f.write_text(f.read_text().replace(old, new))
    jobs = planned_jobs(workdir=smoke_run, snakefile=copy / "Snakefile")
    assert jobs and not COMPUTE & set(jobs), jobs
    assert set(jobs) <= {"tables", "figures", "all"}


# stage -> (its settings class's last field, the schema line its section's properties
# start after, the jobs that must rerun, the GPU stages that must not)
SETTING_EDITS = {
    "cka": ('    numerics: str = added("native")  # the top-level `numerics` (ilmoco.numerics)\n',
            "cka", {"cka"}, {"pretrain", "finetune", "probe", "linear_probe"}),
    "finetune": ("    epochs_by_fraction: Mapping  # fraction (\"100\") -> maximum epochs; else "
                 "``epochs``\n", "finetune", {"finetune"}, {"pretrain"}),
}


@pytest.mark.parametrize("stage", sorted(SETTING_EDITS))
def test_a_new_setting_of_one_stage_reruns_that_stage_only(smoke_run, tmp_path, stage):
    """A setting added to one stage (its dataclass field and its schema key, as
    docs/architecture.md's recipe says) reruns that stage and what reads its results, no
    other GPU stage: each stage's settings are a module of their own."""
    copy = repo_copy(tmp_path)
    last, section, rerun, untouched = SETTING_EDITS[stage]
    f = copy / f"src/ilmoco/config/settings/{stage}.py"
    assert f.read_text().count(last) == 1
    f.write_text(f.read_text().replace(last, last + "    new_knob: int = added(0)\n"))
    schema = copy / "workflow/schemas/config.schema.yaml"
    head = f"\n  {section}:\n    type: object\n    additionalProperties: false\n" \
           "    default: {}\n    properties:\n"
    assert schema.read_text().count(head) == 1
    schema.write_text(schema.read_text().replace(
        head, head + "      new_knob: {type: integer, default: 0}\n"))
    jobs = planned_jobs(workdir=smoke_run, snakefile=copy / "Snakefile")
    assert rerun <= set(jobs) and not untouched & set(jobs), jobs


def test_report_builds(smoke_run):
    snakemake("--report", "results/report.html", workdir=smoke_run)
    html = (smoke_run / "results" / "report.html").read_text(errors="ignore")
    assert len(html) > 10_000 and "finetune" in html and "paired" in html
    assert "Ablations" in html and "byol_bt" in html  # the variant of the smoke config
    assert "contact_sheet.png" in html and "prevalence.csv" in html  # the data report


NO_NETWORK = textwrap.dedent("""
    import socket

    def _blocked(*args, **kwargs):
        raise OSError("network access blocked by the test suite")

    socket.socket.connect = _blocked
    socket.socket.connect_ex = _blocked
    socket.create_connection = _blocked
    socket.getaddrinfo = _blocked
""")

# One dataset's chain through every kind of stage: data, pretraining, fine-tuning,
# probing, CKA, KS and the paired comparison.


CHAIN = ["results/dr_synth/analysis/cka_moco_mse.csv",
         "results/dr_synth/probe/moco_mse/probe.csv",
         "results/dr_synth/probe/random_init/probe.csv"]


def test_rerun_is_deterministic_and_needs_no_network(smoke_run, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    work = tmp_path / "again"
    work.mkdir()
    # the site directory first, keeping any PYTHONPATH the suite runs under
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    snakemake(*CHAIN, workdir=work, env={"PYTHONPATH": path})
    compared = 0
    for b in (work / "results").rglob("*"):
        rel = b.relative_to(work)
        if b.suffix not in (".csv", ".json", ".npy") or "logs" in rel.parts:
            continue
        a = smoke_run / rel
        if b.name == "metrics.csv" and "pretrain" in rel.parts:  # throughput is timing
            pd.testing.assert_frame_equal(pd.read_csv(a).drop(columns="throughput"),
                                          pd.read_csv(b).drop(columns="throughput"))
        else:
            assert a.read_bytes() == b.read_bytes(), rel
        compared += 1
    assert compared > 12


# ------------------------------------------------------------------ kill -9 and resume

LONGER = """
pretrain: {epochs: 4, checkpoint_every: 2}
finetune: {epochs: 4, patience: 4, checkpoint_every: 2}
"""


DATA = "results/dr_synth/data"


PRETRAIN = "results/dr_synth/pretrain/moco_mse"


FINETUNE = "results/dr_synth/finetune/supervised/labeled_100/seed0"


def job_pids(work: Path, marker: str) -> list[int]:
    """PIDs of the Snakemake job scripts of the run in ``work`` whose command line contains
    ``marker`` (only this run's: other tests and other users' runs go on undisturbed)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if f"{work}/.snakemake/scripts/" in cmd and marker in cmd:
                out.append(int(d.name))
    return out


def with_smoke_data(smoke_run, work: Path) -> Path:
    """A work directory holding the smoke run's data stages (raw data, split, cache), so only
    training runs; copies keep their modification times and so stay up to date."""
    for rel in ("data/synthetic/dr_synth", DATA):
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
            for pid in job_pids(work, marker):
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
        d, outputs = FINETUNE, ["model.pt", "selection.json", "metrics.json", "history.csv",
                                "predictions.csv", "predictions_last.csv"]
        target = f"{d}/metrics.json"
    run_and_kill(work, target, cfg, work / d / "resume.pt", f"{stage}.py")
    assert (work / d / "resume.pt").exists()
    assert not (work / d / outputs[0]).exists()  # no output from the killed job
    if stage == "pretrain":  # an execution setting changes nothing: the checkpoint resumes
        cfg.write_text(LONGER.replace("checkpoint_every: 2}", "checkpoint_every: 3}", 1))
    r = snakemake(target, workdir=work, configfiles=(*SMOKE_CONFIG, cfg))
    assert "rule cache:" not in r.stdout + r.stderr  # the copied data stages were reused
    logs = [p.read_text() for p in (work / "results/dr_synth/logs").glob(f"{stage}_*.log")]
    assert any("resumed " in t and " at step " in t for t in logs), r.stdout[-1000:]
    assert not any("different configuration" in t for t in logs)
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


def test_checkpoint_of_another_dataset_is_refused(smoke_run, tmp_path):
    from ilmoco.io import InputError
    from ilmoco.training.checkpoints import load_backbone

    enc = smoke_run / "results/dr_synth/pretrain/moco_mse/encoder.pt"
    with pytest.raises(InputError, match=r"trained with dataset='dr_synth' but this run "
                                         r"needs dataset='nih_synth'"):
        load_backbone(enc, dataset="nih_synth", method="moco_mse")
    with pytest.raises(InputError, match=r"method='moco_mse' but this run needs "
                                         r"method='byol_bt'"):
        load_backbone(enc, dataset="dr_synth", method="byol_bt")
    with pytest.raises(InputError, match=r"in_channels=3 but this run needs in_channels=1"):
        load_backbone(enc, dataset="dr_synth", in_channels=1)


def test_data_parallel_pretraining_through_snakemake(smoke_run, tmp_path):
    """`gpu: 2` for pretrain starts 2 data-parallel processes from the job script (gloo on
    CPU): the spawned processes import the script without rerunning it."""
    work = tmp_path / "work"
    cfg = with_smoke_data(smoke_run, work)
    target = f"{PRETRAIN}/encoder.pt"
    snakemake(target, "--set-resources", "pretrain:gpu=2", workdir=work,
              configfiles=(*SMOKE_CONFIG, cfg))
    log = (work / "results/dr_synth/logs/pretrain_moco_mse.log").read_text()
    assert "data-parallel over 2 processes (cpu)" in log
    assert log.splitlines()[-1].startswith("== done in")
    curve = pd.read_csv(work / PRETRAIN / "metrics.csv")
    assert curve["infonce"].notna().sum() >= 4 and torch_load(work / target)["meta"]["epochs"] == 4


# ------------------------------------------------------------------ the official protocol

PAPER_SMOKE = ROOT / "config" / "paper_smoke.yaml"


def test_the_official_probes_run_in_the_smoke_dag_under_the_official_preset(smoke_run,
                                                                           tmp_path):
    """config/paper_smoke.yaml (the paper preset's official choices at the smoke size):
    the whole DAG plans an --only-ll linear probe beside each layer probe, and both
    protocols run through Snakemake on jama16's bin2 subset of the smoke data."""
    configs = (*SMOKE_CONFIG, PAPER_SMOKE)
    jobs = planned_jobs(workdir=tmp_path, configfiles=configs)
    assert jobs["linear_probe"] == jobs["probe"] == D * (len(SMOKE_SSL) + 1)  # + the control
    work = tmp_path / "work"  # the raw smoke data only: bin2 makes a manifest of its own
    shutil.copytree(smoke_run / "data/synthetic/dr_synth", work / "data/synthetic/dr_synth",
                    copy_function=shutil.copy2)
    targets = [f"results/dr_synth/probe/{m}/{f}.csv" for m in ("moco", "random_init")
               for f in ("probe", "linear")]
    snakemake(*targets, workdir=work, configfiles=configs)
    split = pd.read_csv(work / "results/dr_synth/data/split.csv")
    whole = pd.read_csv(smoke_run / "results/dr_synth/data/split.csv")
    assert 0 < len(split) < len(whole) and split["referable"].mean() > whole["referable"].mean()
    for m in ("moco", "random_init"):
        d = work / "results/dr_synth/probe" / m
        layer = json.loads((d / "probe.json").read_text())
        assert layer["protocol"] == "official" and len(layer["history"]) == 2
        assert set(pd.read_csv(d / "probe.csv")["best_epoch"]) == {1}  # the last epoch
        ll = pd.read_csv(d / "linear.csv").iloc[0]
        assert (ll["protocol"], ll["block"], ll["epochs"]) == ("only_ll", "block4", 2)
    meta = torch_load(work / "results/dr_synth/pretrain/moco/encoder.pt")["meta"]
    assert meta["settings"]["settings"]["zero_init_residual"] is False  # MoCo-only
    assert meta["settings"]["settings"]["batch_size"] == 8
    log = (work / "results/dr_synth/logs/pretrain_moco.log").read_text()
    assert "epoch 2/2 |" in log and "val_loss" in log
