"""Training variance of the embedded demo: the same settings, K pretraining seeds.

For each dataset of the demo and each seed k, with every setting of the demo's
configuration (``config.yaml``, plus any ``--configfile``) except ``pretrain.seed = k`` and
``seeds = [k]``:

  * pretrains each SSL method and probes its block 4 (the linear probe), and probes the
    random-init control of seed k (the pretraining's own starting point): the *margin* is
    the pretrained probe minus the control's;
  * fine-tunes every method on each of the ``--fractions`` of the labels (default: the
    configuration's below 100 %, the demo's 1 % and 6 %) with seed k and takes each
    method's paired difference to the baseline on the same resampled test patients, and
    whether its model predicted one class.

Every stage is the workflow's own (``ilmoco.stages``), so seed 0 reproduces the demo's run
on the same machine. Writes one row per (dataset, method, seed, fraction) to ``--out`` (CSV,
with the date, machine, commit and a digest of the settings in its header lines) and prints
the summary the README's account is written from: for each dataset and method, the smallest
margin and the range of each paired difference across seeds, and whether it keeps its sign
in every seed, and per seed and fraction on how many datasets the best self-supervised
method's fine-tuning beats Supervised. It runs on CPU, for about 30 minutes on 2 cores with
the defaults:

    python bench/seed_variance.py --seeds 0 1 2 3 4 --out bench/results/seed_variance.csv
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ilmoco import numerics  # noqa: E402 (no torch: the CPU kernels are chosen below)

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--configfile", type=Path, nargs="*", default=[],
                   help="layered over config.yaml, as snakemake --configfile")
    p.add_argument("--datasets", nargs="*", help="default: the demo's use_datasets")
    p.add_argument("--methods", nargs="*",
                   help="default: the demo's methods (the paired baseline must be one)")
    p.add_argument("--fractions", type=float, nargs="+",
                   help="fine-tuning label fractions (default: the config's below 100 %%)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes; each runs one (dataset, seed) at a time on one thread")
    p.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    p.add_argument("--out", type=Path, required=True, help="the per-seed table (CSV)")
    return p.parse_args(argv)


def load_config(configfiles) -> dict:
    from snakemake.utils import update_config

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for f in configfiles:
        update_config(config, yaml.safe_load(Path(f).read_text()) or {})
    return config


def with_seed(config: dict, seed: int) -> dict:
    """The demo's configuration with pretraining seed and fine-tuning seed ``seed``."""
    from snakemake.utils import validate

    c = copy.deepcopy(config)
    c.setdefault("pretrain", {})["seed"] = seed
    c["seeds"] = [seed]
    for stage in ("pretrain", "finetune"):  # execution settings: no result changes
        c.setdefault(stage, {})["progress"] = "quiet"
    validate(c, str(SCHEMA))
    return c


def prepare_data(config: dict, dataset: str, work: Path) -> dict:
    """The dataset's data stages, as the workflow runs them: the synthetic data in its
    layout, manifest, split and cache."""
    from ilmoco.config.formats import FORMATS
    from ilmoco.config.resolve import resolve
    from ilmoco.config.settings.fields import result_fields
    from ilmoco.stages import cache, manifest, split, synthetic

    s = resolve(with_seed(config, 0))
    ds = s.datasets[dataset]
    d = work / dataset
    paths = {"root": d / "raw", "manifest": d / "manifest.csv", "meta": d / "dataset.json",
             "split": d / "split.csv", "images": d / "images.npy", "index": d / "index.csv"}
    if paths["index"].exists():
        return paths
    synthetic.run(generator=ds.synthetic_generator, root=paths["root"], options=ds.synthetic)
    manifest.run(fmt=ds.format, reader=ds.reader, detect=FORMATS[ds.format].detect,
                 others={n: f.detect for n, f in FORMATS.items()}, root=paths["root"],
                 options=ds.reader_options, out_manifest=paths["manifest"],
                 out_meta=paths["meta"])
    split.run(manifest=paths["manifest"], meta=paths["meta"], settings=result_fields(s.split),
              fractions=list(s.fractions), out_split=paths["split"])
    cache.run(manifest=paths["manifest"], meta=paths["meta"], root=paths["root"],
              reader=ds.reader, size=ds.image_size, fundus_crop=ds.fundus_crop,
              window=ds.window, threads=1, out_images=paths["images"],
              out_index=paths["index"])
    return paths


