"""Patient-level split and nested label fractions -> split.csv."""

import warnings

import pandas as pd

from ilmoco.datasets.base import DatasetMeta
from ilmoco.io import read_json, write_csv
from ilmoco.runlog import job_log
from ilmoco.split import make_split

with job_log(snakemake.log[0], stage="split", what=snakemake.wildcards.dataset):
    warnings.simplefilter("always")
    cfg = snakemake.params.split
    meta = DatasetMeta.from_dict(read_json(snakemake.input.meta))
    manifest = pd.read_csv(snakemake.input.manifest, dtype={"image_id": str, "patient_id": str})
    split = make_split(
        manifest, meta, ratios=cfg["ratios"], seed=cfg["seed"],
        fractions=snakemake.params.fractions, use_official=cfg["use_official"],
        ensure_each_class=cfg["ensure_each_class"], on_missing_class=cfg["on_missing_class"],
    )
    write_csv(snakemake.output.split, split)
    print(split.groupby("split").size().to_string())
