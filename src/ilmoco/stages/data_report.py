"""The ``data_report`` stage: each dataset's splits, prevalence, sampled image files and a
contact sheet of cached images per class, and one Markdown summary of them all. No GPU: it
reads the manifest, the split, the cache and a sample of the raw files."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

from ilmoco.data.cache import ImageCache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.data.inspect import describe, describe_image, sample_rows
from ilmoco.imports import module_of
from ilmoco.io import read_json, read_table, write_csv, write_text
from ilmoco.reporting import data_report as rep


def sample_files(manifest, root, reader: str, n: int) -> list[dict]:
    """Header, size, mode, bit depth and stored value range of ``n`` images spread evenly
    over the manifest (images that are no files through the format's own opener)."""
    rows = sample_rows(len(manifest), n)
    paths = manifest["path"].to_numpy()[rows]
    opener = getattr(importlib.import_module(module_of(reader)), "image_opener", None)
    if opener is not None:
        open_row = opener(root)
        return [describe_image(open_row(p), "array") for p in paths]
    return [describe(Path(root) / p, values=True) for p in paths]


def run(*, datasets: Mapping[str, Mapping], settings: Mapping, fractions,
        outputs: Mapping[str, str]) -> str:
    """``datasets``: name -> {display, root, reader, manifest, meta, split, images, index};
    ``settings``: the result fields of ``data_report``; ``outputs``: ``<dataset>:splits``,
    ``:prevalence``, ``:files``, ``:sheet`` per dataset and ``summary``."""
    parts = ["# Data report", "",
             "What each dataset holds, read before any training: the splits as the split "
             "stage drew them, label prevalence, a sample of the image files, and the "
             "cached images the network is trained on.", ""]
    for d, inp in datasets.items():
        meta = DatasetMeta.from_dict(read_json(inp["meta"]))
        split = read_table(inp["split"])
        manifest = read_table(inp["manifest"])
        splits = rep.split_table(d, split, fractions)
        prev = rep.prevalence_table(d, split, meta, fractions)
        files = rep.files_table(d, sample_files(manifest, inp["root"], inp["reader"],
                                                settings["sample_images"]), len(manifest))
        cache = ImageCache(inp["images"], inp["index"])
        by_class = rep.rows_per_class(split, meta, cache.rows(split["image_id"]))
        sheet = rep.contact_sheet(cache.images, by_class, inp["display"],
                                  settings["per_class"], settings["seed"],
                                  outputs[f"{d}:sheet"])
        write_csv(outputs[f"{d}:splits"], splits, float_format="%.6g")
        write_csv(outputs[f"{d}:prevalence"], prev, float_format="%.6g")
        write_csv(outputs[f"{d}:files"], files, float_format="%.6g")
        parts.append(rep.summary(d, inp["display"], meta, splits, prev, files, sheet))
    write_text(outputs["summary"], "\n".join(parts))
    return f"data report of {len(datasets)} dataset(s): {outputs['summary']}"