def one_seed(config: dict, dataset: str, seed: int, fractions: list[float], data: dict,
             work: Path) -> list[dict]:
    """Every method of one dataset at one seed: probe margins and paired differences."""
    import torch

    from ilmoco.config.resolve import resolve
    from ilmoco.data.formats.base import DatasetMeta
    from ilmoco.io import read_json
    from ilmoco.names import RANDOM_INIT
    from ilmoco.stages import evaluate, finetune, paired, pretrain, probe

    torch.set_num_threads(1)
    numerics.verify()
    s = resolve(with_seed(config, seed))
    meta = DatasetMeta.from_dict(read_json(data["meta"]))
    d = work / dataset / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    common = dict(split_csv=str(data["split"]), meta=meta, cache_images=str(data["images"]),
                  cache_index=str(data["index"]))

    def probe_block4(method, model):
        out = d / f"probe_{method}.csv"
        df = probe.run(probe.ProbeJob(
            run=s.probe_run(dataset, method), model=model, init_seed=s.pretrain.seed,
            zero_init_residual=s.control_zero_init_residual, out_csv=str(out),
            out_json=str(out.with_suffix(".json")), **common))
        return float(df.loc[df["block"] == "block4", "estimate"].iloc[0])

    control = probe_block4(RANDOM_INIT, None)
    rows, runs = [], {}
    for m in s.method_names:
        encoder, learned = None, {"control": control}
        if s.method(m).is_ssl:
            encoder = str(d / f"encoder_{m}.pt")
            pretrain.run(pretrain.PretrainJob(
                run=s.pretrain_run(dataset, m), out_encoder=encoder,
                out_metrics=str(d / f"pretrain_{m}.csv"),
                resume_path=str(d / f"resume_{m}.pt"), **common))
            learned["probe"] = probe_block4(m, encoder)
            learned["margin"] = learned["probe"] - control
        for fraction in fractions:
            ft = d / f"finetune_{m}_{fraction:g}"
            ft.mkdir(exist_ok=True)
            finetune.run(finetune.FinetuneJob(
                run=s.finetune_run(dataset, m, fraction), pct=fraction, seed=seed,
                encoder=encoder, out_predictions=str(ft / "predictions.csv"),
                out_predictions_last=str(ft / "predictions_last.csv"),
                out_selection=str(ft / "selection.json"), out_model=str(ft / "model.pt"),
                out_history=str(ft / "history.csv"), resume_path=str(ft / "resume.pt"),
                **common))
            result = evaluate.run(predictions=ft / "predictions.csv",
                                  predictions_last=ft / "predictions_last.csv",
                                  selection=ft / "selection.json", meta=meta,
                                  bootstrap=s.bootstrap, out_metrics=ft / "metrics.json")
            rows.append({"dataset": dataset, "method": m, "seed": seed, **learned,
                         "fraction": fraction, "metric": result["metric"],
                         "finetune": result["estimate"],
                         "one_class": bool(result["one_class"])})
            runs[(m, fraction, seed)] = (str(ft / "predictions.csv"),
                                         str(ft / "metrics.json"))
    diffs = paired.run(dataset=dataset, runs=runs, baseline=s.paired.baseline,
                       bootstrap=s.bootstrap, out_csv=str(d / "paired.csv"))
    for row in rows:
        hit = diffs[(diffs["method"] == row["method"]) & (diffs["fraction"] == row["fraction"])]
        row["baseline"] = s.paired.baseline
        if len(hit):
            r = hit.iloc[0]
            row.update(difference=r["estimate"], difference_low=r["ci_low"],
                       difference_high=r["ci_high"])
    return rows


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def main(argv=None) -> None:
    import pandas as pd

    from ilmoco.config.resolve import resolve
    from ilmoco.io import write_text
    from ilmoco.reporting.seeds import seed_summary, settings_digest, ssl_over_supervised

    args = parse_args(argv)
    config = load_config(args.configfile)
    # the demo's numerics, as the workflow sets them for its jobs: before torch is imported
    # here or in a worker (forked from this process, or spawned with its environment)
    numerics.apply(config.get("numerics", "native"))
    if args.methods:
        config["methods"] = list(args.methods)
    datasets = args.datasets or config["use_datasets"]
    args.fractions = args.fractions or [float(f) for f in config["fractions"] if f < 100]
    work = args.work or Path(tempfile.mkdtemp(prefix="ilmoco-seeds-"))
    start = time.perf_counter()
    data = {d: prepare_data(config, d, work) for d in datasets}
    tasks = [(d, k) for k in args.seeds for d in datasets]
    rows = []
    if args.workers <= 1:  # in this process (also when the module is not importable by name)
        for d, k in tasks:
            rows += one_seed(config, d, k, args.fractions, data[d], work)
            print(f"done {d} seed {k} ({time.perf_counter() - start:.0f} s)", flush=True)
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            futures = {pool.submit(one_seed, config, d, k, args.fractions, data[d], work):
                       (d, k) for d, k in tasks}
            for f, (d, k) in futures.items():
                rows += f.result()
                print(f"done {d} seed {k} ({time.perf_counter() - start:.0f} s)", flush=True)
    table = pd.DataFrame(rows).sort_values(["dataset", "method", "fraction", "seed"],
                                           kind="stable")
    s = resolve(with_seed(config, 0))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip() or "unknown"
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                      capture_output=True, text=True).stdout.strip():
        git += " (working tree)"  # uncommitted changes: the commit alone is not the code
    header = (f"# bench/seed_variance.py, {datetime.date.today().isoformat()}, {machine()}, "
              f"commit {git}, torch {__import__('torch').__version__}, "
              f"numerics {numerics.mode()}, "
              f"{time.perf_counter() - start:.0f} s\n"
              f"# seeds {args.seeds}, fine-tuning at "
              f"{' and '.join(f'{f:g} %' for f in args.fractions)}, "
              f"settings {settings_digest(s)}\n")
    write_text(args.out, header + table.to_csv(index=False, float_format="%.6g",
                                               lineterminator="\n"))
    print(seed_summary(table).to_string(index=False))
    print(ssl_over_supervised(table).to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
