rule probe:
    """Linear probes at blocks 1-4 of one encoder (block 4 = the linear probe unless
    probe.linear: only_ll), CIs on test: frozen features extracted once in eval mode, or the
    official protocol (train-mode backbone under no_grad, augmentation, last epoch)."""
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
        init=control_init,
        # the official protocol's resume checkpoint, outside the declared outputs
        resume=f"{D}/probe/{{method}}/resume.pt",
        code=builder_code("probe.py"),
    group:
        gpu_group("probe")
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


rule linear_probe:
    """The official Table 1 linear probe of one encoder (probe.linear: only_ll):
    fine_tune_mocov2.py --only-ll, the fine-tuning with the backbone under no_grad in train
    mode, the last epoch."""
    input:
        unpack(probed_model),
        split=SPLIT,
        meta=META,
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    output:
        csv=LINEAR_PROBE,
        json=f"{D}/probe/{{method}}/linear.json",
    params:
        run=lambda w: S.linear_probe_run(w.dataset, w.method),
        settings=lambda w: result_fields(S.linear_probe_run(w.dataset, w.method)),
        init=control_init,
        resume=f"{D}/probe/{{method}}/linear_resume.pt",
        code=builder_code("linear_probe.py"),
    group:
        gpu_group("linear_probe")
    threads: 1
    resources:
        gpu=1,
        runtime=gpu_runtime("linear_probe"),
    benchmark:
        f"{BENCH}/linear_probe_{{method}}.tsv"
    log:
        f"{D}/logs/linear_probe_{{method}}.log",
    conda:
        ENV
    script:
        "../scripts/linear_probe.py"
