"""Read a dataset root (its layout) into manifest.csv + dataset.json."""

from ilmoco.runlog import job_log
from ilmoco.stages.manifest import run

p = snakemake.params
with job_log(snakemake.log[0], stage="manifest", what=snakemake.wildcards.dataset):
    print(run(fmt=p.format, reader=p.reader, detect=p.detect, others=p.others,
              root=snakemake.input.root, options=p.options,
              out_manifest=snakemake.output.manifest, out_meta=snakemake.output.meta))
