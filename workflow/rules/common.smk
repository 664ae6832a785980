import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(workflow.basedir)
if str(REPO / "src") not in sys.path:  # works without `pip install -e .` too
    sys.path.insert(0, str(REPO / "src"))

from ilmoco.codehash import code_hash  # noqa: E402
from ilmoco.config import SSL_METHODS, dataset_settings, pct_name  # noqa: E402


def config_error(where, message):
    """Config problems surface at parse time (dry-run included) as one line."""
    raise WorkflowError(f"config error at {where or '<top level>'}: {message}")


def validate_config():
    try:
        validate(config, schema="../schemas/config.schema.yaml")
    except WorkflowError as e:
        import jsonschema

        cause = e.__cause__ or e.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        where = ".".join(str(p) for p in cause.absolute_path)
        config_error(where, cause.message.splitlines()[0])
    unknown = [d for d in config["use_datasets"] if d not in config["datasets"]]
    if unknown:
        config_error("use_datasets", f"{unknown} not defined under `datasets` "
                     f"(defined: {sorted(config['datasets'])})")
    if config["probe"]["fraction"] not in config["fractions"]:
        config_error("probe.fraction", f"{config['probe']['fraction']} is not one of "
                     f"`fractions` {config['fractions']}")
    pre = config["pretrain"]
    if pre["moco"]["bn"] == "split" and pre["batch_size"] % pre["moco"]["bn_splits"]:
        config_error("pretrain.moco.bn_splits", f"{pre['moco']['bn_splits']} does not divide "
                     f"pretrain.batch_size {pre['batch_size']}")
    if pre["moco"]["queue_size"] < pre["batch_size"]:
        config_error("pretrain.moco.queue_size", "must be at least pretrain.batch_size")
    if sum(config["split"]["ratios"]) <= 0:
        config_error("split.ratios", "must sum to a positive number")


validate_config()

DATASETS = list(config["use_datasets"])
METHODS = list(config["methods"])
SSL = [m for m in METHODS if m in SSL_METHODS]
PCTS = [pct_name(p) for p in config["fractions"]]
SEEDS = [int(s) for s in config["seeds"]]
HAS_FULL = "100" in PCTS
SETTINGS = {d: dataset_settings(config, d) for d in DATASETS}
SYNTHETIC_ROOTS = {SETTINGS[d]["root"]: d for d in DATASETS if SETTINGS[d].get("synthetic")}
SCRIPTS = REPO / "workflow" / "scripts"
ENV = "../../envs/ilmoco.yaml"


def regex_alternatives(values):
    import re

    return "|".join(re.escape(str(v)) for v in values) or "(?!)"


wildcard_constraints:
    dataset=regex_alternatives(DATASETS),
    method=regex_alternatives(["supervised", "moco", "moco_mse", "moco_bt"]),
    pct=r"[0-9]+(\.[0-9]+)?",
    seed=r"[0-9]+",


def code(script):
    """Params value that changes when the script or any library module it imports does."""
    return code_hash(SCRIPTS / script)


def ds(wildcards):
    return SETTINGS[wildcards.dataset]


def pretrain_cfg(wildcards):
    """The pretrain section with this dataset's overrides (MSE pooling) applied."""
    import copy

    cfg = copy.deepcopy(config["pretrain"])
    if SETTINGS[wildcards.dataset].get("mse_pool"):
        cfg["mse"]["pool"] = list(SETTINGS[wildcards.dataset]["mse_pool"])
    return cfg


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
FEATURES = f"{D}/probe/{{method}}/features.npz"
PROBE = f"{D}/probe/{{method}}/probe.csv"
CKA = f"{D}/analysis/cka_{{method}}.csv"
KS = f"{D}/analysis/ks.csv"


def dataset_targets(d):
    out = [SPLIT.format(dataset=d)]
    out += expand(PRETRAIN_METRICS, dataset=d, method=SSL)
    out += expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS, seed=SEEDS)
    out += expand(PROBE, dataset=d, method=probe_methods())
    out += expand(CKA, dataset=d, method=SSL)
    if HAS_FULL:
        out.append(KS.format(dataset=d))
    return out


def probe_methods():
    extra = ["supervised"] if (config["probe"]["include_supervised"] and HAS_FULL
                               and "supervised" in METHODS) else []
    return SSL + extra


def final_targets():
    out = [t for d in DATASETS for t in dataset_targets(d)]
    return out + report_targets()


def encoder_input(wildcards):
    if wildcards.method == "supervised":
        return []
    return ENCODER.format(dataset=wildcards.dataset, method=wildcards.method)


def frozen_model(wildcards):
    """Probe the pretrained encoder; for `supervised`, the model fine-tuned on 100 %."""
    if wildcards.method == "supervised":
        return (f"{FT}/model.pt").format(dataset=wildcards.dataset, method="supervised",
                                         pct="100", seed=SEEDS[0])
    return encoder_input(wildcards)


TABLES = ["finetune", "linear_probe", "layer_probe", "feature_reuse", "ks_distance"]
FIGURES = ["finetune", "feature_reuse", "layer_probe", "ks_cdf", "pretrain_loss"]
FIG = "results/figures/{dataset}/{figure}"


def report_targets():
    out = expand("results/tables/{table}.{ext}", table=TABLES, ext=["csv", "md", "tex"])
    return out + expand(f"{FIG}.{{ext}}", dataset=DATASETS, figure=FIGURES, ext=["png", "pdf"])


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


# Conservative MoCo pairs (or fine-tuning images) per second of one datacentre GPU at 224 px.
GPU_THROUGHPUT = {"resnet18": 2000, "resnet34": 1200, "resnet50": 700}


def gpu_runtime(stage):
    """SLURM runtime request (minutes) from the config's epochs, the architecture and the
    cache's size and resolution; doubled on each retry. Profiles may override it."""

    def runtime(wildcards, input, attempt):
        import numpy as np

        cfg = config[stage]
        try:
            shape = np.load(input.images, mmap_mode="r").shape
        except (OSError, ValueError):  # cache not built yet (dry-run): ask for a day
            return 24 * 60 * attempt
        per_second = GPU_THROUGHPUT[cfg["arch"]] * (224 / shape[-1]) ** 2
        work = shape[0] * 0.7 * cfg["epochs"] * (1.0 if stage == "pretrain" else 1.5)
        return int(15 + 1.5 * work / per_second / 60) * attempt

    return runtime
