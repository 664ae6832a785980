"""Generate a synthetic dataset in its real on-disk layout."""

from ilmoco.runlog import job_log
from ilmoco.synthetic import generate

with job_log(snakemake.log[0], stage="synthetic_data", what=snakemake.output[0]):
    generate(snakemake.params.fmt, snakemake.output[0], **snakemake.params.options)
