"""The structure the code promises: the schema's enums are the registries, every registered
implementation exists and has the protocol's parts, and the import contracts hold."""

import dataclasses
import shutil
import subprocess

import pytest
import yaml
from snakerun import ROOT

from ilmoco.config.backbones import BACKBONES, arch_patterns, known_archs
from ilmoco.config.bases import BASES
from ilmoco.config.formats import FORMATS
from ilmoco.config.schema import schema_at
from ilmoco.config.terms import TERMS
from ilmoco.imports import load_object

SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def node(*path):
    n = SCHEMA
    for p in path:
        n = schema_at(n, SCHEMA)[p]
    return schema_at(n, SCHEMA)


def test_schema_enums_are_the_registries():
    assert node("$defs", "dataset", "properties", "format")["enum"] == list(FORMATS)
    assert set(node("properties", "by_format", "properties")) == set(FORMATS)
    assert node("$defs", "variant", "properties", "base")["enum"] == list(BASES)
    assert node("$defs", "variant", "properties", "term")["enum"] == list(TERMS)
    arch = node("$defs", "arch")["anyOf"]
    assert [a["enum"] for a in arch if "enum" in a] == [known_archs()]
    assert [a["pattern"] for a in arch if "pattern" in a] == arch_patterns()
    for where in (("properties", "pretrain"), ("properties", "finetune"), ("$defs", "variant")):
        ref = schema_at(SCHEMA, SCHEMA)
        for p in where:
            ref = ref[p]
        arch_node = ref["properties"]["arch"]
        assert "#/$defs/arch" in str(arch_node), where


def test_the_schema_names_the_weight_files_the_loader_reads():
    import re

    from ilmoco.models.weights import SUFFIXES

    pattern = node("$defs", "weights_file")["pattern"]
    assert all(re.search(pattern, f"w{s}") for s in SUFFIXES)
    assert not re.search(pattern, "w.ckpt") and not re.search(pattern, "w.pth.gz")


def test_every_base_and_term_has_its_schema_section():
    pre = node("properties", "pretrain", "properties")
    for name, spec in [*BASES.items(), *((n, t) for n, t in TERMS.items() if t.settings)]:
        keys = set(schema_at(pre[name], SCHEMA)["properties"])
        assert keys == {f.name for f in dataclasses.fields(spec.settings)}, name


def test_every_registered_implementation_exists():
    from ilmoco.models.bases.base import SSLBase
    from ilmoco.models.terms.base import IntermediateTerm

    for f in FORMATS.values():
        assert callable(load_object(f.reader)) and callable(load_object(f.detect))
        if f.synthetic:
            assert callable(load_object(f.synthetic))
    for b in BASES.values():
        assert issubclass(load_object(b.model), SSLBase), b.name
    for t in TERMS.values():
        assert issubclass(load_object(t.model), IntermediateTerm), t.name
    for family in BACKBONES.values():
        assert callable(load_object(family.builder))


def test_the_import_contracts_hold():
    """`make lint` runs the same check (pyproject.toml, [tool.importlinter])."""
    exe = shutil.which("lint-imports") or str(ROOT / ".venv/bin/lint-imports")
    r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize("package", ["config", "data", "data/formats", "models",
                                     "models/bases", "models/terms", "training",
                                     "evaluation", "stages", "reporting", "cluster"])
def test_package_inits_are_empty(package):
    """The code hash follows package inits: an init that imports would tie every stage to
    its siblings."""
    assert (ROOT / "src/ilmoco" / package / "__init__.py").read_text() == ""


def test_each_rule_runs_the_stage_of_its_name():
    """One stage module per rule, each with one entry point, ``run``."""
    import re

    rules = set()
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", smk.read_text(), re.M))
    for rule in rules - {"all"}:
        name = {"synthetic_data": "synthetic"}.get(rule, rule)
        module = f"ilmoco.stages.{name}"
        assert callable(load_object(f"{module}:run")), rule
        script = ROOT / "workflow/scripts" / f"{name}.py"
        assert f"from {module} import" in script.read_text(), rule
