"""Layer-wise linear probes of one frozen encoder (block 4 = the linear probe), test CIs."""

from ilmoco.cluster.gpus import claim_gpus, requested_gpus
from ilmoco.config.settings.fields import digest
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import read_json
from ilmoco.runlog import job_log
from ilmoco.stages.probe import ProbeJob, run

w, inp, out, params = snakemake.wildcards, snakemake.input, snakemake.output, snakemake.params
with job_log(snakemake.log[0], threads=snakemake.threads, stage="probe",
             what=f"{w.dataset}/{w.method}", settings_digest=digest(params.run)):
    claim_gpus(requested_gpus(snakemake.resources))
    init = params.init
    df = run(ProbeJob(
        run=params.run, model=inp.get("model"), init_seed=init.get("seed", 0),
        zero_init_residual=init.get("zero_init_residual", True), split_csv=inp.split,
        meta=DatasetMeta.from_dict(read_json(inp.meta)), cache_images=inp.images,
        cache_index=inp.index, out_csv=out.csv, out_json=out.json,
        resume_path=params.resume, code=params.code,
    ))
    print(df[["block", "estimate", "ci_low", "ci_high"]].to_string(index=False))
