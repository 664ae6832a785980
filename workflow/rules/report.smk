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


def table_inputs(wildcards):
    d = DATASETS
    return {
        "finetune": expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS,
                           seed=SEEDS),
        "probes": expand(PROBE, dataset=d, method=S.probe_methods()),
        "ckas": expand(CKA, dataset=d, method=SSL),
        "kss": expand(KS, dataset=d) if HAS_FULL else [],
        "paireds": expand(PAIRED, dataset=d) if len(METHODS) > 1 else [],
    }


def presentation():
    """How tables and figures show the run: method order and display names, interval level."""
    from ilmoco.paper import paper_dataset

    return {
        "order": METHODS + [RANDOM_INIT],
        "display": S.display_names,
        "datasets": {d: ds.display for d, ds in S.datasets.items()},
        "level": S.bootstrap.level,
        "supervised_from_finetune": S.probe.supervised_reference == "finetune",
        "paper_datasets": {d: paper_dataset(ds.format, bool(ds.synthetic))
                           for d, ds in S.datasets.items()},
        "queue_size": S.pretrain.moco.queue_size,
    }


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


def figure_inputs(wildcards):
    d = wildcards.dataset
    out = {
        "metrics": expand(f"{FT}/metrics.json", dataset=d, method=METHODS, pct=PCTS,
                          seed=SEEDS),
        "probes": expand(PROBE, dataset=d, method=S.probe_methods()),
        "ckas": expand(CKA, dataset=d, method=SSL),
        **{f"pretrain:{m}": PRETRAIN_METRICS.format(dataset=d, method=m) for m in SSL},
        **runs(d, ["predictions"]),
    }
    if HAS_FULL:
        out["ks"] = KS.format(dataset=d)
    if len(METHODS) > 1:
        out["paired"] = PAIRED.format(dataset=d)
    return out


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
