"""Refresh the README's demo section from the DAG's own outputs (nothing pasted by hand)."""

import shutil
from pathlib import Path

from ilmoco.io import write_text
from ilmoco.runlog import job_log

START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"

with job_log(snakemake.log[0]):
    shutil.copyfile(snakemake.input.figure, snakemake.output.figure)
    table = Path(snakemake.input.table).read_text()
    write_text(snakemake.output.table, table)
    readme = Path(snakemake.input.readme)
    text = readme.read_text()
    if START not in text or END not in text:
        raise KeyError(f"{readme}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    block = f"{START}\n![fine-tuning, NIH synthetic]({snakemake.output.figure})\n\n{table}{END}"
    write_text(readme, head + block + tail)
