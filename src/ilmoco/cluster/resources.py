"""Cluster resource requests from a model of the work and a throughput table.

A job's runtime request (minutes) is the images it will process divided by a measured rate,
plus a fixed start-up overhead, times a safety factor, doubled on each retry and capped at
the site's maximum:

* ``pretrain``: pairs = epochs × ⌊n_train / batch⌋ × batch (MoCo: two views through two
  encoders, one with gradients; BYOL: both views through both networks, counted twice),
  plus the per-epoch validation and kNN monitor passes;
* ``finetune``: per epoch the images labelled at the fraction (at least batch × min steps)
  and one pass over validation, for the maximum number of epochs (calibration uses the
  epochs a run really took: early stopping ends runs sooner), plus the test passes;
* ``probe``: one feature pass over the probe's train/val/test images; under the official
  protocol (and for ``linear_probe``, the ``--only-ll`` probe) a backbone pass over the
  labelled and the validation images every epoch besides;
* ``cka``: one feature pass per model over the test images;
* ``cache``: decoding every image once, on ``threads`` CPU cores.

Rates are images (pretraining: pairs) per second at 224 px, scaled by (224 / size)², for
each stage and architecture (``workflow/resources/throughput.yaml``). Image counts come from
the image cache when it exists, else the manifest, else the size of the public dataset of
that format. ``calibrate`` refits the rates from a finished run's ``benchmark:`` files::

    python -m ilmoco.cluster.resources calibrate --results results --benchmarks benchmarks \\
        --out ~/.config/ilmoco/throughput.yaml
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ilmoco.config.bases import BASES

REFERENCE_SIZE = 224
REPO = Path(__file__).resolve().parents[3]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
STAGES = ("pretrain", "finetune", "probe", "linear_probe", "cka")


@dataclass(frozen=True)
class Work:
    """What one job processes: image passes at its resolution, by kind of pass."""

    train: float  # training passes (pretraining: MoCo-pair equivalents)
    infer: float  # inference passes
    arch: str


def load_table(path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def image_count(images_npy, manifest_csv, public_images: int) -> int:
    """Images of a dataset: from its cache, else its manifest, else the public dataset's
    size (its format's registry entry)."""
    try:
        import numpy as np

        return int(np.load(images_npy, mmap_mode="r").shape[0])
    except (OSError, ValueError, TypeError):
        pass
    try:
        with open(manifest_csv) as fh:
            return max(0, sum(1 for _ in fh) - 1)
    except (OSError, TypeError):
        return public_images


def split_counts(n_images: int, ratios) -> dict[str, float]:
    total = sum(ratios)
    return {k: n_images * r / total for k, r in zip(("train", "val", "test"), ratios)}


def pretrain_work(n: dict, s, base: str = "moco") -> Work:
    """``s``: PretrainSettings; ``base``: the method's SSL base (its registry entry gives
    its cost per pair)."""
    steps = s.epochs * max(1, int(n["train"]) // s.batch_size)
    val = n["val"] if s.val_max_images is None else min(n["val"], s.val_max_images)
    infer = s.epochs * (2 * val + (s.knn.bank_images + val if s.knn.enabled else 0))
    return Work(steps * s.batch_size * BASES[base].cost, infer, s.arch)


def finetune_work(n: dict, s, pct: float, epochs: int | None = None) -> Work:
    """``s``: FinetuneSettings; ``epochs``: the epochs run (default: the maximum)."""
    epochs = s.epochs_at(pct) if epochs is None else epochs
    labelled = max(n["train"] * pct / 100, s.batch_size * s.min_steps_per_epoch)
    return Work(epochs * labelled, epochs * n["val"] + 2 * n["test"], s.arch)


def probe_work(n: dict, probe_fraction: float, arch: str, epochs: int = 0,
               labelled: float | None = None) -> Work:
    """``epochs``: 0 for features extracted once (the frozen protocol), else the epochs of a
    probe that runs the backbone every step (forward only) and validates every epoch;
    ``labelled``: its training images per epoch (default: the probe fraction's)."""
    train = n["train"] * probe_fraction / 100
    per_epoch = (train if labelled is None else labelled) + n["val"]
    return Work(0, train + n["val"] + n["test"] + epochs * per_epoch, arch)


def linear_probe_work(n: dict, s, pct: float, arch: str) -> Work:
    """The ``--only-ll`` probe: ``s`` the FinetuneSettings whose epochs and batch it runs."""
    labelled = max(n["train"] * pct / 100, s.batch_size * s.min_steps_per_epoch)
    return probe_work(n, pct, arch, s.epochs, labelled)


def cka_work(n: dict, runs: int, subset: int, repeats: int, arch: str) -> Work:
    used = min(n["test"], subset * repeats)
    return Work(0, used * (1 + runs), arch)


def rate(table: dict, kind: str, arch: str) -> float:
    """The table's rate of ``kind`` (a stage, or inference) for ``arch``; an arch the table
    lacks (a timm model before ``calibrate`` has measured it) gets the slowest rate of that
    kind, a conservative request."""
    rates = table["gpu"][kind]
    return rates.get(arch) or min(rates.values())


def seconds(work: Work, stage: str, size: int, table: dict) -> float:
    """Compute seconds of ``work`` at ``size`` px with the table's rates."""
    scale = (REFERENCE_SIZE / size) ** 2
    t = 0.0
    if work.train:
        t += work.train / (rate(table, stage, work.arch) * scale)
    if work.infer:
        t += work.infer / (rate(table, "inference", work.arch) * scale)
    return t


def runtime_minutes(seconds_of_work: float, table: dict, attempt: int = 1,
                    max_runtime: int | None = None) -> int:
    """The request: overhead + safety × work, doubled per retry, capped at the maximum."""
    minutes = table["overhead_minutes"] + table["safety"] * seconds_of_work / 60
    minutes = int(math.ceil(minutes)) * 2 ** (attempt - 1)
    return min(minutes, max_runtime) if max_runtime else minutes


def cache_minutes(n_images: int, threads: int, table: dict, attempt: int = 1,
                  max_runtime: int | None = None) -> int:
    secs = n_images / (table["cpu"]["decode_per_thread"] * max(1, threads))
    return runtime_minutes(secs, table, attempt, max_runtime)


# ------------------------------------------------------------------ calibration

BENCH_NAME = re.compile(
    r"^(?P<stage>pretrain|finetune|linear_probe|probe|cka)_(?P<rest>.+)\.tsv$")


def benchmark_seconds(tsv: Path) -> float:
    """Wall seconds of a Snakemake ``benchmark:`` file (the mean over its repeats)."""
    with open(tsv) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return sum(float(r["s"]) for r in rows) / max(1, len(rows))


def calibrate(results: Path, benchmarks: Path, table: dict, min_seconds: float = 60.0
              ) -> dict:
    """Refit the GPU rates of ``table`` from a finished run.

    For every benchmarked pretrain / finetune job the work model gives the images it
    processed (inference passes counted at the table's inference rate); the fitted rate is
    the median of work / (measured seconds − the start-up overhead) per stage and
    architecture. Jobs shorter than ``min_seconds`` are skipped (start-up dominates)."""
    from snakemake.utils import validate

    from ilmoco.config.resolve import resolve

    config = yaml.safe_load((results / "resolved_config.yaml").read_text())
    validate(config, str(SCHEMA))  # the execution settings it leaves out come back as defaults
    s = resolve(config)
    fits: dict[tuple[str, str], list[float]] = {}
    overhead = 60 * table["overhead_minutes"] / table["safety"]
    for tsv in sorted(Path(benchmarks).rglob("*.tsv")):
        m = BENCH_NAME.match(tsv.name)
        dataset = tsv.parent.name
        if not m or dataset not in s.datasets or m["stage"] not in ("pretrain", "finetune"):
            continue
        measured = benchmark_seconds(tsv)
        if measured < min_seconds:
            continue
        ds = s.datasets[dataset]
        data = results / dataset / "data"
        n = split_counts(image_count(data / "cache/images.npy", data / "manifest.csv",
                                     ds.public_images), s.split.ratios)
        if m["stage"] == "pretrain":
            if m["rest"] not in s.method_names:
                continue
            run = s.pretrain_run(dataset, m["rest"])
            work = pretrain_work(n, run.settings, run.base)
        else:
            run = re.fullmatch(r"(\w+?)_labeled_([0-9.]+)_seed(\d+)", m["rest"])
            if run is None:
                continue
            method, pct, seed = run.groups()
            done = results / dataset / "finetune" / method / f"labeled_{pct}" / \
                f"seed{seed}" / "metrics.json"
            epochs = json.loads(done.read_text())["epochs_run"] if done.is_file() else None
            work = finetune_work(n, s.finetune_run(dataset, method, float(pct)).settings,
                                 float(pct), epochs)
        scale = (REFERENCE_SIZE / ds.image_size) ** 2
        infer_s = work.infer / (rate(table, "inference", work.arch) * scale)
        train_s = max(measured - overhead - infer_s, 1e-3)
        fits.setdefault((m["stage"], work.arch), []).append(work.train / train_s / scale)
    out = yaml.safe_load(yaml.safe_dump(table))
    for (stage, arch), rates in fits.items():
        rates.sort()
        out["gpu"][stage][arch] = round(rates[len(rates) // 2], 1)
    out["measured"] = {"date": datetime.date.today().isoformat(), "from": str(benchmarks),
                       "jobs": {f"{k[0]}/{k[1]}": len(v) for k, v in fits.items()}}
    return out


def estimate(config: dict, table: dict) -> dict[str, dict[str, float]]:
    """Modelled GPU-hours per dataset and stage of a run (the public datasets' sizes, the
    table's rates; no overhead or safety factor): what a run costs, before any data."""
    from ilmoco.config.resolve import resolve

    s = resolve(config)
    out: dict[str, dict[str, float]] = {}
    for d, ds in s.datasets.items():
        n = split_counts(ds.public_images, s.split.ratios)
        hours = {stage: 0.0 for stage in STAGES}
        for m in s.method_names:
            if s.method(m).is_ssl:
                run = s.pretrain_run(d, m)
                hours["pretrain"] += seconds(pretrain_work(n, run.settings, run.base),
                                             "pretrain", ds.image_size, table)
            if s.method(m).has_encoder:
                hours["cka"] += seconds(cka_work(n, len(s.fractions) * len(s.seeds),
                                                 s.cka.subset, s.cka.repeats,
                                                 s.arch_of(m)), "cka", ds.image_size, table)
            for pct in s.fractions:
                hours["finetune"] += len(s.seeds) * seconds(
                    finetune_work(n, s.finetune_run(d, m, pct).settings, pct), "finetune",
                    ds.image_size, table)
        for m in s.probe_methods():
            r = s.probe_run(d, m)
            epochs = r.settings.epochs if r.settings.protocol == "official" else 0
            hours["probe"] += seconds(probe_work(n, s.probe.fraction, r.arch, epochs),
                                      "probe", ds.image_size, table)
            if s.probe.linear == "only_ll":
                hours["linear_probe"] += seconds(
                    linear_probe_work(n, s.linear_probe_run(d, m).settings, s.probe.fraction,
                                      r.arch), "linear_probe", ds.image_size, table)
        out[d] = {k: v / 3600 for k, v in hours.items()}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m ilmoco.cluster.resources",
                                description="Runtime model: refit the throughput table "
                                            "from benchmarks, or estimate a run's GPU-hours.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("estimate")
    e.add_argument("configfiles", nargs="+", help="the run's --configfile list")
    e.add_argument("--table", default=None)
    c = sub.add_parser("calibrate")
    c.add_argument("--results", default="results")
    c.add_argument("--benchmarks", default="benchmarks")
    c.add_argument("--table", default=str(REPO / "workflow" / "resources" / "throughput.yaml"))
    c.add_argument("--out", required=True)
    c.add_argument("--min-seconds", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.command == "estimate":
        print_estimate(args.configfiles, args.table)
        return
    table = calibrate(Path(args.results), Path(args.benchmarks), load_table(args.table),
                      args.min_seconds)
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Throughput fitted by `python -m ilmoco.cluster.resources calibrate`.\n"
                   + yaml.safe_dump(table, sort_keys=False))
    print(f"wrote {out}: {table['measured']['jobs']}")


def print_estimate(configfiles, table_path=None) -> None:
    from snakemake.utils import update_config, validate

    from ilmoco.cluster.site import DEFAULT_THROUGHPUT

    config: dict = {}
    for f in configfiles:  # merged key by key, as Snakemake merges --configfile files
        update_config(config, yaml.safe_load(Path(f).read_text()) or {})
    validate(config, str(SCHEMA))
    table = load_table(table_path or DEFAULT_THROUGHPUT)
    hours = estimate(config, table)
    stages = list(STAGES)
    print("| dataset | " + " | ".join(stages) + " | total |")
    print("|---|" + "---:|" * (len(stages) + 1))
    for d, h in hours.items():
        print(f"| {d} | " + " | ".join(f"{h[s]:.0f}" for s in stages)
              + f" | {sum(h.values()):.0f} |")
    total = sum(sum(h.values()) for h in hours.values())
    print(f"\ntotal {total:.0f} GPU-hours (modelled work, {table_path or DEFAULT_THROUGHPUT};"
          f" {'measured' if table.get('measured') else 'estimated'} rates)")


if __name__ == "__main__":
    main()
