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
* ``cache``: decoding every image once, on ``threads`` CPU cores, each image priced by its
  file format and pixels (the headers of a seeded sample of the manifest's images) with the
  decode model (``cpu.decode``: per image, per million samples of the file, of what libjpeg
  decodes and of the output).

GPU rates are images (pretraining: pairs) per second at 224 px, scaled by (224 / size)², for
each stage and architecture (``workflow/resources/throughput.yaml``). Image counts come from
the image cache when it exists, else the manifest, else the size of the public dataset of
that format. ``calibrate`` refits the rates and the decode model from a finished run's
``benchmark:`` files::

    python -m ilmoco.cluster.resources calibrate --results results --benchmarks benchmarks \\
        --out ~/.config/ilmoco/throughput.yaml
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ilmoco.cluster.site import DEFAULT_THROUGHPUT
from ilmoco.config.bases import BASES
from ilmoco.data.decode import MARGIN, Header, jpeg_scale, read_header

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
    """A throughput table; a section it lacks (a table fitted before the decode model
    existed) comes from the shipped one."""
    table = yaml.safe_load(Path(path).read_text())
    if "decode" not in table.get("cpu", {}):
        shipped = yaml.safe_load(DEFAULT_THROUGHPUT.read_text())
        table["cpu"] = {**table.get("cpu", {}), "decode": shipped["cpu"]["decode"]}
    return table


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


# ------------------------------------------------------------------ the cache job

HEADER_SAMPLE = 64  # image headers read, seeded, per cache job when it is planned


def decode_group(fmt: str | None) -> str:
    """The throughput table's entry for a PIL format name."""
    return {"JPEG": "jpeg", "PNG": "png"}.get(fmt or "", "other")


def decode_terms(header: Header | None, size: int, table: dict) -> tuple[float, float]:
    """Thread-seconds to cache one image, in two parts: its file format's (per image, per
    million samples, i.e. pixels × bands, of the file and of what is decoded: a JPEG at
    libjpeg's reduced scale, see ``ilmoco.data.decode``) and the output's (per million
    output samples). Without a header (a file PIL cannot read, an array): an image of the
    output's size."""
    header = header or Header("", size, size, 3)
    rates = table["cpu"]["decode"]
    group = rates[decode_group(header.format)]
    w, h, bands = header.width, header.height, header.bands
    s = jpeg_scale(w, h, MARGIN * size) if header.format == "JPEG" else 1
    source = w * h * bands / 1e6
    decoded = -(-w // s) * -(-h // s) * bands / 1e6
    output = size * size * min(bands, 3) / 1e6
    fmt = group["image_ms"] + group["source_ms"] * source + group["decoded_ms"] * decoded
    return fmt / 1000, rates["output_ms"] * output / 1000


def decode_cost(header: Header | None, size: int, table: dict) -> float:
    return sum(decode_terms(header, size, table))


def sample_headers(manifest_csv, root, k: int = HEADER_SAMPLE, seed: int = 0
                   ) -> list[Header | None]:
    """Headers of a seeded sample of ``k`` manifest images (PIL reads only the header)."""
    import numpy as np

    with open(manifest_csv, newline="") as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    if not paths:
        return []
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(paths), min(k, len(paths)), replace=False))
    return [read_header(Path(root) / paths[i]) for i in picks]


def cache_seconds(headers, n_images: int, threads: int, size: int, table: dict) -> float:
    """Modelled wall seconds of a cache job: ``n_images`` at the sample's mean cost, spread
    over ``threads``."""
    per_image = sum(decode_cost(h, size, table) for h in headers) / len(headers) \
        if headers else decode_cost(None, size, table)
    return n_images * per_image / max(1, threads)


@functools.cache
def _planned_headers(manifest_csv: str, mtime: float, root: str) -> tuple:
    return tuple(sample_headers(manifest_csv, root))


def cache_request(manifest_csv, root, public_images: int, threads: int, size: int,
                  table: dict, attempt: int = 1, max_runtime: int | None = None) -> int:
    """The cache job's runtime request (minutes) from its manifest and a sample of its
    images' headers; before the manifest exists, the public dataset's size."""
    try:
        headers = _planned_headers(str(manifest_csv), os.path.getmtime(manifest_csv),
                                   str(root))
    except (OSError, TypeError):
        headers = ()
    n = image_count(None, manifest_csv, public_images)
    return runtime_minutes(cache_seconds(headers, n, threads, size, table), table, attempt,
                           max_runtime)


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
    """Refit the GPU rates and the decode model of ``table`` from a finished run.

    For every benchmarked pretrain / finetune job the work model gives the images it
    processed (inference passes counted at the table's inference rate); the fitted rate is
    the median of work / (measured seconds − the start-up overhead) per stage and
    architecture. The decode model's terms of each file format are scaled by the median
    factor that makes it match the cache jobs (``decode_fits``). Jobs shorter than
    ``min_seconds`` are skipped (start-up dominates)."""
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
    decode = decode_fits(results, benchmarks, s, table, min_seconds)
    for group, factors in decode.items():
        factor = sorted(factors)[len(factors) // 2]
        rates = out["cpu"]["decode"][group]
        for key in ("image_ms", "source_ms", "decoded_ms"):
            rates[key] = float(f"{rates[key] * factor:.3g}")
    out["measured"] = {"date": datetime.date.today().isoformat(), "from": str(benchmarks),
                       "jobs": {**{f"{k[0]}/{k[1]}": len(v) for k, v in fits.items()},
                                **{f"cache/{g}": len(v) for g, v in decode.items()}}}
    return out


def decode_fits(results: Path, benchmarks: Path, s, table: dict, min_seconds: float
                ) -> dict[str, list[float]]:
    """Per file format, the factors that make the decode model match each benchmarked cache
    job: its thread-seconds per image (the benchmark's wall seconds × the job's threads /
    the images that attempt decoded, from its record ``logs/cache.json``) against the
    model's cost of a sample of its images (their headers, read from the dataset root)."""
    fits: dict[str, list[float]] = {}
    for d, ds in s.datasets.items():
        tsv, record = benchmarks / d / "cache.tsv", results / d / "logs" / "cache.json"
        manifest = results / d / "data" / "manifest.csv"
        if not (tsv.is_file() and record.is_file() and manifest.is_file()):
            continue
        measured, work = benchmark_seconds(tsv), json.loads(record.read_text())
        headers = [h for h in sample_headers(manifest, ds.root) if h is not None]
        if measured < min_seconds or not work["images"] or not headers:
            continue
        per_image = measured * work["threads"] / work["images"]
        groups = [decode_group(h.format) for h in headers]
        group = max(set(groups), key=groups.count)
        terms = [decode_terms(h, ds.image_size, table) for h in headers]
        fmt, out = (sum(t) / len(terms) for t in zip(*terms))
        fits.setdefault(group, []).append(max(per_image - out, 0.05 * fmt) / fmt)
    return fits


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
    c.add_argument("--table", default=str(DEFAULT_THROUGHPUT))
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
