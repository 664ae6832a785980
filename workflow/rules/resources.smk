# Cluster resources: runtime requests from a model of each job's work and the throughput
# table (ilmoco.cluster.resources), and at most one GPU job per GPU on one machine.
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


SITE = load_site()
THROUGHPUT = res.load_table(throughput_path(SITE))


def dataset_size(wildcards, input):
    """Images per split of a dataset: from its cache, else its manifest, else the public
    dataset's size (dry-runs before the data stage)."""
    ds = S.datasets[wildcards.dataset]
    n = res.image_count(input.get("images"), MANIFEST.format(dataset=wildcards.dataset),
                        ds.public_images)
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


def gpu_runtime(stage):
    """SLURM runtime request (minutes) of a GPU stage: modelled work / measured throughput,
    doubled on each retry, capped at the site's max_runtime (see ilmoco.cluster.resources)."""

    def runtime(wildcards, input, attempt):
        n, size = dataset_size(wildcards, input)
        secs = res.seconds(work_model(stage, wildcards, n), stage, size, THROUGHPUT)
        return res.runtime_minutes(secs, THROUGHPUT, attempt, SITE["max_runtime"])

    return runtime


def cache_runtime(wildcards, input, threads, attempt):
    """SLURM runtime request (minutes) of the cache job: its images at the decode cost the
    headers of a sample of them predict (format, pixels), doubled on each retry."""
    ds = S.datasets[wildcards.dataset]
    return res.cache_request(input.manifest, ds.root, ds.public_images, threads,
                             ds.image_size, THROUGHPUT, attempt, SITE["max_runtime"])
