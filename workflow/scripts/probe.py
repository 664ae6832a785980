"""Layer-wise linear probes (block 4 = the linear probe) with test CIs."""

from ilmoco.datasets import DatasetMeta
from ilmoco.io import read_json
from ilmoco.probe import ProbeJob, run_probe
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], threads=snakemake.threads):
    run_probe(ProbeJob(
        dataset=snakemake.wildcards.dataset, method=snakemake.wildcards.method,
        features=snakemake.input.features, split_csv=snakemake.input.split,
        meta=DatasetMeta.from_dict(read_json(snakemake.input.meta)),
        metric=snakemake.params.metric, cfg=snakemake.params.cfg,
        bootstrap=snakemake.params.bootstrap, out_csv=snakemake.output.csv,
        out_json=snakemake.output.json,
    ))
