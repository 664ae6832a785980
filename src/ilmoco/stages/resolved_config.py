"""The ``resolved_config`` stage: the run's complete configuration (schema defaults filled
in), a valid --configfile that reproduces the run."""

from __future__ import annotations

import yaml

from ilmoco.io import write_text

HEADER = ("# The configuration of this run's results (schema defaults filled in); reproduce "
          "them with\n# --configfile this file. Execution settings (device, data placement, "
          "checkpoint interval,\n# compile, channels_last, progress) are left out: they "
          "change no result.\n")


def run(*, config: dict, out) -> None:
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    write_text(out, HEADER + text)
