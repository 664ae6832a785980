rule synthetic_data:
    """Write a synthetic dataset in its real on-disk layout (embedded demo only)."""
    output:
        directory("{root}"),
    params:
        generator=lambda w: S.datasets[SYNTHETIC_ROOTS[w.root]].synthetic_generator,
        options=lambda w: dict(S.datasets[SYNTHETIC_ROOTS[w.root]].synthetic),
        code=lambda w: code("synthetic.py",
                            S.datasets[SYNTHETIC_ROOTS[w.root]].synthetic_generator),
    wildcard_constraints:
        root=regex_alternatives(SYNTHETIC_ROOTS),
    log:
        "logs/synthetic/{root}.log",
    conda:
        ENV
    script:
        "../scripts/synthetic.py"


rule manifest:
    """Read the dataset root in its layout into one row per image."""
    input:
        root=lambda w: S.datasets[w.dataset].root,
    output:
        manifest=MANIFEST,
        meta=META,
    params:
        format=lambda w: dataset_of(w).format,
        reader=lambda w: dataset_of(w).reader,
        detect=lambda w: FORMATS[dataset_of(w).format].detect,
        # the other layouts, only to say what a wrong root looks like (not the generic ones,
        # which any root may be)
        others={name: f.detect for name, f in FORMATS.items() if not f.generic},
        options=lambda w: dict(dataset_of(w).reader_options),
        # the reader of this dataset's format only (imported by path in the job)
        code=lambda w: code("manifest.py", dataset_of(w).reader,
                            FORMATS[dataset_of(w).format].detect),
    log:
        f"{D}/logs/manifest.log",
    conda:
        ENV
    script:
        "../scripts/manifest.py"


rule split:
    """Seeded patient-level train/val/test split (or the dataset's published split lists)
    and nested labelled fractions."""
    input:
        unpack(split_lists),
        manifest=MANIFEST,
        meta=META,
    output:
        split=SPLIT,
    params:
        split=split_settings,
        fractions=list(S.fractions),
        code=code("split.py"),
    log:
        f"{D}/logs/split.log",
    conda:
        ENV
    script:
        "../scripts/split.py"


rule cache:
    """Decode and resize every image once into a uint8 array."""
    input:
        manifest=MANIFEST,
        meta=META,
    output:
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    params:
        root=lambda w: dataset_of(w).root,
        size=lambda w: dataset_of(w).image_size,
        fundus_crop=lambda w: dataset_of(w).fundus_crop,
        window=lambda w: dataset_of(w).window,
        reader=lambda w: dataset_of(w).reader,
        code=lambda w: code("cache.py", dataset_of(w).reader),
        # execution settings, typed (Snakemake's params trigger ignores them); the rows of a
        # killed attempt lie beside the outputs (images.partial.npy + .json), which
        # Snakemake does not delete, and what each attempt did goes to its log folder
        settings=S.cache,
        record=f"{D}/logs/cache.json",
    threads: 4
    resources:
        runtime=cache_runtime,
    benchmark:
        f"{BENCH}/cache.tsv"
    log:
        f"{D}/logs/cache.log",
    conda:
        ENV
    script:
        "../scripts/cache.py"
