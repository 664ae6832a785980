"""Decode + resize every image once into a uint8 array."""

import pandas as pd

from ilmoco.datasets.base import DatasetMeta
from ilmoco.decode import build_cache
from ilmoco.io import read_json
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], stage="cache", what=snakemake.wildcards.dataset):
    meta = DatasetMeta.from_dict(read_json(snakemake.input.meta))
    manifest = pd.read_csv(snakemake.input.manifest, dtype={"image_id": str, "patient_id": str})
    build_cache(manifest, meta, snakemake.params.root, snakemake.output.images,
                snakemake.output.index, size=snakemake.params.size, threads=snakemake.threads,
                fundus_crop=snakemake.params.fundus_crop, progress=False)
    print(f"{len(manifest)} images cached at {snakemake.params.size} px")
