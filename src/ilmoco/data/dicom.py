"""DICOM files to 8-bit images through pydicom (optional: ``pip install pydicom==3.0.2``).

Grayscale (MONOCHROME1/2), in the order of the DICOM grayscale pipeline (PS3.4 N.2.1):

1. stored values -> **modality LUT**: Rescale Slope/Intercept or a Modality LUT Sequence
   (pydicom's ``apply_modality_lut``), e.g. CT values to Hounsfield units;
2. -> **VOI**: the file's VOI LUT Sequence (pydicom's ``apply_voi_lut``, scaled by the LUT's
   own output range) or its first window (Window Center/Width with the VOI LUT Function
   LINEAR, LINEAR_EXACT or SIGMOID, PS3.3 C.11.2.1.2), mapped onto 0..255. A file without
   either, or ``window: range``, uses the image's own value range; ``window: [low, high]``
   (modality units) overrides the file's window (:mod:`ilmoco.data.intensity`);
3. **MONOCHROME1** (higher values darker) is inverted, so bright means dense as in
   MONOCHROME2.

Colour: RGB and YBR (converted to RGB by pydicom), palette colour through its LUT. A
multi-frame file gives its first frame (decoded alone), with a warning; enhanced multi-frame
files carry rescale and window in functional groups, which are read for that frame.
Compressed transfer syntaxes decode through pydicom's plugins: RLE natively, JPEG and JPEG-LS
through pylibjpeg + pylibjpeg-libjpeg, JPEG 2000 through Pillow; a syntax without an installed
decoder is a one-line error naming it and what to install.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ilmoco.data.intensity import to_uint8, window_bounds
from ilmoco.io import InputError

SUFFIXES = (".dcm", ".dicom", ".dic")
# files with these suffixes are never opened to look for the DICOM marker (one open fewer
# per image in the cache)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm",
                  ".gif")
JPEG_PLUGINS = "pip install pylibjpeg==2.1.0 pylibjpeg-libjpeg==2.5.0"


def is_dicom(path: Path) -> bool:
    """A DICOM file: a DICOM suffix, or the ``DICM`` preamble marker (PACS exports often
    name files by UID, without a suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SUFFIXES or suffix in IMAGE_SUFFIXES:
        return suffix in SUFFIXES
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _pydicom(path):
    try:
        import pydicom
        import pydicom.pixels  # noqa: F401
    except ImportError:
        raise InputError(f"{path}: reading DICOM needs pydicom: pip install pydicom==3.0.2") \
            from None
    return pydicom


def read_header(path):
    """The dataset without its pixel data (for sampling sizes and bit depths)."""
    pydicom = _pydicom(path)
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as e:
        raise InputError(f"{path}: cannot read DICOM file ({type(e).__name__}: "
                         f"{_first_line(e)}); re-export it or remove it from the dataset") \
            from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _frame_attributes(ds) -> None:
    """Enhanced multi-frame files keep rescale and window per frame in functional groups:
    copy those of frame 1 (shared first, then its own) to the top level where absent."""
    groups = []
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if seq in ds and len(ds[seq].value):
            groups.append(ds[seq].value[0])
    for group in groups:
        for macro, keys in (("PixelValueTransformationSequence",
                             ("RescaleSlope", "RescaleIntercept")),
                            ("FrameVOILUTSequence",
                             ("WindowCenter", "WindowWidth", "VOILUTFunction"))):
            if macro in group and len(group[macro].value):
                item = group[macro].value[0]
                for key in keys:
                    if key in item and key not in ds:
                        setattr(ds, key, item[key].value)


def _decode(ds, path, frames: int) -> np.ndarray:
    from pydicom.pixels import get_decoder, pixel_array

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and ts.is_compressed:
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise InputError(f"{path}: transfer syntax '{ts.name}' ({ts}) has no pixel decoder "
                             "in pydicom; convert the files to an uncompressed syntax (e.g. "
                             "gdcmconv --raw)") from None
        if not decoder.is_available:
            raise InputError(f"{path}: no installed decoder for transfer syntax '{ts.name}' "
                             f"({ts}); install one of: {'; '.join(decoder.missing_dependencies)}"
                             f" (JPEG and JPEG-LS: {JPEG_PLUGINS})")
    try:
        return pixel_array(ds, index=0 if frames > 1 else None)
    except InputError:
        raise
    except Exception as e:
        name = ts.name if ts is not None else "unknown transfer syntax"
        raise InputError(f"{path}: cannot decode DICOM pixel data ({name}; "
                         f"{type(e).__name__}: {_first_line(e)}); re-export the file or "
                         "remove it from the dataset") from None


def _voi(arr: np.ndarray, ds, window) -> np.ndarray:
    """Modality values -> 0..255 through the configured window, else the file's VOI."""
    from pydicom.pixels import apply_voi_lut

    fixed = isinstance(window, (list, tuple))
    if not fixed and window != "range":
        if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
            n, first, _ = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
            # the LUT's own output range: every entry through the same pydicom function
            entries = apply_voi_lut(np.arange(first, first + (n or 65536)), ds, index=0)
            out = apply_voi_lut(arr, ds, index=0, prefer_lut=True)
            return to_uint8(out, float(entries.min()), float(entries.max()))
        if "WindowCenter" in ds and "WindowWidth" in ds:
            return _window(arr, ds)
    return to_uint8(arr, *window_bounds(arr, window))


def _first(value) -> float:
    """The first of a multi-valued attribute (several windows), or the value itself."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _window(arr: np.ndarray, ds) -> np.ndarray:
    """The file's first window onto 0..255 (PS3.3 C.11.2.1.2: LINEAR maps
    c - 0.5 ± (w - 1)/2 to the output's ends, LINEAR_EXACT c ± w/2)."""
    c, w = _first(ds.WindowCenter), _first(ds.WindowWidth)
    fn = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if fn == "SIGMOID":
        if w <= 0:
            raise InputError(f"window width {w} must be > 0 for SIGMOID")
        out = 255.0 / (1.0 + np.exp(-4.0 * (np.asarray(arr, np.float64) - c) / w))
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if fn == "LINEAR_EXACT":
        return to_uint8(arr, c - w / 2, c + w / 2)
    if fn != "LINEAR":
        raise InputError(f"VOI LUT Function {fn!r} is not LINEAR, LINEAR_EXACT or SIGMOID")
    if w < 1:
        raise InputError(f"window width {w} must be >= 1 for LINEAR")
    return to_uint8(arr, c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2)


def _read(path):
    pydicom = _pydicom(path)
    try:
        return pydicom.dcmread(path)
    except FileNotFoundError:
        raise InputError(f"{path}: image listed in the manifest is missing") from None
    except Exception as e:
        raise InputError(f"{path}: cannot read DICOM file ({type(e).__name__}: "
                         f"{_first_line(e)}); re-export it or remove it from the dataset") \
            from None


def stored_values(path) -> np.ndarray:
    """The first frame's stored values, before any LUT (what the data report samples)."""
    ds = _read(path)
    return _decode(ds, path, int(ds.get("NumberOfFrames", 1) or 1))


def read_dicom(path, window="file") -> Image.Image:
    """Decode a DICOM file to an 8-bit 'L' (grayscale) or 'RGB' image (errors name the
    file)."""
    path = Path(path)
    ds = _read(path)
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = str(getattr(ds.get("SOPClassUID"), "name", "unknown SOP class"))
        why = ("the file may be truncated, re-export it" if "Image" in sop
               else "it is not an image, remove it from the dataset")
        raise InputError(f"{path}: DICOM file has no pixel data ({sop}); {why}")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        warnings.warn(f"{path}: multi-frame DICOM ({frames} frames); only the first frame "
                      "is used", stacklevel=2)
    _frame_attributes(ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        arr = _decode(ds, path, frames)
        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            return Image.fromarray(to_uint8(arr, 0, 2 ** bits - 1), "RGB")
        if arr.ndim == 3:  # colour samples (YBR already converted to RGB)
            if arr.dtype == np.uint8:
                return Image.fromarray(arr, "RGB")
            return Image.fromarray(to_uint8(arr, 0, 2 ** int(ds.BitsStored) - 1), "RGB")
        if not photometric.startswith("MONOCHROME"):
            raise InputError(f"photometric interpretation {photometric!r} is not supported")
        values = apply_modality_lut(arr, ds)
        out = _voi(values, ds, window)
    except InputError as e:
        msg = str(e)
        raise InputError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    if photometric == "MONOCHROME1":
        out = 255 - out
    return Image.fromarray(out, "L")
