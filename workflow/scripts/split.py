"""Patient-level split and nested label fractions -> split.csv."""

from ilmoco.runlog import job_log
from ilmoco.stages.split import run

with job_log(snakemake.log[0], stage="split", what=snakemake.wildcards.dataset):
    print(run(manifest=snakemake.input.manifest, meta=snakemake.input.meta,
              settings=snakemake.params.split, fractions=snakemake.params.fractions,
              out_split=snakemake.output.split))
