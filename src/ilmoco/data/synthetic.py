"""Synthetic stand-ins for the three datasets, written in exactly their real on-disk layouts.

The real data cannot be downloaded here, so the default DAG runs on these. They go through
the same readers as the real data. Every label is a *relation between two distant parts* of
the image: the opacities of the two lungs' upper zones (or of one lung's upper and lower
zone) differ, the nests of nuclei in the top and bottom half of a patch are of different
kinds, the lesion clusters above and below the fundus' horizontal axis are of different
kinds. Each part taken alone is drawn the same way in both classes, so the pooled local
features of a randomly initialised ResNet (at 32 px its zero-initialised residual branches
leave each block a pointwise function of ~11 px windows) separate the classes linearly only
where two parts fall into one window, while features that relate the parts, as instance
discrimination learns them, can. The parts keep each dataset's look (opacities, nuclei,
haemorrhages and exudates); patients carry small nuisance variation (anatomy, stain,
exposure) shared by their images. This departs from the real data on purpose: it makes the
demo a test of whether self-supervised learning happened.
Everything is a deterministic function of ``seed``.

``label_noise`` is the share of recorded labels that disagree with the image, as a second
reader might (NIH: each asymmetry the finding labels are read from; IDC: the patch's class;
EyePACS: the referable status, the grade redrawn from the other side of grade 2). It caps
what any model can score on the recorded test labels below 100, so a table keeps headroom.
It is drawn from its own random stream: the images are the same at any ``label_noise``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ilmoco.data.formats.layouts import NIH_LABELS

# Chest findings are asymmetries. Each lung may have an opacity in its upper and in its
# lower zone; asymmetry i (drawn with probability ASYMMETRY_P[i], more often in "sick"
# patients) is a difference between the two upper zones (0), or between the upper and lower
# zone of the left (1) or the right lung (2); the left upper zone is an opacity with
# probability 1/2 whatever they are, so each zone alone says nothing. Each NIH label names
# one pattern of asymmetries: (asymmetries present, asymmetries absent). Differences across
# the lower zones went unlearned by MoCo within the demo's budget when they were the only
# relations (block-4 probe at the control's level; measured), hence the vertical ones.
# A horizontal flip would swap asymmetries 1 and 2 (the chest augmentation has none).
ASYMMETRY_P = np.array([0.35, 0.3, 0.25])
NIH_FINDING_OF = dict(zip(
    ["Infiltration", "Effusion", "Atelectasis", "Pleural_Thickening", "Cardiomegaly", "Edema",
     "Emphysema", "Fibrosis", "Pneumonia", "Nodule", "Mass", "Pneumothorax", "Hernia",
     "Consolidation"],
    [((0,), ()), ((1,), ()), ((2,), ()), ((0,), (1,)), ((0,), (2,)), ((1,), (2,)),
     ((1,), (0,)), ((2,), (0,)), ((2,), (1,)), ((0, 1), ()), ((0, 2), ()), ((1, 2), ()),
     ((0, 1), (2,)), ((0, 1, 2), ())]))
# EyePACS grade distribution (grades 0..4): ~20 % referable (grade >= 2).
DR_LEVEL_P = np.array([0.72, 0.08, 0.14, 0.03, 0.03])
# Fundus lesions (and pigment spots) are drawn 1.4x the anatomy's scale, so that they stay
# visible at 32 px, and patients differ little in colour and exposure: with a retina
# colour that varied by patient, MoCo's instance discrimination learned the patient's colour
# instead of the lesions (measured).
LESION_SCALE = 1.4


def _grid(h: int, w: int):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _disk(yy, xx, cy, cx, r, soft=1.0):
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return np.clip((r - d) / soft + 0.5, 0, 1)


def _ellipse(yy, xx, cy, cx, ry, rx, soft=1.5):
    d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return np.clip((1 - d) * min(ry, rx) / soft + 0.5, 0, 1)


def _gauss(yy, xx, cy, cx, s):
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))


def _segment(yy, xx, p0, p1, width):
    (y0, x0), (y1, x1) = p0, p1
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    d = np.sqrt((yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2)
    return np.clip(width / 2 - d + 0.5, 0, 1)


def _smooth_noise(rng, h, w, sigma):
    return gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), sigma) * sigma


def _seeds(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _two_kinds(rng, differ: bool) -> tuple[int, int]:
    """The kinds (0 or 1) of a label's two parts: each is 0 or 1 with probability 1/2 in
    either class, and they differ exactly when ``differ`` (the label is their exclusive-or)."""
    first = int(rng.integers(2))
    return first, first ^ int(differ)


def _noise_rng(seed: int) -> np.random.Generator:
    """The stream of the label noise, apart from the images' streams (``_seeds``)."""
    return np.random.default_rng([seed, 0x6C6E])


