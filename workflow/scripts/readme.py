"""Refresh the README's demo section from the DAG's own outputs (nothing typed by hand)."""

import shutil
from pathlib import Path

import pandas as pd

from ilmoco.io import write_text
from ilmoco.runlog import job_log
from ilmoco.summary import demo_markdown, pretraining_rows

START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
inp, out, view = snakemake.input, snakemake.output, snakemake.params.presentation

with job_log(snakemake.log[0], stage="readme"):
    shutil.copyfile(inp.figure, out.figure)
    curves = {tuple(key.split(":")[1:]): pd.read_csv(path) for key, path in inp.items()
              if key.startswith("pretrain:")}
    rows = pretraining_rows(curves, view["queue_size"], pd.read_csv(inp.layer))
    paired = pd.read_csv(inp.paired)
    text = demo_markdown(figure=out.figure, finetune_md=Path(inp.finetune).read_text(),
                         rows=rows, paired=paired, display=view["display"],
                         datasets=view["datasets"], level=view["level"])
    write_text(out.summary, text)
    readme = Path(inp.readme)
    old = readme.read_text()
    if START not in old or END not in old:
        raise ValueError(f"{readme}: markers {START} / {END} not found")
    head, rest = old.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text(readme, f"{head}{START}\n{text}{END}{tail}")
