"""Render one dataset's figures (PNG + PDF) from its own analysis outputs."""

from ilmoco.runlog import job_log
from ilmoco.stages.figures import run

d = snakemake.wildcards.dataset
with job_log(snakemake.log[0], stage="figures", what=d):
    run(dataset=d, inputs=dict(snakemake.input.items()),
        presentation=snakemake.params.presentation, outputs=dict(snakemake.output.items()))