def _check_noise(label_noise: float) -> float:
    if not 0 <= label_noise < 0.5:
        raise ValueError(f"synthetic label_noise {label_noise!r}: must be in [0, 0.5)")
    return float(label_noise)


def _to_u8(x) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------- NIH ChestX-ray14

def _chest_image(rng, patient, asym: np.ndarray, size: int) -> np.ndarray:
    yy, xx = _grid(size, size)
    s = size / 64.0
    c = size / 2 + patient["shift"] * s
    sc = patient["scale"]
    img = np.full((size, size), patient["bg"], np.float32)
    img += 0.35 * _ellipse(yy, xx, 34 * s, c[1], 30 * s * sc, 26 * s * sc)  # body
    # Opacities at four sites: upper and lower zone of each lung. asym[0] relates the two
    # upper zones, asym[1] the left lung's upper and lower zone, asym[2] the right lung's.
    ul = rng.random() < 0.5
    ur = ul ^ asym[0]
    present = {(-1, 0): ul, (1, 0): ur, (-1, 1): ul ^ asym[1], (1, 1): ur ^ asym[2]}
    for side in (-1, 1):
        lx = c[1] + side * 11 * s * sc
        lung = _ellipse(yy, xx, 31 * s, lx, 17 * s * sc, 13 * s * sc * 0.62)
        img -= 0.28 * lung
        ox = lx + side * 4.5 * s  # lateral, far from the other lung and the heart
        for zone, zy in ((0, 18), (1, 42)):
            if present[side, zone]:
                img += 0.35 * _disk(yy, xx, (zy + rng.uniform(-1, 1)) * s,
                                    ox + rng.uniform(-1, 1) * s, 3.2 * s)
    img += 0.22 * _ellipse(yy, xx, 40 * s, c[1] + 3 * s, 5.6 * s, 7 * s)  # heart
    img += 0.15 * _ellipse(yy, xx, 30 * s, c[1], 22 * s, 3 * s)  # spine / mediastinum
    img += _smooth_noise(rng, size, size, 3 * s) * 0.05 * patient["texture"]
    img = (img - 0.5) * patient["contrast"] + 0.5 + rng.normal(0, 0.03, img.shape)
    return _to_u8(np.clip(img, 0, 1) ** patient["gamma"])


def generate_nih(root, n_patients: int = 300, seed: int = 0, size: int = 64,
                 rgba_every: int = 50, label_noise: float = 0.0) -> None:
    """Write ``Data_Entry_2017.csv`` (Kaggle header quirks included), ``images_00N/images/``
    PNGs, and official ``train_val_list.txt`` / ``test_list.txt``."""
    root = Path(root)
    rngs = _seeds(seed, n_patients + 1)
    noise, label_noise = _noise_rng(seed), _check_noise(label_noise)
    lines, test, trainval, k = [], [], [], 0
    for p in range(n_patients):
        rng = rngs[p]
        pid = p + 1
        patient = dict(
            bg=rng.uniform(0.08, 0.16), shift=rng.uniform(-2, 2, 2), scale=rng.uniform(0.93, 1.05),
            contrast=rng.uniform(0.9, 1.1), gamma=rng.uniform(0.93, 1.07),
            texture=rng.uniform(0.5, 1.5), sick=rng.gamma(4.0, 0.25),
        )
        n_img = int(min(1 + rng.geometric(0.45) - 1, 6))
        official = "test" if rng.random() < 0.2 else "trainval"
        for fu in range(n_img):
            asym = rng.random(len(ASYMMETRY_P)) < np.minimum(ASYMMETRY_P * patient["sick"], 0.9)
            read = asym ^ (noise.random(len(asym)) < label_noise)  # what the report says
            labels = {n for n, (on, off) in NIH_FINDING_OF.items()
                      if read[list(on)].all() and not read[list(off)].any()}
            name = f"{pid:08d}_{fu:03d}.png"
            folder = root / f"images_{k // 400 + 1:03d}" / "images"
            folder.mkdir(parents=True, exist_ok=True)
            arr = _chest_image(rng, patient, asym, size)
            im = Image.fromarray(arr, "L")
            if rgba_every and k % rgba_every == rgba_every - 1:
                im = im.convert("RGBA")  # some real NIH PNGs are RGBA
            im.save(folder / name)
            finding = "|".join(n for n in NIH_LABELS if n in labels) or "No Finding"
            lines.append(f"{name},{finding},{fu},{pid},{int(rng.integers(20, 80))},"
                         f"{'MF'[int(rng.integers(2))]},{'PA' if rng.random() < 0.6 else 'AP'},"
                         f"{size},{size},0.143,0.143")
            (test if official == "test" else trainval).append(name)
            k += 1
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
    (root / "Data_Entry_2017.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(trainval) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")


