"""Each method's difference to the baseline method on the same resampled test patients."""

from ilmoco.names import runs_by_key
from ilmoco.runlog import job_log
from ilmoco.stages.paired import run

with job_log(snakemake.log[0], stage="paired", what=snakemake.wildcards.dataset):
    df = run(dataset=snakemake.wildcards.dataset,
             runs=runs_by_key(snakemake.input.items(), "predictions", "metrics"),
             baseline=snakemake.params.baseline, bootstrap=snakemake.params.bootstrap,
             out_csv=snakemake.output[0])
    print(df.to_string(index=False) if len(df) else "no method besides the baseline")
