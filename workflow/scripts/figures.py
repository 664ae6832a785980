"""Render one dataset's figures (PNG + PDF)."""

import pandas as pd

from ilmoco import figures
from ilmoco.predictions import read_predictions
from ilmoco.runlog import job_log

with job_log(snakemake.log[0]):
    ds, out = snakemake.wildcards.dataset, snakemake.output
    tables = {p.split("/")[-1][:-4]: pd.read_csv(p) for p in snakemake.input.tables}
    figures.finetune_bars(tables["finetune"], ds, out.finetune_png, out.finetune_pdf)
    figures.cka_lines(tables["feature_reuse"], ds, out.feature_reuse_png, out.feature_reuse_pdf)
    figures.layer_probe_curves(tables["layer_probe"], ds, out.layer_probe_png,
                               out.layer_probe_pdf)
    curves = {tuple(r): read_predictions(p)[2]
              for r, p in zip(snakemake.params.runs, snakemake.input.predictions)}
    ks = tables["ks_distance"].rename(columns={"estimate": "ks"})
    figures.ks_cdfs(curves, ks, ds, out.ks_cdf_png, out.ks_cdf_pdf)
    losses = {m: pd.read_csv(p) for m, p in zip(snakemake.params.ssl, snakemake.input.pretrain)}
    figures.pretrain_curves(losses, ds, out.pretrain_loss_png, out.pretrain_loss_pdf,
                            queue_size=snakemake.params.queue_size)
