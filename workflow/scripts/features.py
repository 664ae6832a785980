"""Cache block 1-4 features of a frozen model for probing and CKA."""

from ilmoco.features import run_features
from ilmoco.gpus import claim_gpus
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], threads=snakemake.threads):
    claim_gpus(int(snakemake.resources.get("gpu", 0)))
    run_features(
        snakemake.input.model, snakemake.input.split, snakemake.input.images,
        snakemake.input.index, snakemake.output[0], dataset=snakemake.wildcards.dataset,
        fraction=snakemake.params.fraction, device=snakemake.params.device,
        precision=snakemake.params.precision,
    )
