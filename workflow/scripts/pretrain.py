"""Self-supervised pretraining (moco, moco_mse, moco_bt)."""

from ilmoco.pretrain import PretrainJob, run
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], threads=snakemake.threads):
    run(PretrainJob(
        dataset=snakemake.wildcards.dataset, method=snakemake.wildcards.method,
        split_csv=snakemake.input.split, cache_images=snakemake.input.images,
        cache_index=snakemake.input.index, augment=snakemake.params.augment,
        cfg=snakemake.params.cfg, out_encoder=snakemake.output.encoder,
        out_metrics=snakemake.output.metrics, ckpt_path=snakemake.params.ckpt,
    ))
