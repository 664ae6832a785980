rule tables:
    """The paper's five tables: tidy CSV, Markdown and LaTeX."""
    input:
        finetune=expand(f"{FT}/metrics.json", dataset=DATASETS, method=METHODS, pct=PCTS,
                        seed=SEEDS),
        probes=expand(PROBE, dataset=DATASETS, method=probe_methods()),
        ckas=expand(CKA, dataset=DATASETS, method=SSL),
        kss=expand(KS, dataset=DATASETS) if HAS_FULL else [],
    output:
        **{f"{t}_{e}": table_output(t, e) for t in TABLES for e in ("csv", "md", "tex")},
    params:
        code=code("tables.py"),
    log:
        "logs/tables.log",
    conda:
        ENV
    script:
        "../scripts/tables.py"


rule figures:
    """Per-dataset figures: fine-tuning bars, CKA, layer probes, KS CDFs, loss curves."""
    input:
        tables=expand("results/tables/{table}.csv", table=TABLES),
        pretrain=expand(PRETRAIN_METRICS, method=SSL, allow_missing=True),
        predictions=expand(f"{FT}/predictions.csv", method=METHODS, pct=PCTS, seed=SEEDS[0],
                           allow_missing=True),
    output:
        **{f"{f}_{e}": figure_output(f, e) for f in FIGURES for e in ("png", "pdf")},
    params:
        ssl=SSL,
        runs=[(m, float(p)) for m in METHODS for p in PCTS],
        queue_size=config["pretrain"]["moco"]["queue_size"],
        code=code("figures.py"),
    log:
        f"{D}/logs/figures.log",
    conda:
        ENV
    script:
        "../scripts/figures.py"


localrules:
    readme,


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
