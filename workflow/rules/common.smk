# The run's settings, resolved once; the code version of each script; wildcard constraints.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(workflow.basedir)
SRC = str(REPO / "src")
# The workflow works without `pip install -e .` too: here from src/, in job scripts through
# workflow/scripts/ilmoco (Snakemake puts the scripts' directory on their sys.path).
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from ilmoco import numerics  # noqa: E402
from ilmoco.codehash import code_hash  # noqa: E402
from ilmoco.config.backbones import backbone_ref  # noqa: E402
from ilmoco.config.formats import FORMATS  # noqa: E402
from ilmoco.config.resolve import resolve  # noqa: E402
from ilmoco.config.schema import coerce_to_schema, result_config  # noqa: E402
from ilmoco.config.settings.fields import result_fields  # noqa: E402
from ilmoco.imports import module_of  # noqa: E402
from ilmoco.io import ConfigError  # noqa: E402
from ilmoco.names import RANDOM_INIT, SUPERVISED, pct_name, run_key  # noqa: E402

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def config_error(where, message):
    """Config problems surface at parse time (dry-run included) as one line."""
    raise WorkflowError(f"config error at {where or '<top level>'}: {message}")


def load_settings():
    """Validate the config (schema defaults filled in) and resolve the typed settings."""
    import jsonschema
    import yaml

    coerced = coerce_to_schema(dict(config), yaml.safe_load(SCHEMA.read_text()))
    config.clear()
    config.update(coerced)
    try:
        validate(config, schema=str(SCHEMA))
    except WorkflowError as e:
        cause = e.__cause__ or e.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        where = ".".join(str(p) for p in cause.absolute_path)
        config_error(where, cause.message.splitlines()[0])
    try:
        return resolve(config)
    except ConfigError as e:
        config_error(e.where, str(e).split(": ", 1)[1])


S = load_settings()
# Every job's process inherits the CPU kernels `numerics` pins (set before it imports torch)
numerics.apply(config["numerics"])
DATASETS = list(S.datasets)
METHODS = S.method_names
SSL = S.ssl_methods
ENCODERS = S.encoder_methods  # SSL and those made from weights files (imagenet)
PCTS = [pct_name(p) for p in S.fractions]
SEEDS = list(S.seeds)
HAS_FULL = S.has_full_labels
SYNTHETIC_ROOTS = {ds.root: d for d, ds in S.datasets.items() if ds.synthetic}
SCRIPTS = REPO / "workflow" / "scripts"
ENV = "../../envs/ilmoco.yaml"


def regex_alternatives(values):
    import re

    return "|".join(re.escape(str(v)) for v in values) or "(?!)"


wildcard_constraints:
    dataset=regex_alternatives(DATASETS),
    method=regex_alternatives(METHODS + [RANDOM_INIT]),
    pct=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",


def code(script, *paths):
    """Params value that changes when the script, a library module it imports or an
    implementation its job loads by import path (``module:attribute``: a reader, a base, a
    term, a backbone) changes what it does (comments, docstrings and formatting excluded)."""
    return code_hash(SCRIPTS / script, *dict.fromkeys(module_of(p) for p in paths if p))


def dataset_of(wildcards):
    return S.datasets[wildcards.dataset]


def builder_code(script):
    """``code`` of a job that builds the backbone of its method (``arch_of``): only that
    family's builder, so adding another family reruns nothing."""
    return lambda w: code(script, backbone_ref(S.arch_of(w.method)).builder)


def pretrain_code(wildcards):
    run = S.pretrain_run(wildcards.dataset, wildcards.method)
    return code("pretrain.py", run.base_model, run.term.model, run.backbone.builder)


def split_settings(wildcards):
    """The split's settings; with split lists, the lists and the dataset's on_missing."""
    ds = dataset_of(wildcards)
    out = result_fields(S.split)
    if ds.split_lists:
        out.update(lists=dict(ds.split_lists), on_missing=ds.reader_options["on_missing"])
    return out


def control_init(wildcards):
    """The random-init control's initialisation (the pretraining's starting point)."""
    if wildcards.method != RANDOM_INIT:
        return {}
    return {"seed": S.pretrain.seed, "zero_init_residual": S.control_zero_init_residual}


def init_code(wildcards):
    run = S.init_run(wildcards.dataset, wildcards.method)
    return code("init_encoder.py", run.backbone.builder)
