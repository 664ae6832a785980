"""Self-supervised pretraining (moco, moco_mse, moco_bt); data-parallel when given >1 GPU."""

from ilmoco.gpus import claim_gpus, run_data_parallel
from ilmoco.pretrain import PretrainJob, run
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], threads=snakemake.threads):
    gpus = int(snakemake.resources.get("gpu", 0))
    claim_gpus(gpus)
    job = PretrainJob(
        dataset=snakemake.wildcards.dataset, method=snakemake.wildcards.method,
        split_csv=snakemake.input.split, cache_images=snakemake.input.images,
        cache_index=snakemake.input.index, augment=snakemake.params.augment,
        cfg=snakemake.params.cfg, out_encoder=snakemake.output.encoder,
        out_metrics=snakemake.output.metrics, ckpt_path=snakemake.params.ckpt,
    )
    import torch

    run_data_parallel(run, (job,), gpus if gpus > 1 and torch.cuda.is_available() else 1)
