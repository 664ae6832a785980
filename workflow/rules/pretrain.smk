rule pretrain:
    """MoCo v2 with or without the intermediate-layer MSE / Barlow Twins terms."""
    input:
        split=SPLIT,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        encoder=ENCODER,
        metrics=PRETRAIN_METRICS,
    params:
        cfg=pretrain_cfg,
        augment=lambda w: SETTINGS[w.dataset]["augment"],
        # resumable checkpoint outside the declared outputs (Snakemake deletes those)
        ckpt=f"{D}/pretrain/{{method}}/resume.pt",
        code=code("pretrain.py"),
    wildcard_constraints:
        method=regex_alternatives(SSL_METHODS),
    threads: 1
    resources:
        gpu=1,
        runtime=gpu_runtime("pretrain"),
    log:
        f"{D}/logs/pretrain_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/pretrain.py"
