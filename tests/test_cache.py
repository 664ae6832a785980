"""The uint8 cache: contents against an independent decode, quirky files, clear errors, and
resuming a stopped build (the kill -9 through Snakemake is in test_cache_resume.py)."""

import json
import multiprocessing
import os
import signal
import threading

import numpy as np
import pytest
from layouts import nih_rows, write_eyepacs, write_idc, write_nih
from PIL import Image
from stagedata import read_format

from ilmoco.data.cache import ImageCache
from ilmoco.data.decode import build_cache, load_image
from ilmoco.io import InputError


def build(tmp_path, fmt, root, size=16, workers="threads"):
    df, meta = read_format(fmt, root)
    out = tmp_path / "cache"
    build_cache(df, meta, root, out / "images.npy", out / "index.csv", size=size, threads=2,
                progress=False, workers=workers)
    return df, meta, ImageCache(out / "images.npy", out / "index.csv")


def test_cache_matches_independent_decode(tmp_path):
    root = write_eyepacs(tmp_path / "dr", {"1_left": 0, "1_right": 3, "2_left": 1})
    df, meta, cache = build(tmp_path, "eyepacs_dr", root, size=16)
    assert cache.images.shape == (3, 3, 16, 16) and cache.images.dtype == np.uint8
    for i, rel in enumerate(df["path"]):
        im = Image.open(root / rel).convert("RGB")
        w, h = im.size  # aspect-preserving: shorter side -> 16, then centre crop
        s = 16 / min(w, h)
        nw, nh = max(16, round(w * s)), max(16, round(h * s))
        im = im.resize((nw, nh), Image.BILINEAR)
        l, t = (nw - 16) // 2, (nh - 16) // 2
        ref = np.asarray(im.crop((l, t, l + 16, t + 16))).transpose(2, 0, 1)
        np.testing.assert_array_equal(cache.images[i], ref)
    rows = cache.rows(["2_left", "1_left"])
    assert rows.tolist() == [2, 0]
    np.testing.assert_array_equal(cache.load(["2_left"])[0], cache.images[2])


def test_grayscale_kept_one_channel_rgba_handled(tmp_path):
    rows = nih_rows(2, 1)
    root = write_nih(tmp_path / "nih", rows, rgba=(rows[0][0],))
    _, _, cache = build(tmp_path, "nih_cxr14", root, size=8)
    assert cache.images.shape == (2, 1, 8, 8)
    im = Image.open(next(root.glob(f"images_*/images/{rows[0][0]}")))
    assert im.mode == "RGBA"
    # 20x16 -> 10x8 is an exact factor 2: each pixel the mean of its 2x2 block, rounded
    gray = np.asarray(im.convert("RGB").convert("L"), np.int64)
    ref = (gray.reshape(8, 2, 10, 2).sum((1, 3)) + 2) // 4
    np.testing.assert_array_equal(cache.images[0, 0], ref[:, 1:9])


def test_sixteen_bit_png_is_windowed_by_its_own_range_not_clipped(tmp_path):
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    path = tmp_path / "x16.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path, channels=1, size=8)
    np.testing.assert_array_equal(out[0], np.rint(arr / 63000 * 255).astype(np.uint8))


def test_idc_edge_patches_are_resized(tmp_path):
    root = write_idc(tmp_path / "idc", {"5": [(1, 1, 0), (51, 1, 1)]}, edge_width=20)
    df, meta, cache = build(tmp_path, "idc_breast", root, size=12)
    assert cache.images.shape == (2, 3, 12, 12)


@pytest.mark.parametrize("kind,workers", [("truncated_png", "threads"),
                                          ("truncated_jpeg", "processes"),
                                          ("garbage", "threads")])
