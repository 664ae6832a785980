"""Read a dataset root (public layout) into manifest.csv + dataset.json."""

from ilmoco.config import reader_options
from ilmoco.datasets import read_manifest
from ilmoco.io import write_csv, write_json
from ilmoco.runlog import job_log

with job_log(snakemake.log[0]):
    settings = snakemake.params.settings
    df, meta = read_manifest(settings["format"], snakemake.input.root, **reader_options(settings))
    write_csv(snakemake.output.manifest, df)
    write_json(snakemake.output.meta, meta.to_dict())
    print(f"{len(df)} images, {df['patient_id'].nunique()} patients, task {meta.task}")
