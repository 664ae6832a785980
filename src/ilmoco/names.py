"""The names a reader of the paper recognises, shared by every layer: the four blocks, the
methods that are not self-supervised, label fractions (``labeled_<pct>``) and the keys
under which a rule names one fine-tuning run's files."""

from __future__ import annotations

BLOCKS = ("block1", "block2", "block3", "block4")

# The supervised baseline (random init, fine-tuned), the probing control (random init,
# only probed) and the ImageNet reference (initialised from a weights file, fine-tuned).
SUPERVISED, RANDOM_INIT, IMAGENET = "supervised", "random_init", "imagenet"


def pct_name(pct: float) -> str:
    """1 -> '1', 6.0 -> '6', 0.5 -> '0.5' (the suffix of ``labeled_<pct>``)."""
    return f"{float(pct):g}"


def fraction_column(pct: float) -> str:
    """The ``split.csv`` column of a label fraction: ``labeled_<pct>``."""
    return f"labeled_{pct_name(pct)}"


def run_key(kind: str, method: str, pct: float | str, seed: int) -> str:
    """The name of one run's file among a rule's inputs, e.g. ``predictions:moco:6:0``."""
    return f"{kind}:{method}:{float(pct):g}:{int(seed)}"


def parse_run_key(key: str) -> tuple[str, str, float, int]:
    """(kind, method, fraction, seed) of :func:`run_key`."""
    kind, method, pct, seed = key.split(":")
    return kind, method, float(pct), int(seed)


def runs_by_key(named_inputs, *kinds: str) -> dict[tuple[str, float, int], tuple]:
    """``{(method, fraction, seed): (path of kinds[0], path of kinds[1], ...)}`` from a
    rule's named inputs (``snakemake.input.items()``)."""
    found: dict[tuple, dict] = {}
    for key, path in named_inputs:
        if key.count(":") != 3:
            continue
        kind, method, pct, seed = parse_run_key(key)
        if kind in kinds:
            found.setdefault((method, pct, seed), {})[kind] = str(path)
    return {k: tuple(v[kind] for kind in kinds) for k, v in found.items()}
