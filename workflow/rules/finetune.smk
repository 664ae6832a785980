def encoder_input(wildcards):
    if wildcards.method == "supervised":
        return []
    return ENCODER.format(dataset=wildcards.dataset, method=wildcards.method)


rule finetune:
    """Fine-tune on labeled_<pct>, select on validation, evaluate the best model on test."""
    input:
        split=SPLIT,
        meta=META,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
        encoder=encoder_input,
    output:
        predictions=FT + "/predictions.csv",
        metrics=FT + "/metrics.json",
        model=FT + "/model.pt",
        history=FT + "/history.csv",
    params:
        cfg=config["finetune"],
        bootstrap=config["bootstrap"],
        metric=lambda w: SETTINGS[w.dataset]["metric"],
        augment=lambda w: SETTINGS[w.dataset]["augment"],
        ckpt=FT + "/resume.pt",
        code=code("finetune.py"),
    threads: 1
    resources:
        gpu=1,
    log:
        D + "/logs/finetune_{method}_labeled_{pct}_seed{seed}.log",
    conda:
        ENV
    script:
        "../scripts/finetune.py"
