"""KS distance between low-label runs and the reference 100 % run."""

from ilmoco.names import runs_by_key
from ilmoco.runlog import job_log
from ilmoco.stages.ks import run

with job_log(snakemake.log[0], stage="ks", what=snakemake.wildcards.dataset):
    run(dataset=snakemake.wildcards.dataset,
        runs=runs_by_key(snakemake.input.items(), "predictions", "selection"),
        reference=snakemake.params.reference, out_csv=snakemake.output[0])
