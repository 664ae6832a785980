"""The ``split`` stage: the seeded patient-level split (or the published split lists) and
nested label fractions (``split.csv``)."""

from __future__ import annotations

import warnings

from ilmoco.data.formats.base import DatasetMeta
from ilmoco.data.split import make_split
from ilmoco.io import read_json, read_table, write_csv


def run(*, manifest, meta, settings: dict, fractions, out_split) -> str:
    """``settings``: the result fields of ``split`` (SplitSettings), plus ``lists``
    (train/val/test -> list file) and the dataset's ``on_missing`` where the dataset has
    split lists; returns the split sizes."""
    warnings.simplefilter("always")
    split = make_split(
        read_table(manifest), DatasetMeta.from_dict(read_json(meta)),
        ratios=settings["ratios"], seed=settings["seed"], fractions=fractions,
        use_official=settings["use_official"],
        ensure_each_class=settings["ensure_each_class"],
        on_missing_class=settings["on_missing_class"],
        lists=settings.get("lists"), on_missing=settings.get("on_missing", "error"),
    )
    write_csv(out_split, split)
    return split.groupby("split").size().to_string()
