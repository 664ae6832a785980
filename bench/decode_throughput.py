"""Image-cache throughput on images of the real datasets' sizes, side by side in one run.

Writes images as the public datasets hold them (NIH ChestX-ray14: PNG 1024x1024 grayscale;
EyePACS: JPEG 3888x2592 with a drawn fundus; IDC: PNG 50x50 colour) and measures images/s of
  * project - the cache's own path, ``ilmoco.data.decode.build_cache`` (reduced-scale decode,
              fundus box, resize, rows written into the array, progress records);
  * decode  - ``Image.open`` + ``load`` alone, at full size;
  * floor   - JPEG only: ``Image.draft`` at the scale the project decodes at + the same resize
              (the least any path decoding at that scale does);
  * draft8  - JPEG only: libjpeg's smallest scale (1/8) + the same resize; not a verdict
              (its pixels are further from a full decode), reported for the trade-off;
  * full    - the same image through a full-resolution path: the whole file decoded, the
              fundus box over every pixel, bilinear resize (the reference of the tolerance);
on one thread, and the project's path with all cores in threads and in processes. It prints
the ratios, the verdicts (EyePACS with the fundus crop >= 0.8 x floor, NIH >= 0.8 x decode),
how far the cached pixels are from a full-resolution decode (uint8 levels), and the runtime
model's estimate of the paper's EyePACS cache against the measured cost. Every verdict is a
ratio measured in the same run, so a concurrent load slows both sides.

    python bench/decode_throughput.py --json bench/out/decode.json
    python bench/decode_throughput.py --quick   # tiny sizes: the CPU smoke of the test suite
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, features

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ilmoco.cluster import resources as res  # noqa: E402
from ilmoco.data.decode import (  # noqa: E402
    MARGIN,
    build_cache,
    jpeg_scale,
    read_header,
    resize_center_crop,
)
from ilmoco.data.formats.base import DatasetMeta  # noqa: E402

PAPER_EYEPACS = 88_702  # images of the paper preset's EyePACS cache (both Kaggle halves)
PAPER_THREADS = 4  # the cache rule's threads


@dataclass(frozen=True)
class Case:
    """One kind of image: how the files look and what the paper preset caches them as."""

    name: str
    fmt: str  # JPEG | PNG
    width: int
    height: int
    channels: int
    size: int  # the cache's resolution
    fundus: bool = False
    verdict: str | None = None  # the baseline the project must reach 0.8 of


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("nih", "PNG", 64, 64, 1, 32, verdict="decode"),
                Case("eyepacs_crop", "JPEG", 160, 120, 3, 24, True, verdict="floor"),
                Case("eyepacs", "JPEG", 160, 120, 3, 24),
                Case("idc", "PNG", 50, 50, 3, 32)]
    return [Case("nih", "PNG", 1024, 1024, 1, 512, verdict="decode"),
            Case("eyepacs_crop", "JPEG", 3888, 2592, 3, 299, True, verdict="floor"),
            Case("eyepacs", "JPEG", 3888, 2592, 3, 299),
            Case("idc", "PNG", 50, 50, 3, 255)]


# ------------------------------------------------------------------ drawn images

def _smooth(rng, h, w, cell, dtype=np.float32) -> np.ndarray:
    """Noise with features about ``cell`` pixels wide (bicubic upsampling of a coarse grid)."""
    coarse = rng.standard_normal((max(2, h // cell), max(2, w // cell)), dtype=np.float32)
    img = Image.fromarray(coarse, "F").resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype)


def draw_fundus(width: int = 3888, height: int = 2592, seed: int = 0) -> np.ndarray:
    """A retinal photograph as the EyePACS cameras give it: a bright textured disc with
    vessels, darker towards its rim, on a black background with sensor noise, cut at the
    top and bottom, a little off centre. (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    cx = width / 2 + rng.uniform(-0.04, 0.04) * width
    cy = height / 2 + rng.uniform(-0.02, 0.02) * height
    r = height * rng.uniform(0.52, 0.58)
    yy, xx = np.ogrid[0:height, 0:width]
    rad = np.sqrt(((yy - cy) ** 2).astype(np.float32) + ((xx - cx) ** 2).astype(np.float32)) / r
    shade = (1 - 0.5 * rad ** 2) * (rad <= 1)
    texture = _smooth(rng, height, width, 24) * 10 + _smooth(rng, height, width, 4) * 5
    vessels = np.abs(_smooth(rng, height, width, 160)) < 0.04  # thin dark curves
    colour = np.array([205, 98, 41], np.float32) * rng.uniform(0.85, 1.05)
    detail = texture - np.float32(60) * vessels
    img = shade[..., None] * (colour + detail[..., None])
    img += rng.integers(-4, 5, img.shape, dtype=np.int8)  # sensor noise, on the black too
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_chest(width: int = 1024, height: int = 1024, seed: int = 0) -> np.ndarray:
    """A chest radiograph's look: a bright body, two darker lungs with ribs, film noise and
    a burnt-in marker. (H, W) uint8."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[0:height, 0:width]
    y, x = yy / height, xx / width
    body = np.exp(-((x - 0.5) / 0.42) ** 8 - ((y - 0.55) / 0.6) ** 8)
    lungs = sum(np.exp(-(((x - c) / 0.13) ** 2 + ((y - 0.5) / 0.25) ** 2) ** 2)
                for c in (0.32, 0.68))
    ribs = 0.5 + 0.5 * np.sin(y * 70 + 6 * np.abs(x - 0.5))
    img = 40 + 170 * body - 90 * lungs * body + 18 * ribs * lungs
    img = img + _smooth(rng, height, width, 16) * 6 + rng.normal(0, 2.5, (height, width))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L")
    ImageDraw.Draw(im).text((width // 25, height // 25), "R  PA", fill=255)
    return np.asarray(im)


def draw_patch(width: int = 50, height: int = 50, seed: int = 0) -> np.ndarray:
    """An H&E-stained histopathology patch: pink stroma with purple nuclei. (H, W, 3)."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.float32)
    img[:] = (230, 160, 200)
    nuclei = _smooth(rng, height, width, 4) > 0.8
    img[nuclei] = (110, 60, 150)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_case(case: Case, folder: Path, n: int) -> list[Path]:
    """``n`` distinct files of ``case`` (EyePACS-like JPEGs at quality 90)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        if case.fmt == "JPEG":
            arr, ext, opts = draw_fundus(case.width, case.height, i), "jpeg", {"quality": 90}
        elif case.channels == 1:
            arr, ext, opts = draw_chest(case.width, case.height, i), "png", {}
        else:
            arr, ext, opts = draw_patch(case.width, case.height, i), "png", {}
        path = folder / f"{case.name}_{i}.{ext}"
        Image.fromarray(arr).save(path, **opts)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ the measured paths

def decode_alone(path: Path) -> None:
    with Image.open(path) as im:
        im.load()


def floor(case: Case, scale: int | None = None):
    """Image.draft at the project's scale (or ``scale``) + the same resize + the row copy."""
    out = np.empty((case.channels, case.size, case.size), np.uint8)

    def run(path: Path) -> None:
        with Image.open(path) as im:
            s = scale or jpeg_scale(*im.size, MARGIN * case.size)
            im.draft(im.mode, (im.width // s, im.height // s))
            im.load()
        arr = np.asarray(resize_center_crop(im, case.size))
        out[:] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

    return run


def files_pass(fn, paths) -> float:
    """Images/s of one pass of ``fn`` over ``paths``."""
    t = time.perf_counter()
    for p in paths:
        fn(p)
    return len(paths) / (time.perf_counter() - t)


class CachePath:
    """The project's path: ``build_cache`` on a manifest of ``rows`` images (the files in
    turn), the array written to a temporary folder and removed after each pass."""

    def __init__(self, case: Case, paths, rows: int, tmp: Path):
        listed = [paths[i % len(paths)] for i in range(max(rows, len(paths)))]
        self.manifest = pd.DataFrame({"image_id": [str(i) for i in range(len(listed))],
                                      "path": [str(p) for p in listed]})
        self.meta = DatasetMeta(format="bench", task="binary", label_columns=["y"],
                                channels=case.channels, n_classes=2)
        self.case, self.out, self.first = case, tmp / f"{case.name}_cache", len(paths)

    def run(self, threads: int = 1, workers: str = "threads") -> tuple[float, np.ndarray]:
        """Images/s of one build, and its rows of the distinct files."""
        t = time.perf_counter()
        build_cache(self.manifest, self.meta, "/", self.out / "images.npy",
                    self.out / "index.csv", size=self.case.size, threads=threads,
                    progress=False, fundus_crop=self.case.fundus, workers=workers)
        rate = len(self.manifest) / (time.perf_counter() - t)
        rows = np.load(self.out / "images.npy")[:self.first].copy()
        for f in self.out.iterdir():
            f.unlink()
        return rate, rows


# Pillow's C calls that release the GIL while they run (ImagingSectionEnter).
GIL_FREE = ("decode' of 'ImagingDecoder", "resize' of 'ImagingCore", "reduce' of 'ImagingCore",
            "convert' of 'ImagingCore", "histogram' of 'ImagingCore")


def gil_share(case: Case, paths) -> float:
    """The share of one thread's time per image spent holding the GIL: all but Pillow's C
    calls that release it, from cProfile (its own overhead counts as held: an upper bound).
    Threads in one process can overlap only the rest."""
    import cProfile
    import pstats

    from ilmoco.data.decode import load_image

    prof = cProfile.Profile()
    prof.enable()
    for p in paths:
        load_image(p, case.channels, case.size, case.fundus)
    prof.disable()
    stats = pstats.Stats(prof)
    free = sum(tt for (_, _, name), (_, _, tt, _, _) in stats.stats.items()
               if any(g in name for g in GIL_FREE))
    return 1 - free / stats.total_tt


# ------------------------------------------------------------------ how far from full decode

def full_decode_reference(path: Path, case: Case) -> np.ndarray:
    """The cache's image as a full-resolution decode gives it: the whole file decoded, the
    fundus box on every pixel (np.percentile), plain bilinear resize."""
    with Image.open(path) as im:
        im = im.convert("RGB" if case.channels == 3 else "L")
    if case.fundus:
        gray = np.asarray(im.convert("L"), np.float32)
        bright = gray > 0.08 * max(np.percentile(gray, 99), 1.0)
        rows = np.flatnonzero(bright.mean(1) > 0.01)
        cols = np.flatnonzero(bright.mean(0) > 0.01)
        im = im.crop((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
        side = max(im.size)
        square = Image.new(im.mode, (side, side))
        square.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
        im = square
    w, h = im.size
    scale = case.size / min(w, h)
    nw, nh = max(case.size, round(w * scale)), max(case.size, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - case.size) // 2, (nh - case.size) // 2
    arr = np.asarray(im.crop((left, top, left + case.size, top + case.size)))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def difference(rows: np.ndarray, paths, case: Case) -> dict:
    d = np.concatenate([np.abs(rows[i].astype(int) - full_decode_reference(p, case)).ravel()
                        for i, p in enumerate(paths)])
    return {"mean": float(d.mean()), "p99": float(np.percentile(d, 99)),
            "p999": float(np.percentile(d, 99.9)), "max": int(d.max())}


# ------------------------------------------------------------------ the report

def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                     if ln.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        model = platform.processor() or "cpu"
    return f"{model}, {os.cpu_count()} cores"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=8, help="distinct files per kind of image")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed rounds of every path (medians count)")
    p.add_argument("--seconds", type=float, default=1.5,
                   help="work per timed pass of the cache path (sets its manifest's length)")
    p.add_argument("--cores", type=int, default=os.cpu_count(),
                   help="workers for the all-cores measurement")
    p.add_argument("--cases", nargs="+", default=None,
                   help="subset of: nih eyepacs_crop eyepacs idc")
    p.add_argument("--table", type=Path, default=ROOT / "workflow/resources/throughput.yaml",
                   help="throughput table whose decode model is checked")
    p.add_argument("--quick", action="store_true", help="tiny images (CPU smoke test)")
    p.add_argument("--json", type=Path, help="write the results here")
    return p.parse_args(argv)


def measure(case: Case, args, tmp: Path, table: dict) -> dict:
    """Every path of ``case`` in turn, ``args.repeats`` rounds after a warm-up round: a
    change of the machine's load between rounds touches all of them alike, and each ratio
    is the median of its per-round ratios."""
    paths = write_case(case, tmp / case.name, args.images)
    singles = {"decode": decode_alone, "full": lambda p: full_decode_reference(p, case)}
    if case.fmt == "JPEG":
        singles.update(floor=floor(case), draft8=floor(case, 8))
    warm = {k: files_pass(fn, paths) for k, fn in singles.items()}
    # a manifest long enough that the job's fixed costs weigh as in a real one
    rows = min(4096, round(args.seconds * max(warm.values())))
    one, many = CachePath(case, paths, rows, tmp), CachePath(case, paths, rows * args.cores, tmp)
    one.run(), many.run(args.cores, "threads"), many.run(args.cores, "processes")
    passes: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for k, fn in singles.items():
            passes.setdefault(k, []).append(files_pass(fn, paths))
        rate, cached = one.run()
        passes.setdefault("project", []).append(rate)
        for workers in ("threads", "processes"):
            passes.setdefault(f"project_{workers}_{args.cores}", []).append(
                many.run(args.cores, workers)[0])
    r = {k: {"images_per_s": statistics.median(v), "passes": v} for k, v in passes.items()}
    r["paired"] = {f"project/{k}": statistics.median(
        a / b for a, b in zip(passes["project"], passes[k])) for k in singles}
    for workers in ("threads", "processes"):
        k = f"project_{workers}_{args.cores}"
        r["paired"][f"{args.cores} {workers}/1 thread"] = statistics.median(
            a / b for a, b in zip(passes[k], passes["project"]))
    r.update(bytes_per_file=int(np.mean([p.stat().st_size for p in paths])), rows=rows,
             difference=difference(cached, paths, case))
    if case.fmt == "JPEG":
        r["scale"] = jpeg_scale(case.width, case.height, MARGIN * case.size)
    r["gil_share"] = statistics.median(gil_share(case, paths) for _ in range(3))
    r["model_s_per_image"] = res.cache_seconds([read_header(p) for p in paths], 1, 1,
                                               case.size, table)
    r["measured_s_per_image"] = 1 / r["project"]["images_per_s"]
    return r


def main(argv=None) -> dict:
    args = parse_args(argv)
    table = res.load_table(args.table)
    todo = [c for c in cases(args.quick) if args.cases is None or c.name in args.cases]
    results, ratios, verdicts = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in todo:
            r = results[case.name] = measure(case, args, Path(tmp), table)
            for k, v in r["paired"].items():
                ratios[f"{case.name}: {k}"] = v
            ratios[f"{case.name}: measured/model"] = \
                r["measured_s_per_image"] / r["model_s_per_image"]
            if case.verdict:
                verdicts[f"{case.name} >= 0.8 x {case.verdict}"] = \
                    ratios[f"{case.name}: project/{case.verdict}"] >= 0.8
    paper = None
    if "eyepacs_crop" in results and not args.quick:
        r = results["eyepacs_crop"]
        measured = PAPER_EYEPACS * r["measured_s_per_image"] / PAPER_THREADS
        modelled = PAPER_EYEPACS * r["model_s_per_image"] / PAPER_THREADS
        paper = {"images": PAPER_EYEPACS, "threads": PAPER_THREADS,
                 "measured_s": measured, "model_s": modelled,
                 "request_min": res.runtime_minutes(modelled, table),
                 "model/measured": modelled / measured}
        verdicts["paper EyePACS estimate within 2x of the measurement"] = \
            0.5 <= modelled / measured <= 2
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "pillow": Image.__version__,
              "libjpeg_turbo": features.version("libjpeg_turbo"),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "results": results, "ratios": ratios, "paper_eyepacs": paper,
              "verdicts": verdicts}
    print_report(report, todo)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return report


def print_report(report: dict, todo) -> None:
    print(f"\n{report['machine']}, Pillow {report['pillow']} (libjpeg-turbo "
          f"{report['libjpeg_turbo']}), {report['date']}")
    cores = report["args"]["cores"]
    head = (f"{'images':<14}{'size':>10}{'-> px':>6}{'full':>9}{'decode':>9}{'floor':>9}"
            f"{'draft8':>9}{'project':>9}{'threads':>9}{'procs':>9}   img/s (all cores: {cores})")
    print(head)
    for c in todo:
        r = report["results"][c.name]
        cells = "".join(f"{r[k]['images_per_s']:9.1f}" if k in r else f"{'-':>9}" for k in (
            "full", "decode", "floor", "draft8", "project", f"project_threads_{cores}",
            f"project_processes_{cores}"))
        print(f"{c.name:<14}{f'{c.width}x{c.height}':>10}{c.size:>6}{cells}")
    print("\nratios")
    for k, v in report["ratios"].items():
        print(f"  {k:<40}{v:8.2f}")
    print("\none thread's time per image holding the GIL (cProfile; the rest is Pillow's C code)")
    for c in todo:
        f = report["results"][c.name]["gil_share"]
        print(f"  {c.name:<14} {100 * f:4.1f} %: threads on 16 cores at most "
              f"{1 / (f + (1 - f) / 16):.1f} x one (Amdahl); processes share no GIL")
    print("\ncached pixels against a full-resolution decode (uint8 levels)")
    for c in todo:
        d = report["results"][c.name]["difference"]
        print(f"  {c.name:<14} mean {d['mean']:.2f}  99th pct {d['p99']:.0f}  "
              f"99.9th pct {d['p999']:.0f}  max {d['max']}")
    p = report["paper_eyepacs"]
    if p:
        print(f"\npaper preset, EyePACS cache: {p['images']} images on {p['threads']} threads:"
              f" measured {p['measured_s'] / 60:.1f} min of decoding, model "
              f"{p['model_s'] / 60:.1f} min (model/measured {p['model/measured']:.2f}); "
              f"request {p['request_min']} min")
    print("\nverdicts")
    for k, ok in report["verdicts"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {k}")


if __name__ == "__main__":
    main()
