"""Write the run's complete configuration (schema defaults filled in)."""

from ilmoco.runlog import job_log
from ilmoco.stages.resolved_config import run

with job_log(snakemake.log[0], stage="resolved_config"):
    run(config=snakemake.params.config, out=snakemake.output[0])
