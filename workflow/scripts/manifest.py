"""Read a dataset root (public layout) into manifest.csv + dataset.json."""

from ilmoco.datasets.readers import read_manifest
from ilmoco.io import write_csv, write_json
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], stage="manifest", what=snakemake.wildcards.dataset):
    df, meta = read_manifest(snakemake.params.format, snakemake.input.root,
                             **snakemake.params.options)
    write_csv(snakemake.output.manifest, df)
    write_json(snakemake.output.meta, meta.to_dict())
    print(f"{len(df)} images, {df['patient_id'].nunique()} patients, task {meta.task}")
