"""Self-supervised pretraining of one method; with `gpu: N > 1`, N data-parallel processes
(NCCL on GPUs, gloo on CPU) started from here."""

from ilmoco.cluster.gpus import claim_gpus, requested_gpus, run_data_parallel
from ilmoco.config.settings.fields import digest
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import read_json
from ilmoco.runlog import job_log
from ilmoco.stages.pretrain import PretrainJob, run

# Data-parallel processes are spawned: they import this file again and must not rerun it.
if __name__ == "__main__":
    w, inp, out, params = (snakemake.wildcards, snakemake.input, snakemake.output,
                           snakemake.params)
    with job_log(snakemake.log[0], threads=snakemake.threads, stage="pretrain",
                 what=f"{w.dataset}/{w.method}", settings_digest=digest(params.run)):
        gpus = requested_gpus(snakemake.resources)
        claim_gpus(gpus)
        job = PretrainJob(run=params.run, split_csv=inp.split,
                          meta=DatasetMeta.from_dict(read_json(inp.meta)),
                          cache_images=inp.images, cache_index=inp.index,
                          out_encoder=out.encoder, out_metrics=out.metrics,
                          resume_path=params.resume, code=params.code,
                          events_dir=params.tensorboard)
        run_data_parallel(run, (job,), max(1, gpus))
