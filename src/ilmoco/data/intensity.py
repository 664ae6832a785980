"""High-bit-depth intensities to the 8 bits of the image cache, in one place.

Radiographs exported as 16-bit PNG or TIFF usually hold 10-, 12- or 14-bit values (0-4095
for 12 bit); a fixed division by 257 would put them in 0-16, nearly black. Such an image is
mapped linearly from a window ``[low, high]`` onto 0-255 (clipped, rounded):

* ``window: file`` (default) and ``range``: the image's own value range (its minimum to its
  maximum), so each image keeps its full contrast; for DICOM, ``file`` first uses the file's
  own VOI LUT or window (see :mod:`ilmoco.data.dicom`);
* ``window: [low, high]``: a fixed window in stored values (for DICOM, after the modality
  LUT, e.g. Hounsfield units), the same for every image of the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WINDOW_MODES = ("file", "range")


def window_bounds(arr: np.ndarray, window) -> tuple[float, float]:
    """``(low, high)`` of ``window`` for ``arr``: a fixed pair, or the image's own range."""
    if isinstance(window, Sequence) and not isinstance(window, str):
        low, high = (float(v) for v in window)
        return low, high
    if window not in (None, *WINDOW_MODES):
        raise ValueError(f"unknown window {window!r}; use file, range or [low, high]")
    return float(np.min(arr)), float(np.max(arr))


def to_uint8(arr: np.ndarray, low: float, high: float) -> np.ndarray:
    """``arr`` mapped linearly from ``[low, high]`` onto 0..255, clipped and rounded; a
    window of no width (a constant image) gives 0."""
    arr = np.asarray(arr, np.float64)
    if not high > low:
        return np.zeros(arr.shape, np.uint8)
    scaled = (arr - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def windowed(arr: np.ndarray, window=None) -> np.ndarray:
    """``arr`` to uint8 through ``window`` (``file``/``range``/None = its own range)."""
    return to_uint8(arr, *window_bounds(arr, window))
