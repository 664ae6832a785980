rule finetune:
    """Fine-tune on labeled_<pct>, select on validation, predict test with the best and the
    last epoch."""
    input:
        unpack(encoder_input),
        split=SPLIT,
        meta=META,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        predictions=f"{FT}/predictions.csv",
        predictions_last=f"{FT}/predictions_last.csv",
        selection=f"{FT}/selection.json",
        model=f"{FT}/model.pt",
        history=f"{FT}/history.csv",
    params:
        run=lambda w: S.finetune_run(w.dataset, w.method, float(w.pct)),
        settings=lambda w: result_fields(S.finetune_run(w.dataset, w.method, float(w.pct))),
        resume=f"{FT}/resume.pt",
        tensorboard=f"{TENSORBOARD}/finetune/{{method}}/labeled_{{pct}}/seed{{seed}}",
        code=builder_code("finetune.py"),
    wildcard_constraints:
        method=regex_alternatives(METHODS),
    group:
        gpu_group("finetune")
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


rule evaluate:
    """Test metric and intervals of a fine-tuning run from its predictions (the interval
    settings rerun only this)."""
    input:
        predictions=f"{FT}/predictions.csv",
        predictions_last=f"{FT}/predictions_last.csv",
        selection=f"{FT}/selection.json",
        meta=META,
    output:
        f"{FT}/metrics.json",
    params:
        bootstrap=S.bootstrap,
        settings=result_fields(S.bootstrap),
        code=code("evaluate.py"),
    log:
        f"{D}/logs/evaluate_{{method}}_labeled_{{pct}}_seed{{seed}}.log",
    conda:
        ENV
    script:
        "../scripts/evaluate.py"
