"""CPU smoke test of the throughput benchmark (the GPU figures come from a GPU run)."""

import importlib.util
import json
import subprocess
import sys

from snakerun import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "bench/pretrain_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_runs_on_cpu_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    report = load_bench().main([
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
