# Where every result lands, and the input functions that name them.
D = "results/{dataset}"
MANIFEST = f"{D}/data/manifest.csv"
META = f"{D}/data/dataset.json"
SPLIT = f"{D}/data/split.csv"
CACHE_IMAGES = f"{D}/data/cache/images.npy"
CACHE_INDEX = f"{D}/data/cache/index.csv"
ENCODER = f"{D}/pretrain/{{method}}/encoder.pt"
EXPORT = f"{D}/pretrain/{{method}}/encoder.safetensors"
PRETRAIN_METRICS = f"{D}/pretrain/{{method}}/metrics.csv"
FT = f"{D}/finetune/{{method}}/labeled_{{pct}}/seed{{seed}}"
PROBE = f"{D}/probe/{{method}}/probe.csv"
LINEAR_PROBE = f"{D}/probe/{{method}}/linear.csv"
CKA = f"{D}/analysis/cka_{{method}}.csv"
KS = f"{D}/analysis/ks.csv"
PAIRED = f"{D}/analysis/paired.csv"
RESOLVED = "results/resolved_config.yaml"
FIG = "results/figures/{dataset}/{figure}"
BENCH = "benchmarks/{dataset}"
TENSORBOARD = f"{D}/tensorboard"  # event files of the training jobs (not outputs)


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
    out += expand(EXPORT, dataset=d, method=ENCODERS)
    out += expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS, seed=SEEDS)
    out += expand(PROBE, dataset=d, method=S.probe_methods())
    out += expand(LINEAR_PROBE, dataset=d, method=linear_probe_methods())
    out += expand(CKA, dataset=d, method=ENCODERS)
    if HAS_FULL:
        out.append(KS.format(dataset=d))
    if len(METHODS) > 1:
        out.append(PAIRED.format(dataset=d))
    return out


def final_targets():
    out = [RESOLVED] + [t for d in DATASETS for t in dataset_targets(d)]
    return out + report_targets()


def linear_probe_methods():
    """Encoders with an --only-ll linear probe of their own (probe.linear: only_ll)."""
    return S.probe_methods() if S.probe.linear == "only_ll" else []


def encoder_input(wildcards):
    if wildcards.method == SUPERVISED:
        return {}
    return {"encoder": ENCODER.format(dataset=wildcards.dataset, method=wildcards.method)}


def init_input(wildcards):
    """The weights file a method starts from: an input, so a new file reruns its jobs."""
    init = S.init_of(wildcards.method)
    return {"weights": init.weights} if init is not None else {}


def probed_model(wildcards):
    """The probe's encoder: pretrained; for ``supervised`` the model fine-tuned on 100 %;
    none for the random-init control."""
    if wildcards.method == RANDOM_INIT:
        return {}
    if wildcards.method == SUPERVISED:
        return {"model": ft_path("model.pt", dataset=wildcards.dataset, method=SUPERVISED,
                                 pct="100", seed=SEEDS[0])}
    return {"model": ENCODER.format(dataset=wildcards.dataset, method=wildcards.method)}


def split_lists(wildcards):
    """The dataset's published split lists (inputs: editing one reruns the split)."""
    lists = dataset_of(wildcards).split_lists
    return {f"list_{k}": v for k, v in lists.items()} if lists else {}
