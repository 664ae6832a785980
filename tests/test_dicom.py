"""Decoding by file type into the uint8 cache: DICOM files written with pydicom (modality LUT,
VOI window and LUT, MONOCHROME1, 12-bit values in 16-bit storage, compressed transfer
syntaxes, multi-frame) and 16-bit PNG/TIFF, each against an independent numpy computation of
the DICOM grayscale pipeline (PS3.3 C.11) or against pydicom's own functions."""

import warnings

import numpy as np
import pytest
from layouts import write_dicom
from PIL import Image

from ilmoco.data.decode import load_image, open_image
from ilmoco.data.intensity import to_uint8
from ilmoco.io import InputError

pydicom = pytest.importorskip("pydicom")


def stored_12bit(shape=(24, 32), seed=0):
    """12-bit values (0-4095) in 16-bit storage, with a gradient so the window matters."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 4095, shape[1])[None, :].repeat(shape[0], 0)
    return np.clip(ramp + rng.normal(0, 60, shape), 0, 4095).astype(np.uint16)


def linear_window(x, c, w):
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR) onto 0..255, written piecewise as the standard
    states it."""
    x = np.asarray(x, float)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0, y)
    y = np.where(x > c - 0.5 + (w - 1) / 2, 255, y)
    return np.rint(y).astype(np.uint8)


def decoded(path, **kw):
    return np.asarray(open_image(path, **kw))


def test_12bit_monochrome2_without_window_uses_its_own_range(tmp_path):
    x = stored_12bit()
    write_dicom(tmp_path / "a.dcm", x)
    lo, hi = x.min(), x.max()
    expected = np.rint((x.astype(float) - lo) / (hi - lo) * 255).astype(np.uint8)
    out = decoded(tmp_path / "a.dcm")
    assert out.dtype == np.uint8 and out.shape == x.shape
    np.testing.assert_array_equal(out, expected)
    assert out.min() == 0 and out.max() == 255  # not the 0-16 of a /257


def test_rescale_slope_intercept_then_the_files_window(tmp_path):
    x = stored_12bit(seed=1)
    slope, intercept, c, w = 0.5, -1024.0, -200.0, 1500.0
    write_dicom(tmp_path / "ct.dcm", x, RescaleSlope=slope, RescaleIntercept=intercept,
                WindowCenter=c, WindowWidth=w)
    modality = x.astype(float) * slope + intercept
    out = decoded(tmp_path / "ct.dcm")
    np.testing.assert_array_equal(out, linear_window(modality, c, w))
    # pydicom's own pipeline, rescaled from its output range to 0..255, agrees to rounding
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(tmp_path / "ct.dcm")
    ref = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    y_min, y_max = intercept, (2 ** 12 - 1) * slope + intercept
    ref8 = (ref - y_min) / (y_max - y_min) * 255
    assert np.abs(out - ref8).max() <= 0.5 + 1e-6


