"""The data report: splits, prevalence, sampled image files and a contact sheet per dataset."""

from ilmoco.runlog import job_log
from ilmoco.stages.data_report import run

p = snakemake.params
files = dict(snakemake.input.items())
datasets = {d: {**info, **{k: files[f"{k}:{d}"] for k in ("manifest", "meta", "split",
                                                           "images", "index")}}
            for d, info in p.datasets.items()}
with job_log(snakemake.log[0], stage="data_report"):
    print(run(datasets=datasets, settings=p.settings, fractions=p.fractions,
              outputs=dict(snakemake.output.items())))
