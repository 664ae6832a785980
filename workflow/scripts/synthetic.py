"""Generate a synthetic dataset in its real on-disk layout."""

from ilmoco.runlog import job_log
from ilmoco.stages.synthetic import run

with job_log(snakemake.log[0], stage="synthetic_data", what=snakemake.output[0]):
    run(generator=snakemake.params.generator, root=snakemake.output[0],
        options=snakemake.params.options)
