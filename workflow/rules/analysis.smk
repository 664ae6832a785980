rule cka:
    """Feature reuse: CKA per block between the pretrained and each fine-tuned encoder."""
    input:
        features=FEATURES,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
        models=expand(f"{FT}/model.pt", pct=PCTS, seed=SEEDS, allow_missing=True),
    output:
        CKA,
    params:
        cfg=config["cka"],
        runs=[(float(p), s) for p in PCTS for s in SEEDS],
        device=config["finetune"]["device"],
        precision=config["finetune"]["precision"],
        code=code("cka.py"),
    wildcard_constraints:
        method=regex_alternatives(SSL_METHODS),
    threads: 1
    resources:
        gpu=1,
    log:
        f"{D}/logs/cka_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/cka.py"


rule ks:
    """KS distance of each run's test probabilities to the reference 100 % model."""
    input:
        predictions=expand(f"{FT}/predictions.csv", method=METHODS, pct=PCTS, seed=SEEDS,
                           allow_missing=True),
        metrics=expand(f"{FT}/metrics.json", method=METHODS, pct=PCTS, seed=SEEDS,
                       allow_missing=True),
    output:
        KS,
    params:
        runs=[(m, float(p), s) for m in METHODS for p in PCTS for s in SEEDS],
        reference=lambda w: SETTINGS[w.dataset]["ks_reference"],
        code=code("ks.py"),
    log:
        f"{D}/logs/ks.log",
    conda:
        ENV
    script:
        "../scripts/ks.py"
