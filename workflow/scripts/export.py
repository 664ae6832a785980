"""An encoder as encoder.safetensors: its library's own key names, its recipe as metadata."""

from ilmoco.runlog import job_log
from ilmoco.stages.export import run

w = snakemake.wildcards
with job_log(snakemake.log[0], stage="export", what=f"{w.dataset}/{w.method}"):
    meta = run(snakemake.input.encoder, snakemake.output[0])
    print(f"{meta['library']} {meta['model']}, {meta['in_channels']} input channel(s), "
          f"settings {meta['settings_digest']}")