def test_corrupt_images_name_the_file(tmp_path, kind, workers):
    if kind == "truncated_jpeg":
        root = write_eyepacs(tmp_path / "dr", {"1_left": 0, "1_right": 1}, sizes=((64, 64),))
        bad = root / "train" / "1_right.jpeg"
        fmt = "eyepacs_dr"
    else:
        rows = nih_rows(2, 1)
        root = write_nih(tmp_path / "nih", rows, size=(64, 64))
        bad = next(root.glob(f"images_*/images/{rows[1][0]}"))
        fmt = "nih_cxr14"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if kind != "garbage" else b"not an image at all")
    threads_before = set(threading.enumerate())  # another test's threads are not this one's
    with pytest.raises(InputError) as e:  # raised in a worker thread or process
        build(tmp_path, fmt, root, workers=workers)
    msg = str(e.value)
    assert str(bad) in msg and "cannot decode image" in msg and "\n" not in msg
    assert not (tmp_path / "cache" / "images.npy").exists()  # nothing half-written
    assert not list((tmp_path / "cache").glob("*.tmp"))
    # the workers are stopped and reaped before the error leaves build_cache
    assert not multiprocessing.active_children()
    assert set(threading.enumerate()) <= threads_before, threading.enumerate()


def test_disk_check(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    root = write_eyepacs(tmp_path / "dr", {"1_left": 0})
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 1000))
    with pytest.raises(InputError, match=r"needs .* GiB but only .* GiB is free"):
        build(tmp_path, "eyepacs_dr", root)


def draw_fundus(w=120, h=90, cx=64, cy=44, r=38):
    """A retinal photograph as the camera gives it: a bright disc with texture on black,
    off-centre, cut at the top and bottom."""
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.uint8)
    img[disc] = (rng.integers(120, 200, (int(disc.sum()), 3))).astype(np.uint8)
    img += (rng.integers(0, 6, img.shape)).astype(np.uint8)  # sensor noise on the black
    return Image.fromarray(img, "RGB"), (cx - r, max(0, cy - r), cx + r + 1, min(h, cy + r + 1))


def test_fundus_crop_finds_the_disc_and_keeps_it_whole():
    from ilmoco.data.decode import crop_fundus, fundus_box

    img, expected = draw_fundus()
    box = fundus_box(img)
    assert all(abs(a - b) <= 2 for a, b in zip(box, expected)), (box, expected)
    square = crop_fundus(img)
    assert square.width == square.height == box[2] - box[0]
    arr = np.asarray(square)
    # the disc fills the square left to right; the padding above and below is black
    assert arr[arr.shape[0] // 2, 2].mean() > 60 and arr[arr.shape[0] // 2, -3].mean() > 60
    assert arr[0].mean() < 10 and arr[-1].mean() < 10


def test_fundus_crop_in_the_cache(tmp_path):
    img, _ = draw_fundus(w=160, h=100, cx=40, cy=50, r=45)
    root = write_eyepacs(tmp_path / "dr", {"1_left": 0})
    img.save(root / "train" / "1_left.jpeg", quality=95)
    df, meta = read_format("eyepacs_dr", root)
    plain, cropped = tmp_path / "plain", tmp_path / "cropped"
    for out, crop in ((plain, False), (cropped, True)):
        build_cache(df, meta, root, out / "images.npy", out / "index.csv", size=32,
                    progress=False, fundus_crop=crop)
    a = ImageCache(plain / "images.npy", plain / "index.csv").images[0]
    b = ImageCache(cropped / "images.npy", cropped / "index.csv").images[0]
    # the plain centre crop cuts the off-centre disc; the fundus crop keeps all of it
    left_b, right_b = b[:, 16, 1].mean(), b[:, 16, -2].mean()
    assert left_b > 60 and right_b > 60
    assert a[:, 16, -2].mean() < 20  # right edge of the plain crop is background


def eyepacs_fixture(tmp_path, n=23):
    root = write_eyepacs(tmp_path / "dr", {f"{i}_left": i % 5 for i in range(n)},
                         sizes=((120, 90), (64, 80), (300, 200)))
    return root, *read_format("eyepacs_dr", root)


def test_threads_processes_and_chunk_sizes_write_the_same_bytes(tmp_path):
    root, df, meta = eyepacs_fixture(tmp_path)
    written = {}
    for name, kw in {"inline": dict(threads=1),
                     "threads": dict(threads=2, workers="threads", checkpoint_every=4),
                     "processes": dict(threads=2, workers="processes", checkpoint_every=5)
                     }.items():
        out = tmp_path / name
        run = build_cache(df, meta, root, out / "images.npy", out / "index.csv", size=24,
                          progress=False, fundus_crop=True, **kw)
        assert (run.images, run.resumed_at, run.total) == (23, 0, 23)
        assert run.workers == ("processes" if name == "processes" else "threads")
        assert sorted(p.name for p in out.iterdir()) == ["images.npy", "index.csv"]
        written[name] = (out / "images.npy").read_bytes()
    assert written["inline"] == written["threads"] == written["processes"]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="process workers need fork")
