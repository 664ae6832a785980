"""Pretraining throughput, side by side in one run on one device.

Measures MoCo pairs per second for
  * ceiling   - the MoCo step alone (query fwd+bwd, key fwd, queue logits, EMA, optimiser)
                on random tensors already on the device, bf16 + channels_last + compile;
  * project   - this project's real pretraining loop (``ilmoco.training.loop.train_loop`` with the
                step ``ilmoco.training.ssl.setup`` builds) fed from a uint8 cache with the
                dataset's per-sample augmentation, for moco, moco_mse and moco_bt;
  * official  - an official-style baseline: PIL augmentation in DataLoader workers, fp32
                eager, the same model;
and prints one table plus the ratios (project / ceiling, project / official, each method /
moco), with peak GPU memory. ``--max-batch`` also searches the largest batch that fits.
Runs on CPU with small sizes (the CI smoke test) and writes JSON for the README.

    python bench/pretrain_throughput.py --arch resnet50 --size 224 --batch 256 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ilmoco.config.augment import AugmentSpec, preset  # noqa: E402
from ilmoco.config.resolve import resolve  # noqa: E402
from ilmoco.data.batches import BatchSource  # noqa: E402
from ilmoco.training import ssl  # noqa: E402
from ilmoco.training.loop import train_loop  # noqa: E402
from ilmoco.training.runtime import Runtime, compute_dtype, resolve_device  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", default="resnet50", choices=["resnet18", "resnet34", "resnet50"])
    p.add_argument("--size", type=int, default=224, help="training resolution (pixels)")
    p.add_argument("--batch", type=int, default=256, help="pairs per step")
    p.add_argument("--channels", type=int, default=3, choices=[1, 3],
                   help="1 = grayscale cache (chest X-rays), 3 = colour")
    p.add_argument("--augment", default="histo", choices=["chest", "histo", "retina", "none"],
                   help="the dataset's augmentation preset")
    p.add_argument("--methods", nargs="+", default=["moco", "moco_mse", "moco_bt"])
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps (compilation...)")
    p.add_argument("--images", type=int, default=0,
                   help="images in the synthetic uint8 cache (default: enough for the run)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the encoders (default: on for CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--placement", default="auto", choices=["auto", "device", "host", "memmap"],
                   help="where the uint8 cache lives during training")
    p.add_argument("--queue", type=int, default=65536)
    p.add_argument("--projector", type=int, nargs="+", default=[2048, 2048, 2048])
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers (official)")
    p.add_argument("--skip", nargs="*", default=[], choices=["ceiling", "project", "official"])
    p.add_argument("--max-batch", action="store_true",
                   help="also find the largest batch that fits (GPU only)")
    p.add_argument("--json", type=Path, help="write the results here")
    return p.parse_args(argv)


def pretrain_runs(args, device) -> dict:
    """The typed run of each method: the schema defaults adjusted to the benchmark's
    arguments (the same objects the ``pretrain`` stage receives)."""
    from snakemake.utils import validate

    cuda = device.type == "cuda"
    # SplitBatchNorm over 8 sub-batches (v2 preset) when the batch is large enough for it
    splits = 8 if args.batch % 8 == 0 and args.batch >= 128 else 1
    config = {
        "datasets": {"bench": {"format": "nih_cxr14", "root": ".", "image_size": args.size,
                               "augment": args.augment}},
        "use_datasets": ["bench"], "methods": ["moco", *[m for m in args.methods
                                                         if m != "moco"]],
        "pretrain": {"arch": args.arch, "batch_size": args.batch, "device": str(device),
                     "precision": args.precision, "channels_last": args.channels_last and cuda,
                     "compile": cuda if args.compile is None else args.compile,
                     "data_placement": args.placement, "checkpoint_every": 0,
                     "log_every": 10**9, "progress": "quiet",
                     "moco": {"queue_size": args.queue, "bn": "split", "bn_splits": splits},
                     "bt": {"projector": args.projector}},
    }
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    s = resolve(config)
    return {m: s.pretrain_run("bench", m) for m in s.ssl_methods}


def runtime_of(run, device) -> Runtime:
    return Runtime(device, run.settings.precision, compute_dtype(run.settings.precision))


def build(run, args, device, total_steps=1, augment=False):
    s = run.settings
    return ssl.setup(run, args.channels, runtime_of(run, device), total_steps, args.size,
                     s.channels_last, s.compile, augment=augment)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device):
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def measure_ceiling(args, runs, device) -> dict:
    """The MoCo step alone on random tensors already on the device."""
    torch.manual_seed(0)
    built = build(runs["moco"], args, device)
    fmt = built.memory_format
    x1 = torch.rand(args.batch, args.channels, args.size, args.size, device=device)
    x2 = torch.rand_like(x1)
    x1, x2 = x1.contiguous(memory_format=fmt), x2.contiguous(memory_format=fmt)

    def step():
        loss, _ = built.forward(x1, x2, None, 0)
        built.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        built.optimizer.step()

    return timed(step, args, device)


def timed(step, args, device) -> dict:
    reset_memory(device)
    for _ in range(args.warmup):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    dt = time.perf_counter() - t
    return {"pairs_per_s": args.steps * args.batch / dt, "seconds": dt,
            "peak_gpu_gb": peak_gb(device)}


def measure_project(args, runs, device, method, cache) -> dict:
    """The real loop: uint8 cache -> per-sample augmentation -> MoCo step, via train_loop."""
    torch.manual_seed(0)
    run_settings = runs[method]
    built = build(run_settings, args, device, args.warmup + args.steps, augment=True)
    s = run_settings.settings
    reset_memory(device)

    def run(n_steps, seed):
        rows = np.arange(n_steps * args.batch) % len(cache)
        src = BatchSource(cache, args.batch, seed, device, s.data_placement, rows=rows)
        train_loop(modules=built.model, optimizer=built.optimizer, source=src, epochs=1,
                   step_fn=built.step_fn, lr_fn=lambda step: s.optimizer.lr, resume=None,
                   seed=seed, log_every=10**9, progress="quiet")

    run(args.warmup, 0)
    sync(device)
    t = time.perf_counter()
    run(args.steps, 1)  # includes building this run's batch source (data placement)
    sync(device)
    dt = time.perf_counter() - t
    return {"pairs_per_s": args.steps * args.batch / dt, "seconds": dt,
            "peak_gpu_gb": peak_gb(device)}


def pil_pipeline(spec: AugmentSpec, size: int):
    """torchvision v1 transforms on PIL images, as the official scripts compose them."""
    import torchvision.transforms as T
    from PIL import ImageFilter

    class PilBlur:
        def __init__(self, sigma):
            self.sigma = sigma

        def __call__(self, im):
            import random

            return im.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))

    ops = []
    if spec.crop_scale:
        ops.append(T.RandomResizedCrop(size, scale=spec.crop_scale))
    if spec.jitter:
        ops.append(T.RandomApply([T.ColorJitter(*spec.jitter)], p=spec.jitter_p))
    if spec.grayscale_p:
        ops.append(T.RandomGrayscale(p=spec.grayscale_p))
    if spec.blur_p:
        ops.append(T.RandomApply([PilBlur(spec.blur_sigma)], p=spec.blur_p))
    if spec.rotation:
        ops.append(T.RandomRotation(spec.rotation))
    if spec.hflip:
        ops.append(T.RandomHorizontalFlip(spec.hflip))
    if spec.vflip:
        ops.append(T.RandomVerticalFlip(spec.vflip))
    ops.append(T.ToTensor())
    return T.Compose(ops)


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        a = self.images[i]
        im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
        return self.transform(im), self.transform(im)


def measure_official(args, runs, device, cache) -> dict:
    """PIL augmentation in DataLoader workers, fp32 eager, the same MoCo model."""
    torch.manual_seed(0)
    moco = runs["moco"]
    official = dataclasses.replace(moco, settings=dataclasses.replace(
        moco.settings, precision="fp32", compile=False, channels_last=False))
    built = build(official, args, device)
    ds = TwoViews(cache, pil_pipeline(preset(args.augment, "ssl"), args.size))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=args.batch, shuffle=True, drop_last=True, num_workers=args.workers,
        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    it = iter(loader)

    def step():
        nonlocal it
        try:
            a, b = next(it)
        except StopIteration:
            it = iter(loader)
            a, b = next(it)
        a, b = a.to(device, non_blocking=True), b.to(device, non_blocking=True)
        loss, _ = built.forward(a, b, None, 0)
        built.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        built.optimizer.step()

    return timed(step, args, device)


def max_batch(args, runs, device, method="moco_bt", limit=4096) -> int:
    """Largest batch (power-of-two search, then bisection) whose step fits in memory."""
    run = runs[method]

    def fits(b):
        s = run.settings
        c = dataclasses.replace(run, settings=dataclasses.replace(
            s, batch_size=b, moco=dataclasses.replace(s.moco, bn_splits=1)))
        try:
            built = build(c, args, device)
            x = torch.rand(b, args.channels, args.size, args.size, device=device)
            loss, _ = built.forward(x, x, None, 0)
            loss.backward()
            sync(device)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    lo, hi = 0, 8
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 8:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    runs = pretrain_runs(args, device)
    n = args.images or max(args.batch * (args.warmup + args.steps), args.batch * 4)
    rng = np.random.default_rng(0)
    tmp = tempfile.TemporaryDirectory()
    cache = np.lib.format.open_memmap(Path(tmp.name) / "images.npy", mode="w+", dtype=np.uint8,
                                      shape=(n, args.channels, args.size, args.size))
    for start in range(0, n, 1024):
        stop = min(n, start + 1024)
        cache[start:stop] = rng.integers(0, 256, (stop - start,) + cache.shape[1:], np.uint8)

    results = {}
    if "ceiling" not in args.skip:
        results["ceiling"] = measure_ceiling(args, runs, device)
    if "project" not in args.skip:
        for m in args.methods:
            results[m] = measure_project(args, runs, device, m, cache)
    if "official" not in args.skip:
        results["official"] = measure_official(args, runs, device, cache)
    extra = {}
    if args.max_batch and device.type == "cuda":
        extra["max_batch_moco_bt"] = max_batch(args, runs, device)

    def ratio(a, b):
        return results[a]["pairs_per_s"] / results[b]["pairs_per_s"] \
            if a in results and b in results else None

    ratios = {}
    for m in args.methods:
        ratios[f"{m}/ceiling"] = ratio(m, "ceiling")
        ratios[f"{m}/official"] = ratio(m, "official")
        if m != "moco":
            ratios[f"{m}/moco"] = ratio(m, "moco")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": str(torch.__version__), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in vars(args).items()},
        "results": results, "ratios": ratios, **extra,
    }
    print(f"\n{args.arch} {args.size}px batch {args.batch} on {report['device']}")
    print(f"{'configuration':<12}{'pairs/s':>10}{'peak GB':>10}")
    for k, v in results.items():
        mem = f"{v['peak_gpu_gb']:.1f}" if v["peak_gpu_gb"] is not None else "-"
        print(f"{k:<12}{v['pairs_per_s']:>10.1f}{mem:>10}")
    for k, v in ratios.items():
        if v is not None:
            print(f"{k:<20}{v:>8.2f}")
    if extra:
        print(extra)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    tmp.cleanup()
    return report


if __name__ == "__main__":
    main()