# ---------------------------------------------------------------- IDC histopathology

def _patch(rng, stain, positive: bool, h: int, w: int) -> np.ndarray:
    yy, xx = _grid(50, 50)
    pink = np.array(stain["stroma"], np.float32)
    purple = np.array(stain["nuclei"], np.float32)
    fibres = _smooth_noise(rng, 50, 50, 2.0)
    img = pink[None, None] * (1 + 0.04 * fibres[..., None])
    # A nest of nuclei in the top and one in the bottom half, each of large dark irregular
    # or of small pale round nuclei; IDC <=> the two nests differ. Each kind is equally
    # likely in each half in either class, so only the relation between the halves tells it.
    for cy0, kind in zip((12.0, 38.0), _two_kinds(rng, positive)):
        cx0 = rng.uniform(12, 38)
        nuc = np.zeros((50, 50), np.float32)
        for _ in range(int(rng.integers(4, 7))):
            cy, cx = cy0 + rng.normal(0, 3), cx0 + rng.normal(0, 5)
            if kind:
                shape = _ellipse(yy, xx, cy, cx, rng.uniform(2.6, 3.6), rng.uniform(2.2, 3.6),
                                 soft=0.8)
            else:
                shape = _disk(yy, xx, cy, cx, rng.uniform(1.4, 2.0), soft=0.8)
            nuc = np.maximum(nuc, shape)
        colour = purple * 0.75 if kind else 0.25 * purple + 0.75 * np.float32([1.0, 0.97, 1.0])
        img = img * (1 - nuc[..., None]) + colour[None, None] * nuc[..., None]
    img = img * stain["intensity"] + rng.normal(0, 0.025, img.shape)
    return _to_u8(img[:h, :w])


def generate_idc(root, n_patients: int = 40, seed: int = 0, grid: int = 6,
                 label_noise: float = 0.0) -> None:
    """Write ``<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<c>.png`` and the Kaggle mirror
    ``IDC_regular_ps50_idx5/`` (hard links: every patch is present twice, as in the archive)."""
    root = Path(root)
    rngs = _seeds(seed, n_patients)
    noise, label_noise = _noise_rng(seed), _check_noise(label_noise)
    for p in range(n_patients):
        rng = rngs[p]
        pid = str(8863 + p * 7)
        stain = dict(
            # little stain variation between patients: with +-5 % per channel and a 0.85-1.1
            # intensity, MoCo discriminated patches by their patient's stain and its
            # block-4 probe stayed near the control's in some seeds (measured)
            stroma=np.clip([0.93, 0.62, 0.78] + rng.normal(0, 0.01, 3), 0, 1),
            nuclei=np.clip([0.42, 0.2, 0.55] + rng.normal(0, 0.012, 3), 0, 1),
            intensity=rng.uniform(0.97, 1.03),
        )
        tumour = rng.random() < 0.8
        ty, tx, tr = rng.uniform(1, grid - 2), rng.uniform(1, grid - 2), rng.uniform(1.2, 2.7)
        cols = int(rng.integers(grid - 2, grid + 1))
        for gy in range(grid):
            for gx in range(cols):
                if rng.random() < 0.15:
                    continue  # background patches are absent from the archive
                positive = tumour and (gy - ty) ** 2 + (gx - tx) ** 2 < tr ** 2
                edge = gx == cols - 1 and rng.random() < 0.5
                w = int(rng.integers(25, 50)) if edge else 50
                arr = _patch(rng, stain, positive, 50, w)
                c = int(positive) ^ int(noise.random() < label_noise)
                name = f"{pid}_idx5_x{gx * 50 + 1}_y{gy * 50 + 1}_class{c}.png"
                d = root / pid / str(c)
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr, "RGB").save(d / name)
                m = root / "IDC_regular_ps50_idx5" / pid / str(c)
                m.mkdir(parents=True, exist_ok=True)
                os.link(d / name, m / name)


# ---------------------------------------------------------------- EyePACS retinopathy

