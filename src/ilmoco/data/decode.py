"""Decode every image once into the uint8 cache; later stages never decode PNG/JPEG.

``images.npy`` holds (N, C, S, S) uint8 (C = 1 for grayscale, 3 for colour) in manifest order,
produced by an aspect-preserving resize of the shorter side to S and a centre crop;
``index.csv`` maps row -> image_id. Both are written atomically. With ``fundus_crop``
(retinal photographs, as the jama16 replication's preprocessing the paper used) each image
is first cropped to the bounding box of its circular fundus and padded to a square, so the
whole fundus survives the centre crop.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFile

from ilmoco.data.dicom import is_dicom, read_dicom
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.data.intensity import windowed
from ilmoco.io import InputError, atomic_path, require_free_disk, write_csv

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a grey patch


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
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def fundus_box(img: Image.Image, threshold: float = 0.08) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the fundus: the rows and columns where more than 1 % of
    the pixels are brighter than ``threshold`` × the image's 99th brightness percentile
    (the background of a fundus photograph is black)."""
    gray = np.asarray(img.convert("L"), np.float32)
    bright = gray > threshold * max(np.percentile(gray, 99), 1.0)
    rows = np.flatnonzero(bright.mean(1) > 0.01)
    cols = np.flatnonzero(bright.mean(0) > 0.01)
    if len(rows) == 0 or len(cols) == 0:
        return 0, 0, img.width, img.height
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_fundus(img: Image.Image) -> Image.Image:
    """Crop to the fundus and pad with black to a square centred on it."""
    box = fundus_box(img)
    img = img.crop(box)
    side = max(img.size)
    square = Image.new(img.mode, (side, side))
    square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return square


def open_image(path: Path, window="file") -> Image.Image:
    """Decode an image file by its type: DICOM through pydicom (:mod:`ilmoco.data.dicom`),
    anything else through PIL; 16-bit grayscale comes back as 8-bit 'L' through ``window``
    (errors name the file)."""
    if is_dicom(path):
        return read_dicom(path, window)
    try:
        with Image.open(path) as im:
            im.load()
        return to_mode(im, 1, window) if im.mode in WIDE_MODES else im
    except FileNotFoundError:
        raise InputError(f"{path}: image listed in the manifest is missing") from None
    except Exception as e:
        raise InputError(
            f"{path}: cannot decode image ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "re-download it or remove it from the dataset"
        ) from None


def to_array(im: Image.Image, channels: int, size: int, fundus: bool = False) -> np.ndarray:
    """Convert, (crop to the fundus,) resize + centre-crop a decoded image to (C, S, S)
    uint8."""
    im = to_mode(im, channels)
    if fundus:
        im = crop_fundus(im)
    arr = np.asarray(resize_center_crop(im, size))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image(path: Path, channels: int, size: int, fundus: bool = False) -> np.ndarray:
    """Decode, convert, (crop to the fundus,) resize + centre-crop one image file to
    (C, S, S) uint8."""
    return to_array(open_image(path), channels, size, fundus)


def build_cache(
    manifest: pd.DataFrame, meta: DatasetMeta, root, out_images, out_index,
    size: int, threads: int = 1, progress: bool = True, fundus_crop: bool = False,
    opener: Callable[[str], Image.Image] | None = None,
) -> None:
    """Write the cache of ``manifest``'s images. ``opener`` decodes one manifest ``path``
    (default: the image file under ``root``); a format whose images are not files provides
    its own (``image_opener`` in its reader module, e.g. MedMNIST's arrays)."""
    root = Path(root)
    n, c = len(manifest), meta.channels
    out_images = Path(out_images)
    require_free_disk(out_images.parent, n * c * size * size, f"the image cache ({n} images)")
    opener = opener or (lambda p: open_image(root / p))

    def load(p: str) -> np.ndarray:
        return to_array(opener(p), c, size, fundus_crop)

    paths = list(manifest["path"])
    with atomic_path(out_images) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, c, size, size))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc=f"cache {size}px", unit="img", mininterval=2)
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for i, img in enumerate(pool.map(load, paths, chunksize=64)):
                arr[i] = img
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        arr.flush()
        del arr
    write_csv(out_index, pd.DataFrame({"row": np.arange(n), "image_id": manifest["image_id"]}))
