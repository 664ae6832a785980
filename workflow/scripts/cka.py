"""Feature reuse: CKA between the pretrained encoder and each fine-tuned model."""

from ilmoco.feature_reuse import run_cka
from ilmoco.gpus import claim_gpus
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], threads=snakemake.threads):
    claim_gpus(int(snakemake.resources.get("gpu", 0)))
    run_cka(
        dataset=snakemake.wildcards.dataset, method=snakemake.wildcards.method,
        pretrained_features=snakemake.input.features,
        finetuned=dict(zip(map(tuple, snakemake.params.runs), snakemake.input.models)),
        cache_images=snakemake.input.images, cache_index=snakemake.input.index,
        cfg=snakemake.params.cfg, out_csv=snakemake.output[0],
        device=snakemake.params.device, precision=snakemake.params.precision,
    )
