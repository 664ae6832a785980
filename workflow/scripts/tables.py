"""Render the five result tables (CSV, Markdown, LaTeX)."""

from pathlib import Path

from ilmoco.runlog import job_log
from ilmoco.tables import build_all

with job_log(snakemake.log[0]):
    build_all(finetune_metrics=snakemake.input.finetune, probes=snakemake.input.probes,
              ckas=snakemake.input.ckas, kss=snakemake.input.kss,
              out_dir=Path(snakemake.output.finetune_csv).parent)
