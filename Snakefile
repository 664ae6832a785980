# Intermediate Layers Matter in Momentum Contrastive Self-Supervised Learning (NeurIPS 2021)
# as one workflow: data -> pretrain -> finetune -> probe / CKA / KS -> tables, figures, report.
# `snakemake` runs the embedded default; add real data with --configfile (see README).

from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The embedded default; merged under any --configfile (also when run with --directory).
configfile: str(Path(workflow.basedir) / "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_targets(),
