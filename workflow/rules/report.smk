localrules:
    init_encoder,
    export,
    manifest,
    split,
    evaluate,
    ks,
    paired,
    resolved_config,
    tables,
    figures,
    readme,


rule resolved_config:
    """The run's complete configuration: every key that determines results, schema defaults
    filled in (a valid --configfile that reproduces the run)."""
    output:
        RESOLVED,
    params:
        config=lambda w: result_config(config),
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
    """The README's demo section from this run's results: the first dataset's fine-tuning
    figure, whether SSL learned, the fine-tuning table, which differences are real."""
    input:
        figure=f"results/figures/{DATASETS[0]}/finetune.png",
        finetune="results/tables/finetune.md",
        paired="results/tables/paired_difference.csv",
        layer="results/tables/layer_probe.csv",
        **{f"pretrain:{d}:{m}": PRETRAIN_METRICS.format(dataset=d, method=m)
           for d in DATASETS for m in SSL},
        readme="README.md",
    output:
        figure="docs/demo/finetune.png",
        summary="docs/demo/summary.md",
    params:
        presentation=presentation(),
        code=code("readme.py"),
    log:
        "logs/readme.log",
    conda:
        ENV
    script:
        "../scripts/readme.py"