def _fundus(rng, patient, eye: str, level: int) -> np.ndarray:
    w = int(rng.integers(90, 131))
    h = int(w * rng.uniform(0.7, 0.95))
    yy, xx = _grid(h, w)
    cy, cx, r = h / 2, w / 2, h * 0.47
    s = r / 45.0
    rad = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
    base = np.array(patient["retina"], np.float32)
    img = base[None, None] * (1 - 0.45 * rad[..., None] ** 2)
    od_x = cx + (1 if eye == "right" else -1) * 0.55 * r
    img += np.array([0.3, 0.3, 0.15]) * _disk(yy, xx, cy, od_x, 6 * s)[..., None]
    img -= np.array([0.12, 0.1, 0.05]) * _gauss(yy, xx, cy, cx - (od_x - cx) * 0.3, 6 * s)[
        ..., None]
    for _ in range(5):  # vessels arcing from the optic disc
        ang = rng.uniform(0, 2 * np.pi)
        p1 = (cy + np.sin(ang) * 0.8 * r, od_x - np.cos(ang) * 0.9 * r)
        img -= np.array([0.1, 0.18, 0.1]) * _segment(yy, xx, (cy, od_x), p1, 1.6 * s)[..., None]
    s = s * LESION_SCALE
    for _ in range(int(rng.integers(0, 4))):  # pigment spots: dark, in any eye
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.9) * r
        img -= np.array([0.15, 0.12, 0.06]) * _disk(yy, xx, cy + np.sin(a) * d,
                                                     cx + np.cos(a) * d, rng.uniform(1.5, 3) * s)[
            ..., None]
    # One lesion cluster above and one below the disc-fovea axis, each red (haemorrhages) or
    # yellow (exudates); referable <=> the two differ. Each kind is equally likely at each
    # site in either class, so only the relation between the two sites tells the grade.
    for side, kind in zip((-1, 1), _two_kinds(rng, level >= 2)):
        ky, kx = cy + side * 0.62 * r, cx + rng.uniform(-0.25, 0.25) * r
        tint = np.array([0.35, 0.35, 0.0] if kind else [-0.3, -0.35, -0.15])  # yellow | red
        for _ in range(int(rng.integers(3, 6))):
            ly, lx = ky + rng.normal(0, 0.1) * r, kx + rng.normal(0, 0.14) * r
            img += tint * _disk(yy, xx, ly, lx, rng.uniform(2.5, 4.0) * s)[..., None]
    img = img * patient["exposure"] * rng.uniform(0.9, 1.1) + rng.normal(0, 0.02, img.shape)
    img = img * (rad <= 1.0)[..., None]  # black outside the fundus
    return _to_u8(img)


def generate_eyepacs(root, n_patients: int = 400, seed: int = 0,
                     label_noise: float = 0.0) -> None:
    """Write both labelled Kaggle halves: ``trainLabels.csv`` (image,level) with
    ``train/<patient>_<left|right>.jpeg``, and ``retinopathy_solution.csv``
    (image,level,Usage) with ``test/...`` for about 60 % of the patients, as Kaggle's
    35,126 / 53,576 split (patients disjoint between the halves)."""
    root = Path(root)
    for folder in ("train", "test"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rngs = _seeds(seed, n_patients)
    noise, label_noise = _noise_rng(seed), _check_noise(label_noise)
    rows = {"train": [], "test": []}
    for p in range(n_patients):
        rng = rngs[p]
        pid = str(10 + p * 3)
        half = "test" if rng.random() < 0.6 else "train"
        usage = "Public" if rng.random() < 0.2 else "Private"
        patient = dict(retina=np.clip([0.85, 0.42, 0.2] + rng.normal(0, 0.02, 3), 0, 1),
                       exposure=rng.uniform(0.92, 1.05))
        base_level = int(rng.choice(5, p=DR_LEVEL_P))
        for eye in ("left", "right"):
            level = int(np.clip(base_level + (rng.integers(-1, 2) if rng.random() < 0.3 else 0),
                                0, 4))
            arr = _fundus(rng, patient, eye, level)
            Image.fromarray(arr, "RGB").save(root / half / f"{pid}_{eye}.jpeg", quality=92)
            if noise.random() < label_noise:  # the grade of the other side of referable
                side = np.arange(5) < 2 if level >= 2 else np.arange(5) >= 2
                level = int(noise.choice(5, p=DR_LEVEL_P * side / (DR_LEVEL_P * side).sum()))
            rows[half].append(f"{pid}_{eye},{level}" + (f",{usage}" if half == "test" else ""))
    (root / "trainLabels.csv").write_text("image,level\n" + "\n".join(rows["train"]) + "\n")
    (root / "retinopathy_solution.csv").write_text(
        "image,level,Usage\n" + "\n".join(rows["test"]) + "\n")
