rule finetune:
    """Fine-tune on labeled_<pct>, select on validation, evaluate the best model on test."""
    input:
        unpack(encoder_input),
        split=SPLIT,
        meta=META,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        predictions=f"{FT}/predictions.csv",
        metrics=f"{FT}/metrics.json",
        model=f"{FT}/model.pt",
        history=f"{FT}/history.csv",
    params:
        run=lambda w: S.finetune_run(w.dataset, w.method),
        settings=lambda w: result_fields(S.finetune_run(w.dataset, w.method)),
        resume=f"{FT}/resume.pt",
        code=code("finetune.py"),
    wildcard_constraints:
        method=regex_alternatives(METHODS),
    threads: 1
    resources:
        gpu=1,
        runtime=gpu_runtime("finetune"),
    benchmark:
        f"{BENCH}/finetune_{{method}}_labeled_{{pct}}_seed{{seed}}.tsv"
    log:
        f"{D}/logs/finetune_{{method}}_labeled_{{pct}}_seed{{seed}}.log",
    conda:
        ENV
    script:
        "../scripts/finetune.py"
