"""CPU smoke tests of the benchmarks: pretraining throughput (its GPU figures come from a GPU
run), image-cache throughput (its figures from full-sized images), and the seed-variance
benchmark against the smoke DAG it must reproduce at seed 0."""

import json
import statistics
import subprocess
import sys

import pytest
from snakerun import ROOT, load_bench


def test_benchmark_runs_on_cpu_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    report = load_bench("pretrain_throughput").main([
        "--device", "cpu", "--arch", "resnet18", "--size", "32", "--batch", "8",
        "--steps", "2", "--warmup", "1", "--workers", "0", "--queue", "32",
        "--projector", "32", "32", "32", "--channels", "1", "--augment", "chest",
        "--json", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"ceiling", "moco", "moco_mse", "moco_bt", "official"}
    assert all(r["pairs_per_s"] > 0 for r in saved["results"].values())
    r = saved["results"]
    assert saved["ratios"]["moco/ceiling"] == r["moco"]["pairs_per_s"] / r["ceiling"][
        "pairs_per_s"]
    assert saved["ratios"]["moco_bt/moco"] > 0 and report["args"]["batch"] == 8


def test_help_documents_the_knobs():
    r = subprocess.run([sys.executable, str(ROOT / "bench/pretrain_throughput.py"), "--help"],
                       capture_output=True, text=True, check=True)
    for knob in ("--arch", "--size", "--batch", "--augment", "--placement", "--compile",
                 "--max-batch", "--json"):
        assert knob in r.stdout


@pytest.mark.slow
def test_seed_variance_benchmark_runs_the_workflows_stages(tmp_path, smoke_run):
    """The seed benchmark on the smoke configuration, two seeds: one row per dataset, method
    and seed; margins are the probe minus that seed's control; seed 0 reproduces the smoke
    DAG's own probes and fine-tuning results (the same stages, settings and machine)."""
    import pandas as pd

    out = tmp_path / "seeds.csv"
    methods = {"supervised", "moco", "moco_mse", "byol_bt", "simsiam_mse"}  # not the timm one
    # a process of its own, as a user runs it: numerics are chosen before torch is imported,
    # which this test process has already done
    subprocess.run([sys.executable, str(ROOT / "bench/seed_variance.py"),
                    "--configfile", str(ROOT / "config/smoke.yaml"), "--seeds", "0", "1",
                    "--datasets", "dr_synth", "--methods", *sorted(methods),
                    "--work", str(tmp_path / "work"), "--out", str(out), "--workers", "1"],
                   check=True, cwd=ROOT)
    from ilmoco.reporting.seeds import read_table

    table, facts = read_table(out)
    assert set(table["method"]) == methods and set(table["seed"]) == {0, 1}
    ssl = table[table["method"] != "supervised"]
    # (the table holds 6 significant digits)
    assert (ssl["margin"] - (ssl["probe"] - ssl["control"])).abs().max() < 1e-5
    assert table.loc[table["method"] == "moco", "difference"].isna().all()
    diffs = table[table["method"] != "moco"]
    assert (diffs["difference_low"] <= diffs["difference"]).all()
    assert facts["settings"] and "seeds [0, 1]" in facts["header"]
    # each seed's control is the pretraining's own starting point: it changes with the seed
    controls = table.groupby("seed")["control"].first()
    # %.6g values: two different ones differ by a unit of the 6th digit, more than approx's
    # default rel 1e-6 of either, so this asserts that they differ at all
    assert controls[0] != pytest.approx(controls[1])
    zero = table[table["seed"] == 0].set_index("method")
    res = smoke_run / "results/dr_synth"
    for m in methods - {"supervised"}:
        dag = pd.read_csv(res / f"probe/{m}/probe.csv").set_index("block")
        # both CSVs hold %.6g of the block-4 estimate, recomputed by the same stages on the
        # same machine: the same printed value; 1e-6 is one unit of its 6th digit in [0.1, 1)
        assert zero.loc[m, "probe"] == pytest.approx(dag.loc["block4", "estimate"], abs=1e-6)
    for m in methods:
        dag = json.loads((res / f"finetune/{m}/labeled_6/seed0/metrics.json").read_text())
        # %.6g in the benchmark's CSV, full precision in metrics.json: <= 5e-7 apart for
        # values < 1; 1e-6 leaves 2x
        assert zero.loc[m, "finetune"] == pytest.approx(dag["estimate"], abs=1e-6), m


def test_decode_benchmark_runs_on_cpu_and_writes_json(tmp_path):
    out = tmp_path / "decode.json"
    load_bench("decode_throughput").main([
        "--quick", "--images", "2", "--repeats", "1", "--seconds", "0.05", "--cores", "2",
        "--json", str(out)])
    saved = json.loads(out.read_text())
    r = saved["results"]
    assert set(r) == {"nih", "eyepacs_crop", "eyepacs", "idc"}
    assert all(r[c][k]["images_per_s"] > 0 for c in r for k in
               ("decode", "project", "project_threads_2", "project_processes_2"))
    assert {"floor", "draft8", "scale"} <= set(r["eyepacs_crop"]) and "floor" not in r["nih"]
    # a ratio is the median of the per-round ratios of the same run
    project, decode = r["nih"]["project"]["passes"], r["nih"]["decode"]["passes"]
    # JSON keeps floats exactly (repr) and this is the same median of the same quotients:
    # equal, approx's default rel 1e-6 only spares an exact ==
    assert saved["ratios"]["nih: project/decode"] == pytest.approx(
        statistics.median(a / b for a, b in zip(project, decode)))
    assert set(saved["verdicts"]) == {"nih >= 0.8 x decode", "eyepacs_crop >= 0.8 x floor"}
    # the quick images are drawn as the full-size ones: a fundus on black, a chest, a patch
    assert r["eyepacs"]["difference"]["mean"] < 1.0 and r["idc"]["difference"]["max"] == 0
    assert saved["machine"] and saved["date"]
