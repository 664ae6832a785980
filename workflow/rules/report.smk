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
        **seed_table(),
        **{f"table:{t}": f"results/tables/{t}.csv" for t in TABLES},
        readme="README.md",
    output:
        figure="docs/demo/finetune.png",
        summary="docs/demo/summary.md",
        # every printed result value: what a rerun is checked against (make demo, tests)
        values="docs/demo/values.csv",
    params:
        presentation=presentation(),
        # the seed benchmark's table speaks for this run only if it had these settings
        settings=settings_digest(S),
        code=code("readme.py"),
    log:
        "logs/readme.log",
    conda:
        ENV
    script:
        "../scripts/readme.py"


localrules:
    data_report,


rule data_report:
    """The data before any GPU hour: per dataset the images and patients per split and
    labelled fraction, label prevalence, a sample of the image files (size, mode, bit depth)
    and a contact sheet of cached images per class (`snakemake data_report` builds it
    alone)."""
    input:
        **{f"{kind}:{d}": path.format(dataset=d) for d in DATASETS
           for kind, path in (("manifest", MANIFEST), ("meta", META), ("split", SPLIT),
                              ("images", CACHE_IMAGES), ("index", CACHE_INDEX))},
    output:
        summary=f"{DATA_REPORT}/summary.md",
        **{f"{d}:{kind}": data_report_output(d, kind) for d in DATASETS
           for kind in DATA_REPORT_FILES},
    params:
        datasets={d: {"display": ds.display, "root": ds.root, "reader": ds.reader}
                  for d, ds in S.datasets.items()},
        settings=result_fields(S.data_report),
        fractions=list(S.fractions),
        code=code("data_report.py", *[ds.reader for ds in S.datasets.values()]),
    log:
        "logs/data_report.log",
    conda:
        ENV
    script:
        "../scripts/data_report.py"
