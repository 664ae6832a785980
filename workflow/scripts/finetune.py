"""Fine-tune one (method, fraction, seed) and evaluate its best validation model on test."""

from ilmoco.datasets import DatasetMeta
from ilmoco.finetune import FinetuneJob, run
from ilmoco.gpus import claim_gpus
from ilmoco.io import read_json
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], threads=snakemake.threads):
    claim_gpus(int(snakemake.resources.get("gpu", 0)))
    w, out = snakemake.wildcards, snakemake.output
    run(FinetuneJob(
        dataset=w.dataset, method=w.method, pct=float(w.pct), seed=int(w.seed),
        split_csv=snakemake.input.split, cache_images=snakemake.input.images,
        cache_index=snakemake.input.index,
        meta=DatasetMeta.from_dict(read_json(snakemake.input.meta)),
        metric=snakemake.params.metric, augment=snakemake.params.augment,
        cfg=snakemake.params.cfg, bootstrap=snakemake.params.bootstrap,
        encoder=snakemake.input.encoder or None, out_predictions=out.predictions,
        out_metrics=out.metrics, out_model=out.model, out_history=out.history,
        ckpt_path=snakemake.params.ckpt,
    ))
