rule pretrain:
    """A self-supervised method: a base (MoCo, BYOL, ...) with or without an intermediate
    term."""
    input:
        unpack(init_input),
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
        tensorboard=f"{TENSORBOARD}/pretrain/{{method}}",
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


rule init_encoder:
    """The encoder of a method that starts from a weights file (imagenet): the stock
    model's weights on the backbone, the stem adapted to the data, nothing trained."""
    input:
        unpack(init_input),
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        encoder=ENCODER,
    params:
        run=lambda w: S.init_run(w.dataset, w.method),
        settings=lambda w: result_fields(S.init_run(w.dataset, w.method)),
        code=init_code,
    wildcard_constraints:
        method=regex_alternatives(S.weights_methods),
    log:
        f"{D}/logs/init_encoder_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/init_encoder.py"


rule export:
    """Each encoder in its library's layout: encoder.safetensors with the key names of the
    stock torchvision / timm model and the recipe in its metadata."""
    input:
        encoder=ENCODER,
    output:
        EXPORT,
    params:
        code=builder_code("export.py"),
    wildcard_constraints:
        method=regex_alternatives(ENCODERS),
    log:
        f"{D}/logs/export_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/export.py"
