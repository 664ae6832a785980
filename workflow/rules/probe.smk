rule probe:
    """Linear probes on the frozen block 1-4 features of one encoder (block 4 = the linear
    probe), CIs on test; features are extracted once, in eval mode."""
    input:
        unpack(probed_model),
        split=SPLIT,
        meta=META,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        csv=PROBE,
        json=f"{D}/probe/{{method}}/probe.json",
    params:
        run=lambda w: S.probe_run(w.dataset, w.method),
        settings=lambda w: result_fields(S.probe_run(w.dataset, w.method)),
        init=lambda w: {"seed": S.pretrain.seed,
                        "zero_init_residual": S.pretrain.zero_init_residual}
        if w.method == RANDOM_INIT else {},
        code=builder_code("probe.py"),
    threads: 1
    resources:
        gpu=1,
        runtime=gpu_runtime("probe"),
    benchmark:
        f"{BENCH}/probe_{{method}}.tsv"
    log:
        f"{D}/logs/probe_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/probe.py"
