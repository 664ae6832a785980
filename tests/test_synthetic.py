"""The embedded synthetic datasets: deterministic, real layouts, prevalences, and labels that
only a relation between two distant parts of the image tells."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from stagedata import generate, read_format

from ilmoco.data.formats.layouts import NIH_LABELS
from ilmoco.data.synthetic import NIH_FINDING_OF

SCRIPT = """
import hashlib, pathlib, sys
from ilmoco.config.formats import FORMATS
from ilmoco.imports import load_object
generate = lambda fmt, root, **kw: load_object(FORMATS[fmt].synthetic)(root, **kw)
root = pathlib.Path(sys.argv[1]); generate(sys.argv[2], root, n_patients=int(sys.argv[3]), seed=5)
h = hashlib.sha256()
for p in sorted(root.rglob('*')):
    if p.is_file():
        h.update(str(p.relative_to(root)).encode()); h.update(p.read_bytes())
print(h.hexdigest())
"""


@pytest.mark.parametrize("fmt,n", [("nih_cxr14", 25), ("idc_breast", 3), ("eyepacs_dr", 25)])
def test_same_seed_same_bytes_whatever_the_hash_seed(tmp_path, fmt, n):
    digests = []
    for i, hashseed in enumerate(("1", "2")):
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / str(i)), fmt, str(n)],
                           capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin:/bin"})
        digests.append(r.stdout.strip())
    assert digests[0] == digests[1]


def test_layouts_and_prevalences(tmp_path):
    generate("nih_cxr14", tmp_path / "nih", n_patients=300, seed=1)
    df, meta = read_format("nih_cxr14", tmp_path / "nih")
    no_finding = (df[meta.label_columns].sum(axis=1) == 0).mean()
    assert 0.25 < no_finding < 0.45 and df["patient_id"].value_counts().max() > 1
    assert df["Infiltration"].mean() > df["Effusion"].mean() > df["Consolidation"].mean() > 0
    generate("idc_breast", tmp_path / "idc", n_patients=30, seed=2)
    df, _ = read_format("idc_breast", tmp_path / "idc")
    assert 0.18 < df["idc"].mean() < 0.38
    generate("eyepacs_dr", tmp_path / "dr", n_patients=300, seed=3)
    df, _ = read_format("eyepacs_dr", tmp_path / "dr")
    assert 0.12 < df["referable"].mean() < 0.3 and (df.groupby("patient_id").size() == 2).all()


def _band(path, rows, cols=(0.0, 1.0)) -> float:
    """Mean intensity of one rectangle (fractions of the image's height and width)."""
    x = np.asarray(Image.open(path).convert("L"), np.float32)
    h, w = x.shape
    return float(x[int(rows[0] * h):int(rows[1] * h), int(cols[0] * w):int(cols[1] * w)].mean())


def _assert_relation(y, a, b):
    """Each part alone says nothing about the label (AUC near 0.5); how the two parts differ
    says a lot. This is what keeps a random network's pooled local features at chance."""
    assert abs(roc_auc_score(y, a) - 0.5) < 0.1 and abs(roc_auc_score(y, b) - 0.5) < 0.1
    assert roc_auc_score(y, np.abs(a - b)) > 0.75


@pytest.mark.parametrize("fmt,n,label,bands", [
    # IDC: the nests of nuclei in the top and the bottom half of the patch.
    ("idc_breast", 12, "idc", ((0.1, 0.4), (0.6, 0.9))),
    # EyePACS: the lesion clusters above and below the fundus' horizontal axis.
    ("eyepacs_dr", 150, "referable", ((0.12, 0.32), (0.68, 0.88))),
])
def test_labels_are_relations_not_local_content(tmp_path, fmt, n, label, bands):
    generate(fmt, tmp_path, n_patients=n, seed=4)
    df, _ = read_format(fmt, tmp_path)
    df = df.sample(min(len(df), 400), random_state=0)
    a, b = (np.array([_band(tmp_path / p, rows) for p in df["path"]]) for rows in bands)
    _assert_relation(df[label].to_numpy(), a, b)


@pytest.fixture(scope="module")
def nih(tmp_path_factory):
    root = tmp_path_factory.mktemp("nih")
    generate("nih_cxr14", root, n_patients=250, seed=4)
    return root, *read_format("nih_cxr14", root)


ZONES = {"upper": (0.22, 0.34), "lower": (0.6, 0.72), "left": (0.18, 0.34),
         "right": (0.68, 0.82)}


@pytest.mark.parametrize("finding,zone_a,zone_b", [
    ("Infiltration", "left upper", "right upper"),
    ("Effusion", "left upper", "left lower"),
    ("Atelectasis", "right upper", "right lower"),
])
def test_chest_findings_are_asymmetries(nih, finding, zone_a, zone_b):
    root, df, _ = nih

    def zone(name):
        side, height = name.split()
        return np.array([_band(root / p, ZONES[height], ZONES[side]) for p in df["path"]])

    _assert_relation(df[finding].to_numpy(), zone(zone_a), zone(zone_b))


def test_every_nih_label_is_a_pattern_of_asymmetries(nih):
    _, df, meta = nih
    assert set(NIH_FINDING_OF) == set(NIH_LABELS)
    assert (df[meta.label_columns].mean() > 0).all()


def _labels_by_pixels(fmt, root, label) -> dict:
    """Each image's recorded label(s), keyed by its pixels (file names can hold the class)."""
    import hashlib

    df, meta = read_format(fmt, root)
    col = meta.label_columns if label is None else [label]
    return {hashlib.sha256(Image.open(root / p).tobytes()).hexdigest(): tuple(v)
            for p, v in zip(df["path"], df[col].to_numpy().tolist())}


@pytest.mark.parametrize("fmt,n,label,bits", [
    ("nih_cxr14", 150, None, 3),  # three asymmetries, each misread: findings change if any
    ("idc_breast", 6, "idc", 1), ("eyepacs_dr", 100, "referable", 1)])
def test_label_noise_changes_recorded_labels_only_at_its_rate(tmp_path, fmt, n, label, bits):
    eps = 0.25
    generate(fmt, tmp_path / "clean", n_patients=n, seed=4)
    generate(fmt, tmp_path / "noisy", n_patients=n, seed=4, label_noise=eps)
    clean = _labels_by_pixels(fmt, tmp_path / "clean", label)
    noisy = _labels_by_pixels(fmt, tmp_path / "noisy", label)
    assert clean.keys() == noisy.keys()  # the same images
    changed = np.mean([clean[k] != noisy[k] for k in clean])
    rate = 1 - (1 - eps) ** bits
    # a binomial share of m images: 6 standard deviations (a chance failure ~2e-9)
    assert abs(changed - rate) < 6 * np.sqrt(rate * (1 - rate) / len(clean))
    with pytest.raises(ValueError, match="label_noise 0.5"):
        generate(fmt, tmp_path / "bad", n_patients=1, seed=4, label_noise=0.5)
