rule features:
    """Block 1-4 features of a frozen model (eval mode), extracted once and cached."""
    input:
        model=frozen_model,
        split=SPLIT,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        temp(FEATURES),
    params:
        fraction=config["probe"]["fraction"],
        device=config["finetune"]["device"],
        precision=config["finetune"]["precision"],
        code=code("features.py"),
    threads: 1
    resources:
        gpu=1,
    log:
        f"{D}/logs/features_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/features.py"


rule probe:
    """Linear probes on block 1-4 features (block 4 = the linear probe), CIs on test."""
    input:
        features=FEATURES,
        split=SPLIT,
        meta=META,
    output:
        csv=PROBE,
        json=f"{D}/probe/{{method}}/probe.json",
    params:
        cfg=config["probe"],
        bootstrap=config["bootstrap"],
        metric=lambda w: SETTINGS[w.dataset]["metric"],
        code=code("probe.py"),
    threads: 1
    log:
        f"{D}/logs/probe_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/probe.py"
