"""Decode every image once into the uint8 cache; later stages never decode PNG/JPEG.

``images.npy`` holds (N, C, S, S) uint8 (C = 1 for grayscale, 3 for colour) in manifest order,
produced by an aspect-preserving resize of the shorter side to S and a centre crop;
``index.csv`` maps row -> image_id. With ``fundus_crop`` (retinal photographs, as the jama16
replication's preprocessing the paper used) each image is first cropped to the bounding box
of its circular fundus and padded to a square, so the whole fundus survives the centre crop.

Nothing is decoded or scanned at more pixels than the output needs: a JPEG is decoded at the
largest libjpeg scale (1/2, 1/4, 1/8: Pillow's ``draft``) that keeps at least ``MARGIN`` x
the output's pixels per side, the fundus box is found on that reduced image, and a resize by
an exact integer factor is the mean of the pixels each output pixel covers (``reduce``). The
cached pixels therefore differ slightly from a full-resolution decode; the tolerance is
measured (``bench/decode_throughput.py``) and tested (``tests/test_decode.py``).

The array is written in chunks to ``<name>.partial.npy`` beside the output with a progress
record (``<name>.partial.json``), so a killed job resumes at its last chunk and ends
byte-identical to an uninterrupted one; ``images.npy`` appears by an atomic rename.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFile

from ilmoco.data.dicom import is_dicom, read_dicom
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.data.intensity import windowed
from ilmoco.io import (
    InputError,
    fsync_dir,
    read_json,
    require_free_disk,
    write_csv,
    write_json,
)
from ilmoco.runlog import Progress, log

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a grey patch

# Reduce (libjpeg's DCT scaling, Image.reduce) only while at least MARGIN x the output's
# pixels per side remain; the bilinear resize does the rest. At 2 a cached EyePACS image
# stays within about one uint8 level of a full-resolution decode on average (measured).
MARGIN = 2
JPEG_SCALES = (8, 4, 2)  # the scales libjpeg decodes at directly


WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_mode(img: Image.Image, channels: int, window=None) -> Image.Image:
    """Convert any PIL image (RGBA, palette, 16-bit, LA...) to 'L' or 'RGB'; 16-bit
    grayscale through ``window`` (default: the image's own value range, never a fixed /257,
    which would leave 12-bit data nearly black; see :mod:`ilmoco.data.intensity`)."""
    if img.mode in WIDE_MODES:
        arr = np.asarray(img)
        if img.mode == "I" and arr.max() <= 255 and arr.min() >= 0:
            img = Image.fromarray(arr.astype(np.uint8), "L")
        else:
            img = Image.fromarray(windowed(arr, window), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8), "L")
    target = "L" if channels == 1 else "RGB"
    if img.mode in ("RGBA", "LA", "P", "PA") and target == "RGB":
        img = img.convert("RGBA").convert("RGB")
    return img if img.mode == target else img.convert(target)


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bilinear; an exact integer factor as the mean of
    the k x k pixels each output pixel covers), then crop the centre square."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        k = w // nw
        if k > 1 and (w, h) == (k * nw, k * nh):
            img = img.reduce(k)
        else:
            img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=MARGIN)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def percentile_u8(gray: Image.Image, q: float) -> float:
    """``np.percentile(gray, q)`` (linear interpolation) of an 8-bit image, from its
    histogram: exact, without sorting millions of pixels."""
    cum = np.cumsum(gray.histogram())
    pos = q / 100 * (int(cum[-1]) - 1)
    lo = math.floor(pos)
    below = int(np.searchsorted(cum, lo, side="right"))  # the value of order statistic lo
    above = int(np.searchsorted(cum, min(lo + 1, int(cum[-1]) - 1), side="right"))
    return below + (pos - lo) * (above - below)


def fundus_box(img: Image.Image, threshold: float = 0.08) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the fundus: the rows and columns where more than 1 % of
    the pixels are brighter than ``threshold`` × the image's 99th brightness percentile
    (the background of a fundus photograph is black)."""
    gray = img if img.mode == "L" else img.convert("L")
    level = threshold * max(percentile_u8(gray, 99), 1.0)
    bright = np.asarray(gray) > level
    rows = np.flatnonzero(bright.sum(1, dtype=np.int32) > 0.01 * gray.width)
    cols = np.flatnonzero(bright.sum(0, dtype=np.int32) > 0.01 * gray.height)
    if len(rows) == 0 or len(cols) == 0:
        return 0, 0, img.width, img.height
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def reduced_fundus_box(img: Image.Image, size: int) -> tuple[int, int, int, int]:
    """The fundus box of ``img`` found on a copy reduced by the largest integer factor that
    keeps ``MARGIN`` × ``size`` pixels across the fundus, in ``img``'s coordinates (its
    edges are then exact to under half an output pixel)."""
    k = max(1, min(img.size) // (MARGIN * size))
    while True:
        box = fundus_box(img.reduce(k)) if k > 1 else fundus_box(img)
        left, top, right, bottom = (box[0] * k, box[1] * k, min(img.width, box[2] * k),
                                    min(img.height, box[3] * k))
        finer = max(1, max(right - left, bottom - top) // (MARGIN * size))
        if finer >= k:
            return left, top, right, bottom
        k = finer  # a fundus smaller than the frame: again, at the precision it needs


def pad_square(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """``img`` cropped to ``box`` and padded with black to a square centred on it."""
    img = img.crop(box)
    side = max(img.size)
    square = Image.new(img.mode, (side, side))
    square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return square


def crop_fundus(img: Image.Image, size: int | None = None) -> Image.Image:
    """Crop to the fundus and pad with black to a square centred on it; with ``size`` (the
    output's) the box is found on a reduced copy."""
    return pad_square(img, fundus_box(img) if size is None else reduced_fundus_box(img, size))


def jpeg_scale(width: int, height: int, min_side: int) -> int:
    """The largest libjpeg scale 1/s whose decoded shorter side (⌈side / s⌉) keeps at least
    ``min_side`` pixels (1: decode at full size)."""
    short = min(width, height)
    return next((s for s in JPEG_SCALES if -(-short // s) >= min_side), 1)


def draft(im: Image.Image, min_side: int) -> None:
    """Ask libjpeg to decode ``im`` (a JPEG opened, not loaded) at the scale ``jpeg_scale``
    picks; other formats decode whole."""
    s = jpeg_scale(*im.size, min_side) if im.format == "JPEG" else 1
    if s > 1:  # Pillow picks the largest scale whose size covers the request: exactly 1/s
        im.draft(im.mode, (im.width // s, im.height // s))


def open_image(path: Path, min_side: int | None = None, window="file") -> Image.Image:
    """Decode an image file by its type: DICOM through pydicom (:mod:`ilmoco.data.dicom`),
    anything else through PIL; 16-bit grayscale comes back as 8-bit 'L' through ``window``
    (errors name the file). ``min_side``: a JPEG may be decoded at a reduced scale whose
    shorter side keeps at least this many pixels."""
    if is_dicom(path):
        return read_dicom(path, window)
    try:
        with Image.open(path) as im:
            if min_side:
                draft(im, min_side)
            im.load()
        return to_mode(im, 1, window) if im.mode in WIDE_MODES else im
    except FileNotFoundError:
        raise InputError(f"{path}: image listed in the manifest is missing") from None
    except Exception as e:
        raise InputError(
            f"{path}: cannot decode image ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "re-download it or remove it from the dataset"
        ) from None


@dataclass(frozen=True)
class Header:
    """What an image file's header says (PIL reads only the header on open)."""

    format: str  # PIL's name: JPEG, PNG, TIFF...
    width: int
    height: int
    bands: int


def read_header(path) -> Header | None:
    """The header of an image file, or None when PIL cannot read it."""
    try:
        with Image.open(path) as im:
            return Header(str(im.format), im.width, im.height, len(im.getbands()))
    except Exception:
        return None


def to_array(im: Image.Image, channels: int, size: int, fundus: bool = False) -> np.ndarray:
    """Convert, (crop to the fundus,) resize + centre-crop a decoded image to (C, S, S)
    uint8."""
    im = to_mode(im, channels)
    if fundus:
        im = crop_fundus(im, size)
    arr = np.asarray(resize_center_crop(im, size))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image(path: Path, channels: int, size: int, fundus: bool = False,
               window="file") -> np.ndarray:
    """Decode, convert, (crop to the fundus,) resize + centre-crop one image file to
    (C, S, S) uint8, decoding no more pixels than the output needs (``window``: how 16-bit
    grayscale becomes 8-bit)."""
    need = MARGIN * size
    im = open_image(path, min_side=need, window=window)
    if not fundus:
        return to_array(im, channels, size)
    im = to_mode(im, channels)
    box = reduced_fundus_box(im, size)
    side = max(box[2] - box[0], box[3] - box[1], 1)
    if side < need:
        # The scale was chosen for the shorter side, but this fundus is smaller than that:
        # decode again at the scale the fundus itself needs (when the file has one).
        header = read_header(path)
        if header is not None and (header.width, header.height) != im.size:
            im = to_mode(open_image(path, min_side=math.ceil(need * min(im.size) / side),
                                    window=window), channels)
            box = reduced_fundus_box(im, size)
    arr = np.asarray(resize_center_crop(pad_square(im, box), size))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


# ------------------------------------------------------------------ the cache, in chunks

WORKERS = ("threads", "processes")


@dataclass(frozen=True)
class CacheRun:
    """What one ``build_cache`` call did (the cache job's record of its work)."""

    images: int  # decoded by this call
    resumed_at: int  # rows already on disk when it started
    total: int
    workers: str
    threads: int
    seconds: float  # decoding and writing, without start-up


def partial_paths(out_images) -> tuple[Path, Path]:
    """The rows written so far and their progress record, beside ``out_images``."""
    out_images = Path(out_images)
    stem = out_images.name.removesuffix(".npy")
    return (out_images.with_name(f"{stem}.partial.npy"),
            out_images.with_name(f"{stem}.partial.json"))


# The job a worker runs: set before the pool starts, inherited by forked processes (only row
# numbers cross the process boundary; each worker writes its rows into the shared memmap).
_JOB: tuple | None = None


def _decode_row(i: int) -> None:
    arr, load, paths = _JOB
    arr[i] = load(paths[i])


def _pool(workers: str, threads: int) -> Executor | None:
    """An executor of ``threads`` workers: threads, or processes forked at once (before any
    other thread of this job runs). None: decode in this thread.

    concurrent.futures rather than multiprocessing.Pool: a Pool waits forever for the rows
    of a worker that died (killed for memory, say; CPython bpo-22393, issue 96062) and its
    ``terminate()`` can deadlock (issues 73945, 78178) - a CI cache job that met a corrupt
    image hung 25 minutes. An executor reports a dead worker, and ``shutdown(
    cancel_futures=True)`` lets the running decodes finish and stops the workers."""
    if threads <= 1:
        return None
    if workers == "processes":
        import multiprocessing

        if "fork" in multiprocessing.get_all_start_methods():
            pool = ProcessPoolExecutor(threads, mp_context=multiprocessing.get_context("fork"))
            pool.submit(int).result()  # fork the workers now, while this is the only thread
            return pool
        log("cache: processes need fork (not available here); using threads")
    return ThreadPoolExecutor(threads)


def _resume_rows(partial: Path, record: Path, fingerprint: str, shape) -> int:
    """Rows of a previous attempt to keep: those its record vouches for, if the record is of
    the same inputs and the partial array has the shape of this one."""
    try:
        rec = read_json(record)
        arr = np.load(partial, mmap_mode="r")
    except (OSError, ValueError):
        return 0
    if rec.get("fingerprint") != fingerprint or list(arr.shape) != list(shape):
        return 0
    return int(min(max(rec.get("rows", 0), 0), shape[0]))


def build_cache(
    manifest: pd.DataFrame, meta: DatasetMeta, root, out_images, out_index,
    size: int, threads: int = 1, progress: bool = True, fundus_crop: bool = False,
    opener: Callable[[str], Image.Image] | None = None, workers: str = "threads",
    checkpoint_every: int = 1024, fingerprint: str = "", window="file",
) -> CacheRun:
    """Write the cache of ``manifest``'s images. ``opener`` decodes one manifest ``path``
    (default: the image file under ``root``); a format whose images are not files provides
    its own (``image_opener`` in its reader module, e.g. MedMNIST's arrays). ``window``:
    how the default opener turns 16-bit grayscale into 8-bit (:mod:`ilmoco.data.intensity`).

    ``threads`` workers (``workers``: threads, or forked processes) decode the images;
    every ``checkpoint_every`` images the rows are synced to ``<name>.partial.npy`` and the
    progress record ``<name>.partial.json`` (with ``fingerprint``, which names the inputs
    and code) is replaced, so a call after a kill resumes there. The rows do not depend on
    the workers or the chunking: the result is byte-identical either way."""
    if workers not in WORKERS:
        raise ValueError(f"workers must be one of {WORKERS}, not {workers!r}")
    root, out_images = Path(root), Path(out_images)
    n, c = len(manifest), meta.channels
    shape = (n, c, size, size)
    partial, record = partial_paths(out_images)
    done = _resume_rows(partial, record, fingerprint, shape)
    if done:
        log(f"cache: resuming at image {done} of {n} ({partial.name})")
        arr = np.lib.format.open_memmap(partial, mode="r+")
    else:  # another job's rows, if any, go first (and free their disk space)
        record.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        require_free_disk(out_images.parent, n * c * size * size,
                          f"the image cache ({n} images)")
        arr = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    if opener is None:
        def load(p: str) -> np.ndarray:
            return load_image(root / p, c, size, fundus_crop, window)
    else:
        def load(p: str) -> np.ndarray:
            return to_array(opener(p), c, size, fundus_crop)

    global _JOB
    _JOB = (arr, load, list(manifest["path"]))
    start = time.perf_counter()
    step = max(1, checkpoint_every)
    pool = _pool(workers, threads)
    used = "processes" if isinstance(pool, ProcessPoolExecutor) else "threads"
    bar = Progress(n, done, desc=f"cache {size}px", mode="auto" if progress else "quiet",
                   unit="image")
    # One chunk's rows are synced and then recorded while the next chunk decodes: the record
    # never names a row that is not on disk, and the job does not wait for the disk.
    syncer, pending = ThreadPoolExecutor(1), None

    def checkpoint(fd: int, rows_done: int) -> None:
        os.fsync(fd)  # also writes back the pages dirtied through the memmap
        write_json(record, {"fingerprint": fingerprint, "rows": rows_done,
                            "shape": list(shape)})

    fh = open(partial, "rb+")
    try:
        for lo in range(done, n, step):
            rows = range(lo, min(n, lo + step))
            if pool is None:
                for i in rows:
                    _decode_row(i)
            else:
                try:
                    for _ in pool.map(_decode_row, rows,
                                      chunksize=max(1, len(rows) // (4 * threads))):
                        pass
                except BrokenProcessPool:
                    raise RuntimeError(
                        f"a cache worker process died while decoding images {rows.start}-"
                        f"{rows.stop - 1} (killed, e.g. out of memory?); rerun the job: it "
                        f"resumes at image {rows.start}") from None
            if pending is not None:
                pending.result()
            pending = syncer.submit(checkpoint, fh.fileno(), rows.stop)
            bar.update(len(rows))
        if pending is not None:
            pending.result()
    finally:  # on an error, drop the images not started yet; keep the last chunk's record
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        syncer.shutdown(wait=True)
        fh.close()
        _JOB = None
        bar.close()
    seconds = time.perf_counter() - start
    del arr
    # The index first: a kill between the two leaves a record of every row, which resumes.
    write_csv(out_index, pd.DataFrame({"row": np.arange(n), "image_id": manifest["image_id"]}))
    os.replace(partial, out_images)
    fsync_dir(out_images.parent)
    record.unlink(missing_ok=True)
    return CacheRun(n - done, done, n, used, threads, seconds)
