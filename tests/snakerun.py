"""Helpers to drive Snakemake as a user would (a subprocess), and to read its plans."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config.yaml"
SMOKE = ROOT / "config" / "smoke.yaml"
SMOKE_CONFIG = (DEMO, SMOKE)  # the smoke run is layered over the demo, as the user would
# The smoke run's datasets, methods and fractions (the counts of its jobs follow from them;
# SMOKE_RUNS counts one dataset's fine-tuning runs).
SMOKE_DATASETS = yaml.safe_load(SMOKE.read_text())["use_datasets"]
SMOKE_METHODS = yaml.safe_load(SMOKE.read_text())["methods"]
SMOKE_SSL = [m for m in SMOKE_METHODS if m != "supervised"]
SMOKE_RUNS = len(SMOKE_METHODS) * len(yaml.safe_load(SMOKE.read_text())["fractions"])


def load_bench(name: str):
    """The module of ``bench/<name>.py`` (the benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def snakemake(*args, workdir=None, configfiles=SMOKE_CONFIG, env=None, check=True,
              timeout=1500, snakefile=ROOT / "Snakefile"):
    """Run Snakemake in ``workdir``, by default a new empty directory: never in the
    checkout, whose results/ and .snakemake/ a user's own runs fill."""
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="ilmoco-snakemake-"))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--cores", "2",
           "--directory", str(workdir)]
    cmd += list(args)  # before --configfile, which would swallow positional targets
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                           cwd=workdir)
    except subprocess.TimeoutExpired as e:  # say where it stood: the tails of its job logs
        logs = sorted(Path(workdir).glob("results/**/logs/*.log"), key=os.path.getmtime)
        tails = "".join(f"\n--- {log}\n{log.read_text(errors='replace')[-1500:]}"
                        for log in logs[-4:])
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise AssertionError(f"snakemake {' '.join(args)} ran past {timeout} s:\n"
                             f"{(err or '')[-3000:]}{tails}") from None
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    return r


def planned_jobs(*args, **kw) -> dict[str, int]:
    """Rule -> job count of a dry-run (empty when nothing is to be done)."""
    r = snakemake("-n", *args, **kw)
    text = r.stdout + r.stderr
    m = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\n\s*total", text, re.S)
    if not m:
        assert "Nothing to be done" in text, text[-2000:]
        return {}
    out = {}
    for line in m.group(1).splitlines():
        name, count = line.split()
        out[name] = int(count)
    return out


def readme_recipe(library: str) -> str:
    """The code block after ``<!-- recipe: <library> -->`` in the README (the loading
    recipes of an exported encoder, which the tests run as they stand there)."""
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- recipe: {library} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"no {library} recipe in the README"
    return m.group(1)
