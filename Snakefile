# Intermediate Layers Matter in Momentum Contrastive Self-Supervised Learning (NeurIPS 2021)
# as one workflow: data -> pretrain -> finetune -> probe / CKA / KS / paired -> tables,
# figures, report. `snakemake` runs the embedded demo (config.yaml); a run with --configfile
# uses only the schema defaults and the files it names (see README).

from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The embedded demo, only when the user names no config file: a real run never inherits
# demo values (its values are the schema defaults plus the files it names).
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir) / "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/presentation.smk"
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
