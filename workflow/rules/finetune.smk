rule finetune:
    """Fine-tune on labeled_<pct>, select on validation, evaluate the best model on test."""
    input:
        split=SPLIT,
        meta=META,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
        encoder=encoder_input,
    output:
        predictions=f"{FT}/predictions.csv",
        metrics=f"{FT}/metrics.json",
        model=f"{FT}/model.pt",
        history=f"{FT}/history.csv",
    params:
        cfg=config["finetune"],
        bootstrap=config["bootstrap"],
        metric=lambda w: SETTINGS[w.dataset]["metric"],
        augment=lambda w: SETTINGS[w.dataset]["augment"],
        ckpt=f"{FT}/resume.pt",
        code=code("finetune.py"),
    threads: 1
    resources:
        gpu=1,
        runtime=gpu_runtime("finetune"),
    log:
        f"{D}/logs/finetune_{{method}}_labeled_{{pct}}_seed{{seed}}.log",
    conda:
        ENV
    script:
        "../scripts/finetune.py"
