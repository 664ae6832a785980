rule pretrain:
    """A self-supervised method: a base (MoCo, BYOL, ...) with or without an intermediate
    term."""
    input:
        split=SPLIT,
        meta=META,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        encoder=ENCODER,
        metrics=PRETRAIN_METRICS,
    params:
        # typed settings for the script; Snakemake's params trigger ignores them (not a
        # builtin) and tracks `settings`, their result fields, instead
        run=lambda w: S.pretrain_run(w.dataset, w.method),
        settings=lambda w: result_fields(S.pretrain_run(w.dataset, w.method)),
        # resumable checkpoint outside the declared outputs (Snakemake deletes those)
        resume=f"{D}/pretrain/{{method}}/resume.pt",
        code=pretrain_code,
    wildcard_constraints:
        method=regex_alternatives(SSL),
    threads: 1
    resources:
        gpu=1,
        runtime=gpu_runtime("pretrain"),
    benchmark:
        f"{BENCH}/pretrain_{{method}}.tsv"
    log:
        f"{D}/logs/pretrain_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/pretrain.py"
