"""The cache job through Snakemake: killed with SIGKILL mid-way, then rerun, it resumes at its
last progress record and ends byte-identical to an uninterrupted run (the rows of the
killed attempt lie beside the outputs, which Snakemake deletes before a job runs)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from layouts import nih_rows, write_nih
from snakerun import ROOT, snakemake
from test_smoke import job_pids

from ilmoco.data.decode import build_cache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import read_table

pytestmark = pytest.mark.slow

IMAGES = "results/nih_big/data/cache/images.npy"
INDEX = "results/nih_big/data/cache/index.csv"
PARTIAL = "results/nih_big/data/cache/images.partial.npy"
RECORD = "results/nih_big/data/cache/images.partial.json"


N = 24


@pytest.fixture
def dataset(tmp_path):
    """24 chest X-ray PNGs of the real 1024x1024 (noise, so each takes a while to decode) and
    a configuration that caches them with a progress record every 4 images."""
    root = write_nih(tmp_path / "root", nih_rows(N // 2, 2), size=(1024, 1024))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        use_datasets: [nih_big]
        datasets:
          nih_big: {{format: nih_cxr14, root: {root}}}
        by_format:
          nih_cxr14: {{image_size: 48}}
        cache: {{checkpoint_every: 4}}
    """))
    return cfg


def run_and_kill_cache(work, cfg) -> int:
    """Start the cache job, SIGKILL it (the job and its worker processes) once its progress
    record names some rows; the rows the record names."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(work), "--cores", "2", IMAGES, "--configfile", str(cfg)]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline, killed = time.time() + 240, False
    while time.time() < deadline and proc.poll() is None and not killed:
        if (work / RECORD).exists():
            for pid in job_pids(work, "cache.py"):
                os.kill(pid, signal.SIGKILL)
                killed = True
        time.sleep(0.01)
    out, _ = proc.communicate(timeout=240)
    assert killed, "the cache job finished before it could be killed:\n" + out[-2000:]
    assert proc.returncode != 0
    return json.loads((work / RECORD).read_text())["rows"]


def test_kill_9_mid_cache_then_rerun_resumes_byte_identical(dataset, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    rows = run_and_kill_cache(work, dataset)
    assert 4 <= rows < N and rows % 4 == 0
    assert (work / PARTIAL).exists() and not (work / IMAGES).exists()
    r = snakemake(IMAGES, workdir=work, configfiles=(dataset,))
    assert "rule manifest:" not in r.stdout + r.stderr  # only the cache job reran
    log = (work / "results/nih_big/logs/cache.log").read_text()
    assert "cache: resuming at image" in log, log[-2000:]
    done = json.loads((work / "results/nih_big/logs/cache.json").read_text())
    assert done["resumed_at"] == rows and done["images"] == N - rows
    assert (done["workers"], done["threads"]) == ("processes", 2)  # the default, killed too
    # an uninterrupted build of the same manifest
    data, ref = work / "results/nih_big/data", tmp_path / "ref"
    build_cache(read_table(data / "manifest.csv"),
                DatasetMeta.from_dict(json.loads((data / "dataset.json").read_text())),
                dataset.parent / "root", ref / "images.npy", ref / "index.csv", size=48,
                progress=False)
    assert (work / IMAGES).read_bytes() == (ref / "images.npy").read_bytes()
    assert (work / INDEX).read_bytes() == (ref / "index.csv").read_bytes()
    assert not (work / PARTIAL).exists() and not (work / RECORD).exists()
