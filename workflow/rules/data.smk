rule synthetic_data:
    """Write a synthetic dataset in its real on-disk layout (embedded default only)."""
    output:
        directory("{root}"),
    params:
        fmt=lambda w: SETTINGS[SYNTHETIC_ROOTS[w.root]]["format"],
        options=lambda w: SETTINGS[SYNTHETIC_ROOTS[w.root]]["synthetic"],
        code=code("synthetic.py"),
    wildcard_constraints:
        root=regex_alternatives(SYNTHETIC_ROOTS),
    log:
        "logs/synthetic/{root}.log",
    conda:
        ENV
    script:
        "../scripts/synthetic.py"


rule manifest:
    """Read the dataset root in its public layout into one row per image."""
    input:
        root=lambda w: SETTINGS[w.dataset]["root"],
    output:
        manifest=MANIFEST,
        meta=META,
    params:
        settings=ds,
        code=code("manifest.py"),
    log:
        f"{D}/logs/manifest.log",
    conda:
        ENV
    script:
        "../scripts/manifest.py"


rule split:
    """Seeded patient-level train/val/test split and nested labelled fractions."""
    input:
        manifest=MANIFEST,
        meta=META,
    output:
        split=SPLIT,
    params:
        split=config["split"],
        fractions=config["fractions"],
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
        root=lambda w: SETTINGS[w.dataset]["root"],
        size=lambda w: SETTINGS[w.dataset]["image_size"],
        code=code("cache.py"),
    threads: 4
    log:
        f"{D}/logs/cache.log",
    conda:
        ENV
    script:
        "../scripts/cache.py"
