import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(workflow.basedir)
SRC = str(REPO / "src")
if SRC not in sys.path:  # works without `pip install -e .` too
    sys.path.insert(0, SRC)
# Job processes (also in a conda env, which has only the third-party packages) import the
# library from this checkout.
if SRC not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH"))
                                               if p)

from ilmoco.codehash import code_hash  # noqa: E402
from ilmoco.gpus import local_gpu_count  # noqa: E402
from ilmoco.io import ConfigError  # noqa: E402
from ilmoco.registry import FIGURES, RANDOM_INIT, SUPERVISED, TABLES, run_key  # noqa: E402
from ilmoco.settings import coerce_to_schema, resolve, result_fields  # noqa: E402
from ilmoco.split import pct_name  # noqa: E402

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
DATASETS = list(S.datasets)
METHODS = S.method_names
SSL = S.ssl_methods
PCTS = [pct_name(p) for p in S.fractions]
SEEDS = list(S.seeds)
HAS_FULL = S.has_full_labels
SYNTHETIC_ROOTS = {ds.root: d for d, ds in S.datasets.items() if ds.synthetic}
SCRIPTS = REPO / "workflow" / "scripts"
ENV = "../../envs/ilmoco.yaml"


def limit_gpu_jobs():
    """On one machine (no cluster executor), never run more GPU jobs at once than there are
    GPUs, unless the user set the limit (--resources gpu=N)."""
    local = workflow.resource_settings.nodes is None
    if local and "gpu" not in workflow.global_resources:
        n = local_gpu_count()
        if n > 0:
            workflow.register_resource("gpu", n)


limit_gpu_jobs()


def regex_alternatives(values):
    import re

    return "|".join(re.escape(str(v)) for v in values) or "(?!)"


wildcard_constraints:
    dataset=regex_alternatives(DATASETS),
    method=regex_alternatives(METHODS + [RANDOM_INIT]),
    pct=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",


def code(script):
    """Params value that changes when the script or a library module it imports changes
    what it does (comments, docstrings and formatting excluded)."""
    return code_hash(SCRIPTS / script)


# ----------------------------------------------------------------- paths
D = "results/{dataset}"
MANIFEST = f"{D}/data/manifest.csv"
META = f"{D}/data/dataset.json"
SPLIT = f"{D}/data/split.csv"
CACHE_IMAGES = f"{D}/data/cache/images.npy"
CACHE_INDEX = f"{D}/data/cache/index.csv"
ENCODER = f"{D}/pretrain/{{method}}/encoder.pt"
PRETRAIN_METRICS = f"{D}/pretrain/{{method}}/metrics.csv"
FT = f"{D}/finetune/{{method}}/labeled_{{pct}}/seed{{seed}}"
PROBE = f"{D}/probe/{{method}}/probe.csv"
CKA = f"{D}/analysis/cka_{{method}}.csv"
KS = f"{D}/analysis/ks.csv"
PAIRED = f"{D}/analysis/paired.csv"
RESOLVED = "results/resolved_config.yaml"
FIG = "results/figures/{dataset}/{figure}"
BENCH = "benchmarks/{dataset}"


def ds(wildcards):
    return S.datasets[wildcards.dataset]


def ft_path(name, **w):
    return (f"{FT}/{name}").format(**w)


RUN_FILES = {"predictions": "predictions.csv", "metrics": "metrics.json", "model": "model.pt"}


def runs(dataset, kinds, methods=None, pcts=None):
    """Named inputs ``<kind>:<method>:<pct>:<seed>`` of one dataset's fine-tuning runs."""
    out = {}
    for m in methods if methods is not None else METHODS:
        for p in pcts if pcts is not None else PCTS:
            for s in SEEDS:
                for kind in kinds:
                    out[run_key(kind, m, p, s)] = ft_path(RUN_FILES[kind], dataset=dataset,
                                                          method=m, pct=p, seed=s)
    return out


def dataset_targets(d):
    out = [SPLIT.format(dataset=d)]
    out += expand(PRETRAIN_METRICS, dataset=d, method=SSL)
    out += expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS, seed=SEEDS)
    out += expand(PROBE, dataset=d, method=S.probe_methods())
    out += expand(CKA, dataset=d, method=SSL)
    if HAS_FULL:
        out.append(KS.format(dataset=d))
    if len(METHODS) > 1:
        out.append(PAIRED.format(dataset=d))
    return out


def final_targets():
    out = [RESOLVED] + [t for d in DATASETS for t in dataset_targets(d)]
    return out + report_targets()


def encoder_input(wildcards):
    if wildcards.method == SUPERVISED:
        return {}
    return {"encoder": ENCODER.format(dataset=wildcards.dataset, method=wildcards.method)}


def probed_model(wildcards):
    """The probe's encoder: pretrained; for ``supervised`` the model fine-tuned on 100 %;
    none for the random-init control."""
    if wildcards.method == RANDOM_INIT:
        return {}
    if wildcards.method == SUPERVISED:
        return {"model": ft_path("model.pt", dataset=wildcards.dataset, method=SUPERVISED,
                                 pct="100", seed=SEEDS[0])}
    return {"model": ENCODER.format(dataset=wildcards.dataset, method=wildcards.method)}


def report_targets():
    out = expand("results/tables/{table}.{ext}", table=list(TABLES), ext=["csv", "md", "tex"])
    return out + expand(f"{FIG}.{{ext}}", dataset=DATASETS, figure=figures(), ext=["png", "pdf"])


def figures():
    """The per-dataset figures this run produces."""
    return [f for f in FIGURES if (f != "ks_cdf" or HAS_FULL)
            and (f != "paired_difference" or len(METHODS) > 1)]


def table_output(name, ext):
    path = f"results/tables/{name}.{ext}"
    if ext != "csv":
        return path
    return report(path, caption=f"../report/table_{name}.rst", category="Tables",
                  labels={"table": name})


def figure_output(name, ext):
    path = FIG.replace("{figure}", name) + f".{ext}"
    if ext != "png":
        return path
    return report(path, caption=f"../report/fig_{name}.rst", category="{dataset}",
                  subcategory=name.replace("_", " "), labels={"dataset": "{dataset}",
                                                              "figure": name})
