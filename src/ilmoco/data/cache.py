"""The uint8 image cache as the training and evaluation stages read it (``decode`` writes it).

``images.npy`` holds (N, C, S, S) uint8 in manifest order, ``index.csv`` maps row ->
image_id; ``ImageCache`` opens the array as a memmap and finds rows by image id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ilmoco.io import InputError


class ImageCache:
    """Read-only view of a cache: ``rows(image_ids)`` and the uint8 memmap."""

    def __init__(self, images_path, index_path):
        self.images = np.load(images_path, mmap_mode="r")
        index = pd.read_csv(index_path, dtype={"image_id": str})
        self._row = pd.Series(index["row"].to_numpy(), index=index["image_id"].to_numpy())
        if len(self._row) != len(self.images):
            raise InputError(f"{index_path}: {len(self._row)} ids for {len(self.images)} images; "
                             "the cache is stale, delete it and rerun")

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def rows(self, image_ids) -> np.ndarray:
        ids = pd.Index(image_ids)
        missing = ids.difference(self._row.index)
        if len(missing):
            raise InputError(f"{len(missing)} image id(s) not in the cache, e.g. "
                             f"{list(missing[:3])}; the cache is stale, delete it and rerun")
        return self._row.loc[ids].to_numpy()

    def load(self, image_ids) -> np.ndarray:
        """Images for ``image_ids`` as one in-memory (n, C, S, S) uint8 array."""
        return read_rows(self.images, self.rows(image_ids))

    def view(self, image_ids) -> CachedImages:
        """Images for ``image_ids`` read from the memmap a slice at a time (a whole
        validation set need not fit in memory)."""
        return CachedImages(self.images, self.rows(image_ids))


class CachedImages:
    """Rows of a cache as a sequence: ``len()`` and slices (``x[a:b]``, read on access)."""

    def __init__(self, images: np.ndarray, rows: np.ndarray):
        self.images, self.rows = images, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, s: slice) -> np.ndarray:
        if not isinstance(s, slice):
            raise TypeError("CachedImages are read by slices")
        return read_rows(self.images, self.rows[s])


def read_rows(images: np.ndarray, rows) -> np.ndarray:
    """``images[rows]``, read in sorted row order (sequential on a memmap)."""
    rows = np.asarray(rows)
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows),) + images.shape[1:], images.dtype)
    out[order] = images[rows[order]]
    return out
