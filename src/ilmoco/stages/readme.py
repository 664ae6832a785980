"""The ``readme`` stage: the README's demo section refreshed from the DAG's own outputs
(nothing typed by hand)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from ilmoco.io import write_csv, write_text
from ilmoco.reporting import digest
from ilmoco.reporting.seeds import read_table as read_seed_table
from ilmoco.reporting.seeds import seed_summary, ssl_over_supervised
from ilmoco.reporting.summary import demo_markdown, pretraining_rows

START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"


def run(*, inputs, presentation: dict, out_figure, out_summary, out_values=None,
        settings: str = "") -> None:
    """``inputs``: the rule's named files (``figure``, ``finetune``, ``paired``, ``layer``,
    ``pretrain:<dataset>:<method>``, ``table:<name>``, ``readme``, and ``seeds``, the
    seed-variance benchmark's table, where one is recorded); ``settings``: this run's
    settings digest, which the table must carry to speak for it; ``out_values``: the digest
    of every printed result value (:mod:`ilmoco.reporting.digest`)."""
    inp, view = inputs, presentation
    summary, facts, wins = None, None, None
    if inp.get("seeds"):
        table, facts = read_seed_table(inp["seeds"])
        summary, wins = seed_summary(table), ssl_over_supervised(table)
    shutil.copyfile(inp["figure"], out_figure)
    curves = {tuple(key.split(":")[1:]): pd.read_csv(path) for key, path in inp.items()
              if key.startswith("pretrain:")}
    rows = pretraining_rows(curves, view["chance"], pd.read_csv(inp["layer"]))
    paired = pd.read_csv(inp["paired"])
    text = demo_markdown(figure=out_figure, finetune_md=Path(inp["finetune"]).read_text(),
                         rows=rows, paired=paired, display=view["display"],
                         datasets=view["datasets"], level=view["level"], seeds=summary,
                         seed_facts=facts,
                         seeds_current=bool(facts) and facts.get("settings") == settings,
                         finetune=pd.read_csv(Path(inp["finetune"]).with_suffix(".csv")),
                         seed_wins=wins)
    write_text(out_summary, text)
    if out_values:
        write_csv(out_values, digest.values(Path(inp["finetune"]).parent))
    readme = Path(inp["readme"])
    old = readme.read_text()
    if START not in old or END not in old:
        raise ValueError(f"{readme}: markers {START} / {END} not found")
    head, rest = old.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text(readme, f"{head}{START}\n{text}{END}{tail}")
