"""The code hash behind precise reruns: blind to comments, docstrings and formatting, and
covering exactly the modules a stage's script imports."""

import ast

import pytest
from snakerun import ROOT

from ilmoco.codehash import code_hash, module_closure, normalized_source

SCRIPTS = ROOT / "workflow" / "scripts"


def test_comments_docstrings_and_formatting_do_not_count(tmp_path):
    a = tmp_path / "a.py"
    a.write_text('"""Module doc."""\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    b = tmp_path / "b.py"
    b.write_text('"""Another doc,\nlonger."""\ndef f( x ):\n\n    return (x+1)\n# trailing\n')
    assert normalized_source(a) == normalized_source(b)
    c = tmp_path / "c.py"
    c.write_text('def f(x):\n    return x + 2\n')
    assert normalized_source(a) != normalized_source(c)
    d = tmp_path / "d.py"  # a string that is not a docstring is code
    d.write_text('def f(x):\n    y = "text"\n    return x + 1\n')
    assert normalized_source(a) != normalized_source(d)


def test_an_edit_within_the_same_process_changes_the_hash(tmp_path):
    # the parse is memoised by the file's text, never by its path alone
    f = tmp_path / "stage.py"
    f.write_text("def f(x):\n    return x + 1\n")
    before = code_hash(f)
    assert code_hash(f) == before
    f.write_text("def f(x):\n    return x + 2\n")
    assert code_hash(f) != before
    f.write_text("def f(x):\n    return x + 1  # back\n")
    assert code_hash(f) == before


def names(script):
    return {p.relative_to(ROOT / "src/ilmoco").as_posix()
            for p in module_closure(str(SCRIPTS / script))}


COMPUTE = ("pretrain.py", "finetune.py", "probe.py", "linear_probe.py", "cka.py",
           "evaluate.py", "cache.py", "manifest.py", "split.py", "synthetic.py", "ks.py",
           "paired.py")
# read only when the workflow plans a run: captions, display names, the registries
PLAN_ONLY = {"reporting/specs.py", "reporting/tables.py", "reporting/figures.py",
             "reporting/summary.py", "config/methods.py", "config/bases.py",
             "config/terms.py", "config/formats.py", "config/backbones.py",
             "config/resolve.py"}


def test_each_stage_depends_only_on_what_it_imports():
    pre = names("pretrain.py")
    assert {"training/loop.py", "training/ssl.py", "data/augment.py", "data/batches.py",
            "models/backbone.py", "models/momentum.py"} <= pre
    # the base, term and backbone a job runs come in by import path, per rule
    assert not {"models/bases/moco.py", "models/bases/byol.py", "models/terms/mse.py",
                "data/decode.py", "data/formats/nih.py", "data/synthetic.py"} & pre
    manifest = names("manifest.py")  # each format's reader is added per dataset
    assert "data/readers.py" in manifest and "data/formats/nih.py" not in manifest
    assert "data/formats/nih.py" not in names("synthetic.py")
    assert {"stages/split.py", "data/split.py", "data/formats/base.py"} <= names("split.py")
    assert not {p for p in names("split.py") if p.startswith("models/")}
    nih = code_hash(SCRIPTS / "manifest.py", "ilmoco.data.formats.nih")
    dr = code_hash(SCRIPTS / "manifest.py", "ilmoco.data.formats.eyepacs")
    assert nih != dr != code_hash(SCRIPTS / "manifest.py")
    moco = code_hash(SCRIPTS / "pretrain.py", "ilmoco.models.bases.moco")
    byol = code_hash(SCRIPTS / "pretrain.py", "ilmoco.models.bases.byol")
    assert moco != byol != code_hash(SCRIPTS / "pretrain.py")
    assert code_hash(SCRIPTS / "pretrain.py") != code_hash(SCRIPTS / "split.py")


# The settings modules of one stage, and those that several stages share
STAGE_SETTINGS = {"pretrain", "finetune", "linear_probe", "probe", "cka", "paired", "init",
                  "data"}
SHARED_SETTINGS = {"__init__", "fields", "training", "backbone", "bootstrap"}
# script -> the stage settings its job may read (the shared ones aside)
OWN_SETTINGS = {"pretrain.py": {"pretrain"}, "finetune.py": {"finetune"},
                "linear_probe.py": {"linear_probe", "finetune"}, "probe.py": {"probe"},
                "cka.py": {"cka"}, "init_encoder.py": {"init"}, "evaluate.py": set(),
                "paired.py": set(), "export.py": set(), "cache.py": set(), "ks.py": set()}


def test_the_settings_are_one_module_per_stage():
    """Every settings module is a stage's or a shared one (a new one is placed here)."""
    found = {p.stem for p in (ROOT / "src/ilmoco/config/settings").glob("*.py")}
    assert found == STAGE_SETTINGS | SHARED_SETTINGS
    init = ast.parse((ROOT / "src/ilmoco/config/settings/__init__.py").read_text())
    assert not [n for n in ast.walk(init) if isinstance(n, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize("script", sorted(OWN_SETTINGS))
def test_a_stage_reads_only_its_own_settings(script):
    """An edit of one stage's settings module changes the code hash of that stage (and of
    those reading its results) only: e.g. a CKA setting reruns no pretraining."""
    read = {p.removeprefix("config/settings/").removesuffix(".py") for p in names(script)
            if p.startswith("config/settings/")}
    assert read - SHARED_SETTINGS == OWN_SETTINGS[script]


@pytest.mark.parametrize("script", COMPUTE)
def test_no_compute_stage_reads_captions_names_or_registries(script):
    """A caption, a display name or a new registry entry reruns no compute stage."""
    assert not PLAN_ONLY & names(script), PLAN_ONLY & names(script)


def test_type_checking_imports_do_not_count(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                 "    from ilmoco.reporting import figures\nfrom ilmoco import io\n")
    closure = {p.relative_to(ROOT / "src/ilmoco").as_posix() for p in module_closure(str(f))}
    assert "io.py" in closure and "reporting/figures.py" not in closure
