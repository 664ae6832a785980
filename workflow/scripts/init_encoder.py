"""The encoder of a method that starts from a weights file (imagenet), without training."""

from ilmoco.config.settings.fields import digest
from ilmoco.runlog import job_log
from ilmoco.stages.init_encoder import InitJob, run

w, inp, params = snakemake.wildcards, snakemake.input, snakemake.params
with job_log(snakemake.log[0], threads=snakemake.threads, stage="init_encoder",
             what=f"{w.dataset}/{w.method}", settings_digest=digest(params.run)):
    run(InitJob(run=params.run, cache_images=inp.images, cache_index=inp.index,
                out_encoder=snakemake.output.encoder))
