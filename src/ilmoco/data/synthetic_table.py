"""A synthetic dataset in the ``image_table`` layout: a CSV manifest and 16-bit PNGs holding
12-bit values (as exported radiographs often are), with a three-class label.

    <root>/labels.csv          image,patient,view,finding,site
    <root>/images/<patient>/<n>.png

Each frontal image (view PA) holds two blobs, one in its upper and one in its lower half, each
at one of three brightness levels; the label ``finding`` is the cyclic difference of the two
levels (``equal``: the same, ``up``: the lower one step brighter, ``down``: two steps). Each
blob alone is drawn the same way in every class, so the label is a relation between two
distant parts, as in the other synthetic datasets (:mod:`ilmoco.data.synthetic`). Lateral
views (``view`` LATERAL, about one patient in four) have no label: a dataset reads them away
with ``filters: {view: PA}``. Values span 0-4095 with a per-patient exposure, so a fixed
``/257`` would leave them nearly black and the cache must window them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ilmoco.data.synthetic import _check_noise, _disk, _grid, _noise_rng, _seeds, _smooth_noise

TABLE = "labels.csv"
CLASSES = ("equal", "up", "down")
LEVELS = (0.35, 0.6, 0.85)  # blob brightness, share of the 12-bit range
IMAGES_PER_PATIENT = 2
SIZE = 32


def _image(rng, exposure: float, top: int, bottom: int) -> np.ndarray:
    yy, xx = _grid(SIZE, SIZE)
    img = np.full((SIZE, SIZE), 0.15, np.float32) + _smooth_noise(rng, SIZE, SIZE, 2) * 0.03
    for level, cy in ((top, SIZE * 0.27), (bottom, SIZE * 0.73)):
        cx = SIZE / 2 + rng.uniform(-6, 6)
        blob = _disk(yy, xx, cy + rng.uniform(-2, 2), cx, 4.5)
        img = img * (1 - blob) + LEVELS[level] * blob
    img = img * exposure + rng.normal(0, 0.01, img.shape)
    return np.clip(np.rint(img * 4095), 0, 4095).astype(np.uint16)


def generate_image_table(root, n_patients: int = 40, seed: int = 0,
                         label_noise: float = 0.0) -> None:
    """Write ``labels.csv`` and ``images/<patient>/<n>.png`` (16-bit, values 0-4095);
    ``label_noise``: the share of frontal images recorded with one of the other two classes
    (the images do not change)."""
    root = Path(root)
    noise, label_noise = _noise_rng(seed), _check_noise(label_noise)
    rows = []
    for p, rng in enumerate(_seeds(seed, n_patients)):
        pid = f"P{p + 1:04d}"
        exposure = rng.uniform(0.8, 1.15)
        site = ("north", "south")[int(rng.integers(2))]
        views = ["PA"] * IMAGES_PER_PATIENT + (["LATERAL"] if rng.random() < 0.25 else [])
        for n, view in enumerate(views):
            top = int(rng.integers(3))
            rel = int(rng.integers(3))
            path = f"images/{pid}/{n}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            arr = _image(rng, exposure, top, (top + rel) % 3)
            if view == "LATERAL":
                arr = arr[:, ::-1].copy()
            Image.fromarray(arr).save(root / path)
            if view == "PA" and noise.random() < label_noise:
                rel = (rel + 1 + int(noise.integers(2))) % 3  # another class, what the report says
            rows.append((path, pid, view, CLASSES[rel] if view == "PA" else "", site))
    pd.DataFrame(rows, columns=["image", "patient", "view", "finding", "site"]).to_csv(
        root / TABLE, index=False, lineterminator="\n")
