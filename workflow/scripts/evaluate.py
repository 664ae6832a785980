"""metrics.json of one fine-tuning run: test metric and intervals from its predictions."""

from ilmoco.config.settings.fields import digest
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import read_json
from ilmoco.runlog import job_log
from ilmoco.stages.evaluate import run

w, inp = snakemake.wildcards, snakemake.input
with job_log(snakemake.log[0], stage="evaluate",
             what=f"{w.dataset}/{w.method}/labeled_{w.pct}/seed{w.seed}",
             settings_digest=digest(snakemake.params.bootstrap)):
    run(predictions=inp.predictions, predictions_last=inp.predictions_last,
        selection=inp.selection, meta=DatasetMeta.from_dict(read_json(inp.meta)),
        bootstrap=snakemake.params.bootstrap, out_metrics=snakemake.output[0])
