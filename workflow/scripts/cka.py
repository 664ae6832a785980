"""Feature reuse: CKA between the pretrained encoder and each model fine-tuned from it."""

from ilmoco.cluster.gpus import claim_gpus, requested_gpus
from ilmoco.config.settings.fields import digest
from ilmoco.names import runs_by_key
from ilmoco.runlog import job_log
from ilmoco.stages.cka import CKAJob, run

w, inp, params = snakemake.wildcards, snakemake.input, snakemake.params
with job_log(snakemake.log[0], threads=snakemake.threads, stage="cka",
             what=f"{w.dataset}/{w.method}", settings_digest=digest(params.run)):
    claim_gpus(requested_gpus(snakemake.resources))
    models = runs_by_key(inp.items(), "model")
    run(CKAJob(
        dataset=w.dataset, method=w.method, run=params.run, encoder=inp.encoder,
        finetuned={(pct, seed): paths[0] for (_, pct, seed), paths in models.items()},
        split_csv=inp.split, cache_images=inp.images, cache_index=inp.index,
        out_csv=snakemake.output[0],
    ))