def test_a_worker_killed_mid_build_stops_it_with_a_clear_error(tmp_path):
    """A worker process killed by the system (as the OOM killer does) ends the build with an
    error naming the images, and the workers are reaped; with multiprocessing.Pool the
    build waited forever for that worker's rows."""
    root, df, meta = eyepacs_fixture(tmp_path)
    victim = df["path"].iloc[7]

    def opener(path):  # runs in the forked worker: the pool never runs it in this process
        if path == victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return Image.open(root / path)

    def give_up(*_):
        raise TimeoutError("build_cache still waiting 120 s after its worker was killed")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(120)
    try:
        with pytest.raises(RuntimeError, match="worker process died while decoding images 0-22"):
            build_cache(df, meta, root, tmp_path / "c" / "images.npy", tmp_path / "c" / "index.csv",
                        size=24, threads=2, workers="processes", opener=opener, progress=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not multiprocessing.active_children()
    assert not (tmp_path / "c" / "images.npy").exists()


def test_a_failed_build_resumes_at_its_last_record_and_ends_identical(tmp_path):
    """A job stopped mid-way (here: a file that cannot be read at image 9, with a record every
    4 images) keeps its rows beside the output; the next call decodes from image 8 on and
    writes the same bytes as an uninterrupted build."""
    root, df, meta = eyepacs_fixture(tmp_path)
    ref = tmp_path / "ref"
    build_cache(df, meta, root, ref / "images.npy", ref / "index.csv", size=24,
                progress=False, fingerprint="v1")
    bad = root / df["path"].iloc[9]
    good = bad.read_bytes()
    bad.write_bytes(good[:100])
    out = tmp_path / "out"
    kw = dict(size=24, progress=False, checkpoint_every=4, fingerprint="v1")
    with pytest.raises(InputError, match="cannot decode image"):
        build_cache(df, meta, root, out / "images.npy", out / "index.csv", **kw)
    assert not (out / "images.npy").exists()  # nothing half-written in the output's place
    assert json.loads((out / "images.partial.json").read_text())["rows"] == 8
    bad.write_bytes(good)  # the file is restored (re-downloaded)
    run = build_cache(df, meta, root, out / "images.npy", out / "index.csv", **kw)
    assert (run.resumed_at, run.images) == (8, 15)
    assert (out / "images.npy").read_bytes() == (ref / "images.npy").read_bytes()
    assert (out / "index.csv").read_bytes() == (ref / "index.csv").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "index.csv"]


def test_rows_of_other_inputs_are_never_resumed(tmp_path):
    root, df, meta = eyepacs_fixture(tmp_path, n=9)
    out = tmp_path / "out"
    partial, record = out / "images.partial.npy", out / "images.partial.json"
    bad = root / df["path"].iloc[6]
    good = bad.read_bytes()
    bad.write_bytes(b"broken")
    with pytest.raises(InputError):
        build_cache(df, meta, root, out / "images.npy", out / "index.csv", size=24,
                    progress=False, checkpoint_every=2, fingerprint="v1")
    assert partial.exists() and json.loads(record.read_text())["rows"] == 6
    bad.write_bytes(good)
    # another fingerprint (manifest, settings, code or decoder changed): from the start
    run = build_cache(df, meta, root, out / "images.npy", out / "index.csv", size=24,
                      progress=False, fingerprint="v2")
    assert run.resumed_at == 0 and run.images == 9