def test_monochrome1_is_inverted(tmp_path):
    x = stored_12bit(seed=2)
    write_dicom(tmp_path / "m1.dcm", x, photometric="MONOCHROME1", WindowCenter=2048.0,
                WindowWidth=4096.0)
    out = decoded(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(out, 255 - linear_window(x, 2048.0, 4096.0))
    # higher stored values are darker in MONOCHROME1: the left (low) side is the bright one
    assert out[:, :4].mean() > 200 and out[:, -4:].mean() < 55


def test_several_windows_use_the_first_and_linear_exact(tmp_path):
    x = stored_12bit(seed=3)
    write_dicom(tmp_path / "w.dcm", x, WindowCenter=[1000.0, 3000.0],
                WindowWidth=[800.0, 2000.0])
    np.testing.assert_array_equal(decoded(tmp_path / "w.dcm"), linear_window(x, 1000, 800))
    write_dicom(tmp_path / "e.dcm", x, WindowCenter=1000.0, WindowWidth=800.0,
                VOILUTFunction="LINEAR_EXACT")
    expected = np.rint(np.clip((x - 600.0) / 800.0, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(decoded(tmp_path / "e.dcm"), expected)


def test_voi_lut_sequence_and_a_configured_window(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    x = stored_12bit(seed=4)
    lut = (np.sqrt(np.arange(4096) / 4095) * 1023).astype(np.uint16)  # a gamma curve
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 10]
    item.add_new(0x00283006, "OW", lut.astype("<u2").tobytes())  # LUT Data
    write_dicom(tmp_path / "lut.dcm", x, VOILUTSequence=Sequence([item]), WindowCenter=10.0,
                WindowWidth=5.0)
    expected = np.rint(lut[x] / 1023 * 255).astype(np.uint8)  # the LUT wins over the window
    np.testing.assert_array_equal(decoded(tmp_path / "lut.dcm"), expected)
    # a window from the config overrides the file's VOI; `range` uses the image's own range
    fixed = decoded(tmp_path / "lut.dcm", window=(0, 4095))
    np.testing.assert_array_equal(fixed, np.rint(x / 4095 * 255).astype(np.uint8))
    own = decoded(tmp_path / "lut.dcm", window="range")
    assert own.min() == 0 and own.max() == 255


def test_signed_storage(tmp_path):
    x = (stored_12bit(seed=5).astype(np.int32) - 2048).astype(np.int16)
    write_dicom(tmp_path / "s.dcm", x, signed=True, RescaleSlope=1.0, RescaleIntercept=0.0,
                WindowCenter=0.0, WindowWidth=2000.0)
    np.testing.assert_array_equal(decoded(tmp_path / "s.dcm"), linear_window(x, 0.0, 2000.0))


def test_rle_lossless_written_by_pydicom_decodes_to_the_same_values(tmp_path):
    from pydicom.uid import RLELossless

    x = stored_12bit(seed=6)
    ds = write_dicom(tmp_path / "raw.dcm", x, WindowCenter=2000.0, WindowWidth=3000.0)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "rle.dcm").file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(decoded(tmp_path / "rle.dcm"),
                                  linear_window(x, 2000.0, 3000.0))


def test_jpeg_ls_through_pylibjpeg_equals_the_uncompressed_file():
    """pydicom's own test files: MR_small.dcm and its JPEG-LS lossless twin (decoded by the
    pylibjpeg-libjpeg plugin)."""
    pytest.importorskip("libjpeg")
    from pydicom.data import get_testdata_file

    raw = get_testdata_file("MR_small.dcm", download=False)
    jls = get_testdata_file("MR_small_jpeg_ls_lossless.dcm", download=False)
    assert pydicom.dcmread(jls).file_meta.TransferSyntaxUID.is_compressed
    ds = pydicom.dcmread(raw)
    x = ds.pixel_array.astype(float)
    expected = linear_window(x, float(ds.WindowCenter), float(ds.WindowWidth))
    np.testing.assert_array_equal(decoded(raw), expected)
    np.testing.assert_array_equal(decoded(jls), expected)


def test_multiframe_gives_the_first_frame_with_a_warning(tmp_path):
    frames = np.stack([stored_12bit(seed=s) for s in (7, 8, 9)])
    write_dicom(tmp_path / "mf.dcm", frames, WindowCenter=2048.0, WindowWidth=4096.0)
    with pytest.warns(UserWarning, match=r"mf.dcm: multi-frame DICOM \(3 frames\); only the "
                                         "first frame"):
        out = decoded(tmp_path / "mf.dcm")
    np.testing.assert_array_equal(out, linear_window(frames[0], 2048.0, 4096.0))


def test_a_dicom_without_suffix_is_found_by_its_preamble(tmp_path):
    x = stored_12bit(seed=10)
    write_dicom(tmp_path / "1.2.826.0.1.3680043.8.498.1", x)
    out = load_image(tmp_path / "1.2.826.0.1.3680043.8.498.1", channels=1, size=16)
    assert out.shape == (1, 16, 16) and out.dtype == np.uint8 and out.max() > 200


def test_bad_dicoms_are_one_line_errors_naming_the_file(tmp_path):
    from pydicom.uid import MPEG2MPML, HTJ2KLossless

    x = stored_12bit(seed=11)
    ds = write_dicom(tmp_path / "ok.dcm", x)
    data = (tmp_path / "ok.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.dcm").write_text("not a dicom file\n")
    for name, uid in (("mpeg.dcm", MPEG2MPML), ("htj2k.dcm", HTJ2KLossless)):
        ds.file_meta.TransferSyntaxUID = uid
        ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
        ds["PixelData"].VR = "OB"
        ds.save_as(tmp_path / name, enforce_file_format=True)
    sr = pydicom.dcmread(tmp_path / "ok.dcm")
    del sr.PixelData
    sr.save_as(tmp_path / "nopixels.dcm", enforce_file_format=True)
    cases = {"cut.dcm": "cannot decode DICOM pixel data",
             "text.dcm": "cannot read DICOM file",
             "mpeg.dcm": "transfer syntax 'MPEG2 Main Profile / Main Level'",
             "htj2k.dcm": "no installed decoder for transfer syntax 'High-Throughput JPEG 2000",
             "nopixels.dcm": "DICOM file has no pixel data"}
    for name, message in cases.items():
        with pytest.raises(InputError) as e:
            open_image(tmp_path / name)
        msg = str(e.value)
        assert msg.startswith(f"{tmp_path / name}: ") and message in msg, msg
        assert "\n" not in msg
    assert "pylibjpeg-openjpeg" in str(pytest.raises(InputError, open_image,
                                                     tmp_path / "htj2k.dcm").value)


def test_12bit_png_keeps_its_contrast(tmp_path):
    """A radiograph exported as 16-bit PNG with 12-bit values: windowed by its own range
    (0-4095 -> 0-255), never /257 (which would give 0-16)."""
    x = stored_12bit(seed=12)
    Image.fromarray(x).save(tmp_path / "xray.png")
    assert Image.open(tmp_path / "xray.png").mode == "I;16"
    out = decoded(tmp_path / "xray.png")
    lo, hi = float(x.min()), float(x.max())
    np.testing.assert_array_equal(out, np.rint((x - lo) / (hi - lo) * 255).astype(np.uint8))
    assert out.std() > 50
    # the cache path (resize + centre crop of the ramp's middle) keeps it too
    cached = load_image(tmp_path / "xray.png", channels=1, size=12)
    assert cached.max() - cached.min() > 150
    # a fixed window from the config
    fixed = decoded(tmp_path / "xray.png", window=(0, 4095))
    np.testing.assert_array_equal(fixed, to_uint8(x, 0, 4095))


def test_16bit_tiff_and_8bit_png_unchanged(tmp_path):
    x = stored_12bit(seed=13)
    Image.fromarray(x).save(tmp_path / "x.tif")
    out = decoded(tmp_path / "x.tif")
    assert out.min() == 0 and out.max() == 255
    eight = np.random.default_rng(0).integers(0, 256, (10, 12), dtype=np.uint8)
    Image.fromarray(eight, "L").save(tmp_path / "e.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(decoded(tmp_path / "e.png"), eight)  # 8 bit as stored


def test_without_pydicom_the_error_names_the_package(tmp_path, monkeypatch):
    import sys

    write_dicom(tmp_path / "x.dcm", stored_12bit())
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if not installed
    with pytest.raises(InputError, match=r"x.dcm: reading DICOM needs pydicom: pip install "
                                         r"pydicom==3.0.2$"):
        open_image(tmp_path / "x.dcm")
