"""Reliability through Snakemake: a job killed with SIGKILL mid-epoch resumes from its last
checkpoint and ends bit-identical to an uninterrupted run; bad input stops the DAG with one
clear line and leaves no half-written output."""

from pathlib import Path

import pytest
from layouts import nih_rows, write_nih
from snakerun import SMOKE_CONFIG, snakemake

pytestmark = pytest.mark.slow


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
