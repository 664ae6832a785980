localrules:
    manifest,
    split,
    ks,
    paired,
    resolved_config,
    tables,
    figures,
    readme,


rule resolved_config:
    """The run's complete configuration: every key, schema defaults filled in (a valid
    --configfile that reproduces the run)."""
    output:
        RESOLVED,
    params:
        config=lambda w: dict(config),
    log:
        "logs/resolved_config.log",
    conda:
        ENV
    script:
        "../scripts/resolved_config.py"


rule tables:
    """Every result table: tidy CSV, Markdown and LaTeX."""
    input:
        unpack(table_inputs),
    output:
        **{f"{t}_{e}": table_output(t, e) for t in TABLES for e in ("csv", "md", "tex")},
    params:
        presentation=presentation(),
        code=code("tables.py"),
    log:
        "logs/tables.log",
    conda:
        ENV
    script:
        "../scripts/tables.py"


rule figures:
    """One dataset's figures, from its own analysis outputs."""
    input:
        unpack(figure_inputs),
    output:
        **{f"{f}_{e}": figure_output(f, e) for f in figures() for e in ("png", "pdf")},
    params:
        presentation=presentation(),
        code=code("figures.py"),
    log:
        f"{D}/logs/figures.log",
    conda:
        ENV
    script:
        "../scripts/figures.py"


rule readme:
    """Copy the demo's NIH fine-tuning figure and table into docs/ and the README."""
    input:
        figure="results/figures/nih_synth/finetune.png",
        table="results/tables/finetune.md",
        readme="README.md",
    output:
        figure="docs/demo/finetune_nih_synth.png",
        table="docs/demo/finetune.md",
    log:
        "logs/readme.log",
    conda:
        ENV
    script:
        "../scripts/readme.py"
