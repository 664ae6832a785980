"""Refresh the README's demo section from the DAG's own outputs (nothing typed by hand)."""

from ilmoco.runlog import job_log
from ilmoco.stages.readme import run

with job_log(snakemake.log[0], stage="readme"):
    run(inputs=dict(snakemake.input.items()), presentation=snakemake.params.presentation,
        out_figure=snakemake.output.figure, out_summary=snakemake.output.summary,
        out_values=snakemake.output.values,
        settings=snakemake.params.settings)
