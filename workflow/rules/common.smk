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

from ilmoco import resources as res  # noqa: E402
from ilmoco.codehash import code_hash  # noqa: E402
from ilmoco.datasets.formats import READER_MODULES  # noqa: E402
from ilmoco.gpus import local_gpu_count  # noqa: E402
from ilmoco.io import ConfigError  # noqa: E402
from ilmoco.registry import (  # noqa: E402
    FIGURES,
    RANDOM_INIT,
    SUPERVISED,
    TABLES,
    pct_name,
    run_key,
)
from ilmoco.settings import (  # noqa: E402
    coerce_to_schema,
    resolve,
    result_config,
    result_fields,
)
from ilmoco.site import load_site, throughput_path  # noqa: E402

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


SITE = load_site()
THROUGHPUT = res.load_table(throughput_path(SITE))


def dataset_size(wildcards, input):
    """Images per split of a dataset: from its cache, else its manifest, else the public
    dataset's size (dry-runs before the data stage)."""
    ds = S.datasets[wildcards.dataset]
    n = res.image_count(input.get("images"), MANIFEST.format(dataset=wildcards.dataset),
                        ds.format)
    return res.split_counts(n, S.split.ratios), ds.image_size


def work_model(stage, wildcards, n):
    if stage == "pretrain":
        return res.pretrain_work(n, S.pretrain, S.method(wildcards.method).base)
    if stage == "finetune":
        return res.finetune_work(n, S.finetune, float(wildcards.pct))
    if stage == "probe":
        arch = S.finetune.arch if wildcards.method == SUPERVISED else S.pretrain.arch
        return res.probe_work(n, S.probe.fraction, arch)
    return res.cka_work(n, len(PCTS) * len(SEEDS), S.cka.subset, S.cka.repeats,
                        S.pretrain.arch)


def gpu_runtime(stage):
    """SLURM runtime request (minutes) of a GPU stage: modelled work / measured throughput,
    doubled on each retry, capped at the site's max_runtime (see ilmoco.resources)."""

    def runtime(wildcards, input, attempt):
        n, size = dataset_size(wildcards, input)
        secs = res.seconds(work_model(stage, wildcards, n), stage, size, THROUGHPUT)
        return res.runtime_minutes(secs, THROUGHPUT, attempt, SITE["max_runtime"])

    return runtime


def cache_runtime(wildcards, input, threads, attempt):
    n = res.image_count(None, input.manifest, S.datasets[wildcards.dataset].format)
    return res.cache_minutes(n, threads, THROUGHPUT, attempt, SITE["max_runtime"])


def regex_alternatives(values):
    import re

    return "|".join(re.escape(str(v)) for v in values) or "(?!)"


wildcard_constraints:
    dataset=regex_alternatives(DATASETS),
    method=regex_alternatives(METHODS + [RANDOM_INIT]),
    pct=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",


def code(script, *modules):
    """Params value that changes when the script or a library module it imports changes
    what it does (comments, docstrings and formatting excluded)."""
    return code_hash(SCRIPTS / script, *modules)


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


def dataset_of(wildcards):
    return S.datasets[wildcards.dataset]


def reader_module(wildcards):
    """The library module that reads this dataset's format (imported on demand)."""
    return f"ilmoco.datasets.{READER_MODULES[dataset_of(wildcards).format]}"


def ft_path(name, **w):
    return (f"{FT}/{name}").format(**w)


RUN_FILES = {"predictions": "predictions.csv", "selection": "selection.json",
             "metrics": "metrics.json", "model": "model.pt"}


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


def ablation(name):
    """With variants configured, the paired comparisons form the report's Ablations."""
    return name == "paired_difference" and bool(config.get("variants"))


def table_output(name, ext):
    path = f"results/tables/{name}.{ext}"
    if ext != "csv":
        return path
    return report(path, caption=f"../report/table_{name}.rst",
                  category="Ablations" if ablation(name) else "Tables", labels={"table": name})


def figure_output(name, ext):
    path = FIG.replace("{figure}", name) + f".{ext}"
    if ext != "png":
        return path
    return report(path, caption=f"../report/fig_{name}.rst",
                  category="Ablations" if ablation(name) else "{dataset}",
                  subcategory="{dataset}" if ablation(name) else name.replace("_", " "),
                  labels={"dataset": "{dataset}", "figure": name})


# ----------------------------------------------------------------- report inputs
def table_inputs(wildcards):
    d = DATASETS
    return {
        "finetune": expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS,
                           seed=SEEDS),
        "probes": expand(PROBE, dataset=d, method=S.probe_methods()),
        "ckas": expand(CKA, dataset=d, method=SSL),
        "kss": expand(KS, dataset=d) if HAS_FULL else [],
        "paireds": expand(PAIRED, dataset=d) if len(METHODS) > 1 else [],
    }


def presentation():
    """How tables and figures show the run: method order and display names, interval level."""
    from ilmoco.paper import paper_dataset

    return {
        "order": METHODS + [RANDOM_INIT],
        "display": S.display_names,
        "datasets": {d: ds.display for d, ds in S.datasets.items()},
        "level": S.bootstrap.level,
        "supervised_from_finetune": S.probe.supervised_reference == "finetune",
        "paper_datasets": {d: paper_dataset(ds.format, bool(ds.synthetic))
                           for d, ds in S.datasets.items()},
        "queue_size": S.pretrain.moco.queue_size,
    }


def figure_inputs(wildcards):
    d = wildcards.dataset
    out = {
        "metrics": expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS,
                          seed=SEEDS),
        "probes": expand(PROBE, dataset=d, method=S.probe_methods()),
        "ckas": expand(CKA, dataset=d, method=SSL),
        **{f"pretrain:{m}": PRETRAIN_METRICS.format(dataset=d, method=m) for m in SSL},
        **runs(d, ["predictions"]),
    }
    if HAS_FULL:
        out["ks"] = KS.format(dataset=d)
    if len(METHODS) > 1:
        out["paired"] = PAIRED.format(dataset=d)
    return out
