"""Write the run's complete configuration (schema defaults filled in)."""

import yaml

from ilmoco.io import write_text
from ilmoco.runlog import job_log

with job_log(snakemake.log[0], stage="resolved_config"):
    text = yaml.safe_dump(snakemake.params.config, sort_keys=False, default_flow_style=None,
                          width=100)
    write_text(snakemake.output[0],
               "# The configuration of this run's results (schema defaults filled in); "
               "reproduce them with\n# --configfile this file. Execution settings (device, "
               "data placement, checkpoint interval,\n# compile, channels_last, progress) are "
               "left out: they change no result.\n" + text)
