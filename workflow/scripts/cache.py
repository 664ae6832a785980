"""Decode + resize every image once into a uint8 array."""

from ilmoco.runlog import job_log
from ilmoco.stages.cache import run

p, out = snakemake.params, snakemake.output
with job_log(snakemake.log[0], stage="cache", what=snakemake.wildcards.dataset):
    print(run(manifest=snakemake.input.manifest, meta=snakemake.input.meta, root=p.root,
              reader=p.reader, size=p.size, fundus_crop=p.fundus_crop, window=p.window,
              threads=snakemake.threads, out_images=out.images, out_index=out.index,
              workers=p.settings.workers, checkpoint_every=p.settings.checkpoint_every,
              code=p.code, record=p.record))
