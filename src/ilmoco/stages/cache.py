"""The ``cache`` stage: every image decoded and resized once into a uint8 array."""

from __future__ import annotations

import importlib

from ilmoco.data.decode import build_cache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.imports import module_of
from ilmoco.io import read_json, read_table


def run(*, manifest, meta, root, reader: str, size: int, fundus_crop: bool, threads: int,
        out_images, out_index) -> str:
    """Decode the manifest's images; a format whose images are not files (``reader``'s
    module has an ``image_opener``) opens them itself."""
    rows = read_table(manifest)
    opener = getattr(importlib.import_module(module_of(reader)), "image_opener", None)
    build_cache(rows, DatasetMeta.from_dict(read_json(meta)), root, out_images, out_index,
                size=size, threads=threads, fundus_crop=fundus_crop, progress=False,
                opener=opener(root) if opener else None)
    return f"{len(rows)} images cached at {size} px"
