"""The data stages' settings: ``datasets`` entries, ``split``, ``cache``, ``data_report``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ilmoco.config.settings.fields import execution


@dataclass(frozen=True)
class SplitSettings:
    seed: int
    ratios: tuple[float, ...]
    use_official: bool
    ensure_each_class: bool
    on_missing_class: str


@dataclass(frozen=True)
class CacheSettings:
    """How the cache job runs (the cached pixels do not depend on it)."""

    workers: str = execution()  # threads | processes
    checkpoint_every: int = execution()  # images between progress records


@dataclass(frozen=True)
class DataReportSettings:
    sample_images: int  # image files per dataset whose header and values are read
    per_class: int  # contact-sheet images per class
    seed: int


@dataclass(frozen=True)
class DatasetSettings:
    """One entry of ``datasets`` with its format's facts filled in (:mod:`config.formats`)."""

    name: str
    format: str
    root: str
    display: str
    image_size: int
    metric: str
    augment: str
    ks_reference: str | None
    reader: str  # module:function reading the root
    reader_options: Mapping  # keyword arguments of the reader
    term_defaults: Mapping  # term kind -> {setting: value} (e.g. the dataset's MSE pooling)
    fundus_crop: bool
    synthetic: Mapping | None
    synthetic_generator: str | None
    public_images: int
    paper: str | None  # the dataset's name in the paper's tables, if it is one of them
    # the official protocol's per-dataset choices (None / False: the global settings)
    split_lists: Mapping | None = None  # train/val/test -> list file (root joined)
    pretrain_batch_size: int | None = None
    pretrain_epochs: int | None = None
    probe_batch_size: int | None = None
    probe_augment: str = "finetune"  # the official probe's training augmentation preset
    official_subset_augment: bool = False  # fine-tuning below 100 %: the dataset transform
    select_metric: str | None = None  # fine-tuning's selection metric (None: the metric's)
    window: str | tuple[float, float] = "file"  # 16-bit to 8-bit (data.intensity)
