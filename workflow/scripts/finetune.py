"""Fine-tune one (method, fraction, seed): the best validation model and the last epoch
predict test."""

from ilmoco.cluster.gpus import claim_gpus, requested_gpus
from ilmoco.config.settings.fields import digest
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import read_json
from ilmoco.runlog import job_log
from ilmoco.stages.finetune import FinetuneJob, run

w, inp, out, params = snakemake.wildcards, snakemake.input, snakemake.output, snakemake.params
with job_log(snakemake.log[0], threads=snakemake.threads, stage="finetune",
             what=f"{w.dataset}/{w.method}/labeled_{w.pct}/seed{w.seed}",
             settings_digest=digest(params.run)):
    claim_gpus(requested_gpus(snakemake.resources))
    run(FinetuneJob(
        run=params.run, pct=float(w.pct), seed=int(w.seed), split_csv=inp.split,
        meta=DatasetMeta.from_dict(read_json(inp.meta)), cache_images=inp.images,
        cache_index=inp.index, encoder=inp.get("encoder"),
        out_predictions=out.predictions, out_predictions_last=out.predictions_last,
        out_selection=out.selection, out_model=out.model, out_history=out.history,
        resume_path=params.resume, code=params.code, events_dir=params.tensorboard,
    ))
