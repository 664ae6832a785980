"""KS distance between low-label runs and the reference 100 % run."""

from ilmoco.ks import run_ks
from ilmoco.runlog import job_log

with job_log(snakemake.log[0]):
    runs = {tuple(r): (p, m) for r, p, m in zip(
        snakemake.params.runs, snakemake.input.predictions, snakemake.input.metrics)}
    run_ks(dataset=snakemake.wildcards.dataset, runs=runs,
           reference=snakemake.params.reference, out_csv=snakemake.output[0])
