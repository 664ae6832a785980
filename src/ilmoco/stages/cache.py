"""The ``cache`` stage: every image decoded and resized once into a uint8 array, resumably."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import PIL
from PIL import features

from ilmoco.data.decode import build_cache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.imports import module_of
from ilmoco.io import fingerprint, read_json, read_table, write_json
from ilmoco.optional import versions


def run(*, manifest, meta, root, reader: str, size: int, fundus_crop: bool, threads: int,
        out_images, out_index, window="file", workers: str = "threads",
        checkpoint_every: int = 1024, code: str = "", record=None) -> str:
    """Decode the manifest's images; a format whose images are not files (``reader``'s
    module has an ``image_opener``) opens them itself. ``window``: how 16-bit grayscale
    becomes 8-bit (:mod:`ilmoco.data.intensity`). ``workers``, ``checkpoint_every``:
    how it runs (``CacheSettings``; plain values here, so that the settings module is no
    part of this stage's code).

    Rows a killed attempt left beside ``out_images`` are kept when they come from the same
    manifest, settings, code (``code``) and decoder versions. ``record``: where to write what
    this attempt did (images decoded, threads), which ``make calibrate`` pairs with the job's
    benchmark file."""
    rows = read_table(manifest)
    opener = getattr(importlib.import_module(module_of(reader)), "image_opener", None)
    decoders = {"pillow": PIL.__version__, "numpy": np.__version__,
                **{lib: features.version(lib) for lib in ("jpg", "libjpeg_turbo", "zlib")},
                # a DICOM cache must not resume across the DICOM decoders' versions either
                **versions("pydicom", "pylibjpeg", "pylibjpeg-libjpeg")}
    done = build_cache(
        rows, DatasetMeta.from_dict(read_json(meta)), root, out_images, out_index, size=size,
        threads=threads, fundus_crop=fundus_crop, opener=opener(root) if opener else None,
        workers=workers, checkpoint_every=checkpoint_every, window=window,
        fingerprint=fingerprint(manifest, meta, str(root), reader, size, fundus_crop,
                                repr(window), code, decoders))
    if record is not None:
        write_json(record, dataclasses.asdict(done))
    resumed = f", resumed at image {done.resumed_at}" if done.resumed_at else ""
    on = "1 thread" if done.threads <= 1 else f"{done.threads} {done.workers}"
    return (f"{done.total} images cached at {size} px ({done.images} decoded in "
            f"{done.seconds:.1f} s on {on}{resumed})")

