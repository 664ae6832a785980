"""What an image file is, from its header (and, where asked, its stored values): type, size,
mode, bit depth, channels. Used to choose a dataset's channel count and by the data report.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from ilmoco.data.dicom import is_dicom, read_header, stored_values
from ilmoco.io import InputError

# Bits per sample of PIL's modes (PNG/TIFF 16-bit grayscale open as I;16).
MODE_BITS = {"1": 1, "L": 8, "P": 8, "LA": 8, "PA": 8, "RGB": 8, "RGBA": 8, "CMYK": 8,
             "YCbCr": 8, "LAB": 8, "HSV": 8, "I;16": 16, "I;16B": 16, "I;16L": 16,
             "I;16N": 16, "I": 32, "F": 32}
COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


def describe(path, values: bool = False) -> dict:
    """``{type, width, height, mode, bits, channels}`` of an image file from its header;
    with ``values`` also ``value_min``/``value_max`` of the stored values and ``bits_used``
    (the bits the largest value needs, e.g. 12 for 0-4095 in a 16-bit PNG)."""
    path = Path(path)
    if is_dicom(path):
        ds = read_header(path)
        photometric = str(ds.get("PhotometricInterpretation", ""))
        out = {"type": "DICOM", "width": int(ds.get("Columns", 0)),
               "height": int(ds.get("Rows", 0)), "mode": photometric,
               "bits": int(ds.get("BitsStored", 0)),
               "channels": 3 if int(ds.get("SamplesPerPixel", 1)) == 3
               or photometric == "PALETTE COLOR" else 1}
        if values:
            out.update(_value_range(stored_values(path)))
        return out
    try:
        with Image.open(path) as im:
            out = {"type": im.format or path.suffix.lstrip(".").upper(), "width": im.width,
                   "height": im.height, "mode": im.mode, "bits": MODE_BITS.get(im.mode, 8),
                   "channels": 3 if im.mode in COLOUR_MODES else 1}
            if values:
                im.load()
                out.update(_value_range(np.asarray(im)))
    except FileNotFoundError:
        raise InputError(f"{path}: image listed in the manifest is missing") from None
    except Exception as e:
        raise InputError(f"{path}: cannot read image header ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0]})") from None
    return out


def _value_range(arr: np.ndarray) -> dict:
    lo, hi = float(np.min(arr)), float(np.max(arr))
    used = max(1, math.ceil(math.log2(hi + 1))) if hi >= 0 and float(hi).is_integer() else None
    return {"value_min": lo, "value_max": hi, "bits_used": used}


def sample_rows(n_total: int, n: int) -> np.ndarray:
    """``n`` row indices spread evenly over ``n_total`` rows (deterministic, no seed)."""
    if n_total <= n:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(int))


def describe_image(im: Image.Image, kind: str) -> dict:
    """The same description of an image that is no file (e.g. a MedMNIST array)."""
    arr = np.asarray(im)
    return {"type": kind, "width": im.width, "height": im.height, "mode": im.mode,
            "bits": MODE_BITS.get(im.mode, 8), "channels": 3 if im.mode in COLOUR_MODES else 1,
            **_value_range(arr)}
