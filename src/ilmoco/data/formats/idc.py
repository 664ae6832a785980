"""IDC breast histopathology (Kaggle "Breast Histopathology Images").

    <root>/<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<c>.png   (50x50 RGB, edge patches smaller)

The Kaggle archive holds every patient folder twice, at the root and again under
``IDC_regular_ps50_idx5/``; each patch is counted once (the root-level copy wins).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from ilmoco.data.formats.base import DatasetMeta, require_dir
from ilmoco.data.formats.layouts import IDC_MIRROR, idc_patient_dirs
from ilmoco.io import InputError
from ilmoco.runlog import log

PATCH_RE = re.compile(r"^(?P<pid>[^_/]+)_idx5_x(?P<x>\d+)_y(?P<y>\d+)_class(?P<c>[01])\.png$")
MIRROR = IDC_MIRROR


def report_ignored(base: Path, root: Path) -> None:
    """Say what the reader leaves out: PNGs in a patient's folders other than 0/ and 1/ (or
    directly in the patient folder), with a count and examples."""
    ignored = []
    for pdir in sorted(os.scandir(base), key=lambda e: e.name):
        if not pdir.is_dir() or pdir.name == MIRROR:
            continue
        for dirpath, dirnames, files in os.walk(pdir.path):
            dirnames.sort()
            rel = Path(dirpath).relative_to(pdir.path)
            if rel.parts[:1] in (("0",), ("1",)) and len(rel.parts) == 1:
                continue
            ignored += [str(Path(dirpath, f).relative_to(root)) for f in sorted(files)
                        if f.lower().endswith(".png")]
    if ignored:
        log(f"{base}: ignored {len(ignored)} patch(es) outside a <patient>/0/ or "
            f"<patient>/1/ class folder, e.g. {ignored[:3]}")


def read_idc_breast(root, on_missing: str = "error") -> tuple[pd.DataFrame, DatasetMeta]:
    root = Path(root)
    require_dir(root, "idc_breast")
    bases = [root] + ([root / MIRROR] if (root / MIRROR).is_dir() else [])
    rows, seen, n_dupes = [], set(), 0
    for base in bases:
        report_ignored(base, root)
        for pdir in idc_patient_dirs(base):
            for cls in ("0", "1"):
                cdir = pdir / cls
                if not cdir.is_dir():
                    continue
                for f in sorted(os.scandir(cdir), key=lambda e: e.name):
                    if not f.name.lower().endswith(".png"):
                        continue
                    m = PATCH_RE.match(f.name)
                    rel = str(Path(f.path).relative_to(root))
                    if m is None:
                        raise InputError(
                            f"{rel}: file name does not match "
                            "<patient>_idx5_x<X>_y<Y>_class<0|1>.png"
                        )
                    if m["pid"] != pdir.name or m["c"] != cls:
                        raise InputError(
                            f"{rel}: name says patient {m['pid']} class {m['c']} but it sits in "
                            f"{pdir.name}/{cls}/"
                        )
                    image_id = f.name[:-4]
                    if image_id in seen:
                        n_dupes += 1
                        continue
                    seen.add(image_id)
                    rows.append((image_id, rel, pdir.name, int(cls), int(m["x"]), int(m["y"])))
    if not rows:
        raise InputError(
            f"{root}: no IDC patches found (expected <patient>/<0|1>/"
            "<patient>_idx5_x<X>_y<Y>_class<c>.png); is this the IDC root?"
        )
    if n_dupes:
        log(f"{root}: counted {n_dupes} patch(es) found twice (Kaggle mirror folder) once")
    df = pd.DataFrame(rows, columns=["image_id", "path", "patient_id", "idc", "x", "y"])
    meta = DatasetMeta(
        format="idc_breast", task="binary", label_columns=["idc"], channels=3, n_classes=2,
        aux_columns=["x", "y"],
    )
    return df, meta
