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

from dataclasses import dataclass

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
)}
