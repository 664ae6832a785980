"""Render every result table (CSV, Markdown, LaTeX) from the per-dataset results."""

from pathlib import Path

from ilmoco.runlog import job_log
from ilmoco.stages.tables import run

inp = snakemake.input
with job_log(snakemake.log[0], stage="tables"):
    run(finetune=inp.finetune, probes=inp.probes, linear=inp.linear, ckas=inp.ckas, kss=inp.kss,
        paireds=inp.paireds, presentation=snakemake.params.presentation,
        out_dir=Path(snakemake.output.finetune_csv).parent)
