"""The ``cache`` stage: every image decoded and resized once into a uint8 array."""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path

from ilmoco.data.decode import build_cache, open_image
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.imports import module_of
from ilmoco.io import read_json, read_table


def run(*, manifest, meta, root, reader: str, size: int, fundus_crop: bool, threads: int,
        out_images, out_index, window="file") -> str:
    """Decode the manifest's images; a format whose images are not files (``reader``'s
    module has an ``image_opener``) opens them itself. ``window``: how 16-bit grayscale
    becomes 8-bit (:mod:`ilmoco.data.intensity`)."""
    rows = read_table(manifest)
    opener = getattr(importlib.import_module(module_of(reader)), "image_opener", None)
    if opener is not None:
        opener = opener(root)
    elif window != "file":  # the default opener is open_image with its default window
        opener = partial(open_window, Path(root), window)
    build_cache(rows, DatasetMeta.from_dict(read_json(meta)), root, out_images, out_index,
                size=size, threads=threads, fundus_crop=fundus_crop, progress=False,
                opener=opener)
    return f"{len(rows)} images cached at {size} px"


def open_window(root: Path, window, path: str):
    return open_image(root / path, window)
