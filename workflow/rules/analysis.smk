rule cka:
    """Feature reuse: CKA per block between the pretrained and each fine-tuned encoder."""
    input:
        unpack(lambda w: runs(w.dataset, ["model"], methods=[w.method])),
        encoder=ENCODER,
        split=SPLIT,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        CKA,
    params:
        run=S.cka_run(),
        settings=result_fields(S.cka_run()),
        code=builder_code("cka.py"),
    wildcard_constraints:
        method=regex_alternatives(ENCODERS),
    group:
        gpu_group("cka")
    threads: 1
    resources:
        gpu=1,
        runtime=gpu_runtime("cka"),
    benchmark:
        f"{BENCH}/cka_{{method}}.tsv"
    log:
        f"{D}/logs/cka_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/cka.py"


rule ks:
    """KS distance of each run's test probabilities to the reference 100 % model."""
    input:
        # selection.json (validation scores), not metrics.json: interval settings rerun no KS
        unpack(lambda w: runs(w.dataset, ["predictions", "selection"])),
    output:
        KS,
    params:
        reference=lambda w: dataset_of(w).ks_reference,
        code=code("ks.py"),
    log:
        f"{D}/logs/ks.log",
    conda:
        ENV
    script:
        "../scripts/ks.py"


rule paired:
    """Each method's difference to the baseline on the same resampled test patients."""
    input:
        unpack(lambda w: runs(w.dataset, ["predictions", "metrics"])),
    output:
        PAIRED,
    params:
        baseline=S.paired.baseline,
        bootstrap=S.bootstrap,
        settings=result_fields(S.bootstrap),
        code=code("paired.py"),
    log:
        f"{D}/logs/paired.log",
    conda:
        ENV
    script:
        "../scripts/paired.py"
