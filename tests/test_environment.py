"""The conda environment of the jobs: one source of pins, and nothing that breaks when
Snakemake copies the file under .snakemake/conda/; job scripts import the library without an
installed package; the default run needs none of the optional libraries."""

import os
import subprocess
import sys

import pytest
import yaml
from snakerun import ROOT

# Workflow-side packages the jobs do not import.
NOT_IN_JOBS = {"snakemake", "snakemake-executor-plugin-slurm", "pygments"}


def pins(lines) -> dict:
    out = {}
    for ln in lines:
        ln = ln.split("#")[0].strip()
        if ln:
            for op in ("==", ">="):
                if op in ln:
                    name, version = ln.split(op)
                    out[name.strip().lower()] = op + version.strip()
    return out


def test_env_file_pins_equal_requirements():
    """The jobs' environment holds the default stack and the optional libraries (a job
    imports timm, tensorboard or pydicom when the config asks for them), with the same pins."""
    req = pins((ROOT / "requirements.txt").read_text().splitlines())
    extras = pins((ROOT / "requirements-extras.txt").read_text().splitlines())
    assert not set(req) & set(extras)
    req = {**req, **extras}
    env = yaml.safe_load((ROOT / "envs/ilmoco.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not [p for p in pip if p.startswith("-") or "/" in p]  # no -e ../, no paths
    assert pins(pip) == {k: v for k, v in req.items() if k not in NOT_IN_JOBS}


def test_job_scripts_find_the_library_without_an_installed_package(tmp_path):
    """A Python whose site-packages lack `ilmoco` (as in the conda env) imports it through
    workflow/scripts, the directory Snakemake puts on a script's sys.path."""
    code = ("import sys; sys.path = [p for p in sys.path if 'site-packages' not in p "
            "and not p.endswith('/src')]; sys.meta_path[:] = [f for f in sys.meta_path "
            "if 'editable' not in repr(f).lower()]; "
            f"sys.path.append({str(ROOT / 'workflow/scripts')!r}); "
            "import ilmoco.config.methods, ilmoco.runlog; print(ilmoco.config.methods.__file__)")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(ROOT / "src/ilmoco/config/methods.py")


def test_optional_dependency_groups_pin_the_extras():
    """pip users' `pip install -e ".[extras]"` gets the versions `make test` installs."""
    import tomllib

    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    listed = pins(p for g in groups.values() for p in g if not p.startswith("ilmoco["))
    assert listed == pins((ROOT / "requirements-extras.txt").read_text().splitlines())


def test_the_optional_libraries_named_in_errors_are_the_pinned_ones():
    from ilmoco.optional import PINS

    extras = pins((ROOT / "requirements-extras.txt").read_text().splitlines())
    assert pins(PINS.values()) == extras


BLOCK_OPTIONAL = """
import sys
sys.modules["timm"] = None  # not installed, as after `make demo` (requirements.txt only)
sys.modules["tensorboard"] = None
"""

DEFAULT_JOBS = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from stagedata import prepare, tiny_settings
from ilmoco.stages import export, pretrain

tmp = Path({tmp!r})
paths, meta = prepare(tmp / "data", n_patients=16)
job = pretrain.PretrainJob(
    run=tiny_settings(pretrain={{"epochs": 1}}).pretrain_run("dr", "moco_mse"),
    split_csv=str(paths["split"]), meta=meta, cache_images=str(paths["images"]),
    cache_index=str(paths["index"]), out_encoder=str(tmp / "encoder.pt"),
    out_metrics=str(tmp / "metrics.csv"), resume_path=str(tmp / "resume.pt"),
    events_dir=str(tmp / "tb"))
pretrain.run(job)
export.run(job.out_encoder, str(tmp / "encoder.safetensors"))
assert sys.modules["timm"] is None and sys.modules["tensorboard"] is None
print("ok", (tmp / "tb").exists())
"""


@pytest.mark.slow
def test_the_default_run_needs_no_optional_library(tmp_path):
    """Pretraining (``tensorboard: auto``) and the export run with timm and tensorboard
    unimportable: they write no event files and say why."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_OPTIONAL)
    code = DEFAULT_JOBS.format(tests=str(ROOT / "tests"), tmp=str(tmp_path))
    path = (str(site), str(ROOT / "src"), os.environ.get("PYTHONPATH"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok False"
    assert "no TensorBoard event files: tensorboard: auto without the tensorboard package" \
        in r.stderr
    assert (tmp_path / "encoder.safetensors").is_file()
