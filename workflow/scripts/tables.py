"""Render every result table (CSV, Markdown, LaTeX) from the per-dataset results."""

from pathlib import Path

from ilmoco.runlog import job_log
from ilmoco.tables import build_all

inp, view = snakemake.input, snakemake.params.presentation
with job_log(snakemake.log[0], stage="tables"):
    build_all(finetune_metrics=inp.finetune, probes=inp.probes, ckas=inp.ckas, kss=inp.kss,
              paireds=inp.paireds, out_dir=Path(snakemake.output.finetune_csv).parent,
              order=view["order"], display=view["display"], level=view["level"],
              supervised_from_finetune=view["supervised_from_finetune"],
              paper_datasets=view["paper_datasets"])
