# Cluster resources: runtime requests from a model of each job's work and the throughput
# table (ilmoco.cluster.resources), the groups of short GPU jobs that share one allocation
# (ilmoco.cluster.groups), and at most one GPU job per GPU on one machine.
import functools  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import immutables  # noqa: E402

from ilmoco.cluster import groups as clustering  # noqa: E402
from ilmoco.cluster import resources as res  # noqa: E402
from ilmoco.cluster.gpus import local_gpu_count  # noqa: E402
from ilmoco.cluster.site import load_site, throughput_path  # noqa: E402


def limit_gpu_jobs():
    """On one machine (no cluster executor), never run more GPU jobs at once than there are
    GPUs, unless the user set the limit (--resources gpu=N)."""
    local = workflow.resource_settings.nodes is None
    if local and "gpu" not in workflow.global_resources:
        n = local_gpu_count()
        if n > 0:
            workflow.register_resource("gpu", n)


limit_gpu_jobs()


def one_gpu_job_per_allocation():
    """Inside a cluster job (Snakemake's remote and subprocess modes, which run a group's
    members), at most one GPU job at a time: the group was sized for that (the profile's
    gpu_jobs=1, per allocation), and the step it starts asks for one job's CPUs and GPUs."""
    if not workflow.is_main_process and "gpu_jobs" not in workflow.global_resources:
        workflow.register_resource("gpu_jobs", 1)


one_gpu_job_per_allocation()


def leave_the_warning_to_the_job():
    """SLURM's warning before a time limit (--signal=USR1@<s>) reaches every process of the
    job's step: this Snakemake ignores it, so that it does not die (USR1's default) while
    the training script checkpoints at its next step (ilmoco.training.loop)."""
    if not workflow.is_main_process:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)


leave_the_warning_to_the_job()


SITE = load_site()
THROUGHPUT = res.load_table(throughput_path(SITE))


def _stamp(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def dataset_size(dataset):
    """Images per split of a dataset: from its cache, else its manifest, else the public
    dataset's size (dry-runs before the data stage). Read once per state of those files:
    every GPU job's request and the grouping ask for it (a manifest of 10^5 lines each time)."""
    images, manifest = CACHE_IMAGES.format(dataset=dataset), MANIFEST.format(dataset=dataset)
    return _dataset_size(dataset, images, manifest, _stamp(images), _stamp(manifest))


@functools.cache
def _dataset_size(dataset, images, manifest, *stamps):
    ds = S.datasets[dataset]
    n = res.image_count(images, manifest, ds.public_images)
    return res.split_counts(n, S.split.ratios), ds.image_size


def work_model(stage, wildcards, n):
    if stage == "pretrain":
        run = S.pretrain_run(wildcards.dataset, wildcards.method)
        return res.pretrain_work(n, run.settings, run.base)
    if stage == "finetune":
        pct = float(wildcards.pct)
        return res.finetune_work(n, S.finetune_run(wildcards.dataset, wildcards.method,
                                                   pct).settings, pct)
    if stage == "probe":
        r = S.probe_run(wildcards.dataset, wildcards.method)
        epochs = r.settings.epochs if r.settings.protocol == "official" else 0
        return res.probe_work(n, S.probe.fraction, r.arch, epochs)
    if stage == "linear_probe":
        r = S.linear_probe_run(wildcards.dataset, wildcards.method)
        return res.linear_probe_work(n, r.settings, S.probe.fraction, r.arch)
    return res.cka_work(n, len(PCTS) * len(SEEDS), S.cka.subset, S.cka.repeats,
                        S.arch_of(wildcards.method))


def runtime_request(stage, wildcards, attempt=1):
    """SLURM runtime request (minutes) of a GPU job: modelled work / measured throughput,
    doubled on each retry, capped at the site's max_runtime (see ilmoco.cluster.resources)."""
    n, size = dataset_size(wildcards.dataset)
    secs = res.seconds(work_model(stage, wildcards, n), stage, size, THROUGHPUT)
    return res.runtime_minutes(secs, THROUGHPUT, attempt, SITE["max_runtime"])


def gpu_runtime(stage):
    return lambda wildcards, attempt: runtime_request(stage, wildcards, attempt)


def first_request(stage, **wildcards):
    """The runtime a job asks for on its first attempt: the site's replacement of every
    job's (its `resources`), else the model's."""
    return SITE["resources"].get("runtime") or runtime_request(stage,
                                                               SimpleNamespace(**wildcards))


def gpu_members(dataset, method):
    """The GPU jobs of one dataset and method that may share an allocation, each after the
    jobs it depends on: ``((rule, wildcards), minutes)``."""
    jobs = []
    if method in METHODS:
        jobs += [("finetune", {"pct": p, "seed": str(s)}) for p in PCTS for s in SEEDS]
    if method in S.probe_methods():
        jobs.append(("probe", {}))
    if method in linear_probe_methods():
        jobs.append(("linear_probe", {}))
    if method in ENCODERS:
        jobs.append(("cka", {}))  # after its fine-tunings
    out = []
    for rule, w in jobs:
        w = {"dataset": dataset, "method": method, **w}
        out.append(((rule, *sorted(w.items())), first_request(rule, **w)))
    return out


@functools.cache
def group_cap():
    """Minutes a group may request: the site's group_minutes, else the longest single GPU
    job's request (on the first attempt); at most half the site's max_runtime, so that a
    retried group (twice the runtime) still fits the partition."""
    if SITE["group_minutes"]:
        cap = SITE["group_minutes"]
    else:
        pre = [first_request("pretrain", dataset=d, method=m) for d in DATASETS for m in SSL]
        cap = max(pre + [t for d in DATASETS for m in grouped_methods()
                         for _, t in gpu_members(d, m)], default=0)
    return min(cap, SITE["max_runtime"] / 2) if SITE["max_runtime"] else cap


def grouped_methods():
    return list(dict.fromkeys([*METHODS, *S.probe_methods(), *ENCODERS]))


@functools.cache
def gpu_groups(dataset):
    """(rule, wildcards) -> group id of the short GPU jobs of one dataset, packed method by
    method (a group waits for the pretrainings of the methods it holds)."""
    members = [m for method in grouped_methods() for m in gpu_members(dataset, method)]
    return clustering.pack(members, group_cap(), dataset)


def span_group(groupid, size):
    """Let Snakemake merge the ``size`` disconnected jobs of ``groupid`` into one group job
    (its --group-components; a user's own value for the id is kept)."""
    gs = workflow.group_settings
    if groupid not in gs.group_components:
        gs.group_components = immutables.Map({**gs.group_components, groupid: size})


def gpu_group(rule):
    """The rule's ``group:``: its job's group id, or None (ungrouped; grouping: false)."""

    def group(wildcards):
        # only for a cluster executor (--jobs given: remote nodes); a local run ignores
        # groups, and its dry run then shows none either
        if not SITE["grouping"] or workflow.resource_settings.nodes is None:
            return None
        key = (rule, *sorted((k, v) for k, v in wildcards.items()))
        groups = gpu_groups(wildcards.dataset)
        groupid = groups.get(key)
        if groupid is not None:
            span_group(groupid, list(groups.values()).count(groupid))
        return groupid

    return group


def cache_runtime(wildcards, input, threads, attempt):
    """SLURM runtime request (minutes) of the cache job: its images at the decode cost the
    headers of a sample of them predict (format, pixels), doubled on each retry."""
    ds = S.datasets[wildcards.dataset]
    return res.cache_request(input.manifest, ds.root, ds.public_images, threads,
                             ds.image_size, THROUGHPUT, attempt, SITE["max_runtime"])
