"""The ``manifest`` stage: a dataset root in its layout read into one row per image
(``manifest.csv``) and what later stages need to know about it (``dataset.json``)."""

from __future__ import annotations

from collections.abc import Mapping

from ilmoco.data.readers import read_manifest
from ilmoco.io import write_csv, write_json


def run(*, fmt: str, reader: str, detect: str, others: Mapping[str, str], root,
        options: Mapping, out_manifest, out_meta) -> str:
    """Read ``root`` with the format's reader; returns a one-line summary."""
    df, meta = read_manifest(fmt, reader, detect, root, options, others)
    write_csv(out_manifest, df)
    write_json(out_meta, meta.to_dict())
    return f"{len(df)} images, {df['patient_id'].nunique()} patients, task {meta.task}"
