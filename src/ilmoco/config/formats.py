"""The registry of dataset formats: one entry per on-disk layout a reader understands.

An entry names the reader (``module:function``, ``(root, **options) -> (manifest,
DatasetMeta)``), the layout check (``module:function``, ``root -> bool``), the facts a
dataset of that format starts from (the paper's metric, the official augmentation preset, a
display name), the dataset keys the reader takes, the public dataset's size (runtime
estimates before any data is read), the synthetic generator of the embedded demo, and the
dataset's name in the paper's tables. Adding a format is its reader module, one entry here
and its keys in the schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ilmoco.io import ConfigError

L = "ilmoco.data.formats.layouts"


@dataclass(frozen=True)
class FormatSpec:
    name: str
    display: str
    reader: str
    detect: str
    metric: str
    augment: str
    options: tuple[str, ...] = ()  # dataset keys passed to the reader (besides on_missing)
    public_images: int = 100_000
    synthetic: str | None = None
    paper: str | None = None
    # a layout the user describes (any root may be one): never named as what a wrong root
    # of another format looks like
    generic: bool = False
    check: Callable[[str, Mapping], None] | None = None  # cross-key rules of its options


def _check_regex(name: str, entry: Mapping) -> None:
    if entry.get("patient_regex"):
        try:
            re.compile(entry["patient_regex"])
        except re.error as e:
            raise ConfigError(f"datasets.{name}.patient_regex", f"not a regular expression "
                              f"({e})") from None


def check_image_table(name: str, entry: Mapping) -> None:
    """What the schema cannot say about an image_table entry (one line naming the key)."""
    at = f"datasets.{name}"
    for key in ("table", "label_columns"):
        if not entry.get(key):
            raise ConfigError(f"{at}.{key}", "format image_table needs it")
    if bool(entry.get("path_column")) == bool(entry.get("path_template")):
        raise ConfigError(f"{at}.path_column", "give exactly one of path_column and "
                          "path_template")
    if entry.get("patient_column") and entry.get("patient_regex"):
        raise ConfigError(f"{at}.patient_regex", "give patient_column or patient_regex, "
                          "not both")
    _check_regex(name, entry)
    labels = entry["label_columns"]
    if entry.get("label_separator"):
        if len(labels) != 1 or not entry.get("classes"):
            raise ConfigError(f"{at}.label_separator", "needs one label column and the "
                              "`classes` its names may take")
    elif len(labels) > 1 and entry.get("classes"):
        raise ConfigError(f"{at}.classes", "several label_columns are 0/1 columns, one per "
                          "label; classes applies to one column of class names")
    if isinstance(entry.get("uncertain"), Mapping):
        stray = sorted(set(entry["uncertain"]) - set(labels))
        if stray:
            raise ConfigError(f"{at}.uncertain.{stray[0]}", "is not one of label_columns")
    if entry.get("none_label") and not entry.get("label_separator"):
        raise ConfigError(f"{at}.none_label", "applies only with label_separator")
    if entry.get("split_values") and not entry.get("split_column"):
        raise ConfigError(f"{at}.split_values", "applies only with split_column")


FORMATS: dict[str, FormatSpec] = {f.name: f for f in (
    FormatSpec("nih_cxr14", "NIH ChestX-ray14", "ilmoco.data.formats.nih:read_nih_cxr14",
               f"{L}:is_nih", "macro_auc", "chest", public_images=112_120,
               synthetic="ilmoco.data.synthetic:generate_nih", paper="nih"),
    FormatSpec("idc_breast", "IDC histopathology", "ilmoco.data.formats.idc:read_idc_breast",
               f"{L}:is_idc", "f1_macro", "histo", public_images=277_524,
               synthetic="ilmoco.data.synthetic:generate_idc", paper="idc"),
    FormatSpec("eyepacs_dr", "EyePACS retinopathy",
               "ilmoco.data.formats.eyepacs:read_eyepacs_dr", f"{L}:is_eyepacs", "macro_auc",
               "retina", options=("halves", "subset"), public_images=88_702,
               synthetic="ilmoco.data.synthetic:generate_eyepacs", paper="dr"),
    FormatSpec("medmnist", "MedMNIST", "ilmoco.data.formats.medmnist:read_medmnist",
               f"{L}:is_medmnist", "macro_auc", "chest", options=("file",)),
    # Your own data: a manifest table + images, or a folder of class folders. Augmentation:
    # the histopathology preset is MoCo v2's (random crops, flips, colour jitter, blur);
    # radiographs want `augment: chest`.
    FormatSpec("image_table", "Image table",
               "ilmoco.data.formats.image_table:read_image_table",
               "ilmoco.data.formats.image_table:is_image_table", "macro_auc", "histo",
               options=("table", "sep", "join", "path_column", "path_template", "id_column",
                        "patient_column", "patient_regex", "label_columns", "label_separator",
                        "none_label", "classes", "uncertain", "blank", "split_column",
                        "split_values", "filters", "channels"),
               synthetic="ilmoco.data.synthetic_table:generate_image_table", generic=True,
               check=check_image_table),
    FormatSpec("image_folder", "Image folder",
               "ilmoco.data.formats.image_folder:read_image_folder",
               "ilmoco.data.formats.image_folder:is_image_folder", "macro_auc", "histo",
               options=("classes", "patient_regex", "channels"), generic=True,
               check=_check_regex),
)}
