"""The embedded synthetic datasets: deterministic, real layouts, realistic prevalences."""

import subprocess
import sys

import pytest

from ilmoco.datasets.readers import read_manifest
from ilmoco.synthetic import generate

SCRIPT = """
import hashlib, pathlib, sys
from ilmoco.synthetic import generate
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
    df, meta = read_manifest("nih_cxr14", tmp_path / "nih")
    no_finding = (df[meta.label_columns].sum(axis=1) == 0).mean()
    assert 0.4 < no_finding < 0.65 and df["patient_id"].value_counts().max() > 1
    assert df["Infiltration"].mean() > df["Hernia"].mean()
    generate("idc_breast", tmp_path / "idc", n_patients=30, seed=2)
    df, _ = read_manifest("idc_breast", tmp_path / "idc")
    assert 0.18 < df["idc"].mean() < 0.38
    generate("eyepacs_dr", tmp_path / "dr", n_patients=300, seed=3)
    df, _ = read_manifest("eyepacs_dr", tmp_path / "dr")
    assert 0.12 < df["referable"].mean() < 0.3 and (df.groupby("patient_id").size() == 2).all()
