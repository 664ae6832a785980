"""The typed settings of each stage and of each job, frozen, read by the stages.

The schema (``workflow/schemas/config.schema.yaml``) is the only place defaults live:
Snakemake's ``validate`` fills them in and :mod:`ilmoco.config.resolve` turns the filled
config into these objects. Every field is read by name from its config section, so a setting
is added end to end by one schema property and one dataclass field. The settings of a base
or an intermediate term live beside its registry entry (:mod:`ilmoco.config.bases`,
:mod:`ilmoco.config.terms`), not here, so adding one changes no stage's code.

Fields come in two kinds:

* **result fields** change what a stage produces; they are hashed into the rule's params
  (Snakemake reruns the stage when one changes), into resume-checkpoint fingerprints, and
  recorded next to each result;
* **execution fields** (``metadata={"execution": True}``: device, data placement,
  checkpoint interval, compile, channels_last, progress, and the import paths a run's
  implementation is found by) only change how a stage runs: a finished run is not redone and
  a resume checkpoint stays valid when they change.

A result field added after results were recorded without it (:func:`added`) is left out of
``result_fields`` while it holds the value that reproduces the behaviour from before it
existed, so a run that does not use it records exactly the settings it recorded before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

from ilmoco.config.augment import AugmentSpec
from ilmoco.io import ConfigError


def execution(**kwargs):
    """A dataclass field that only changes how a stage runs, never what it produces."""
    return field(metadata={"execution": True}, **kwargs)


def added(legacy, **kwargs):
    """A result field added later, defaulting to ``legacy`` (the value that behaves as
    before the field existed), at which it is not part of ``result_fields``."""
    return field(metadata={"legacy": legacy}, **{"default": legacy, **kwargs})


def _omitted(f, value) -> bool:
    return "legacy" in f.metadata and value == f.metadata["legacy"]


# Result fields of several sections that the config sets once, at its top level: resolve
# copies them into each section that has them (a portable run's every compute stage reruns)
TOP_LEVEL_FIELDS = ("numerics",)


@dataclass(frozen=True)
class OptimizerSettings:
    name: str
    lr: float
    momentum: float
    weight_decay: float
    decay_norm_and_bias: bool  # official code: weight decay on every parameter
    fused: bool  # torch's fused kernel (faster; same update up to rounding)
    schedule: str
    warmup_epochs: float


@dataclass(frozen=True)
class KnnSettings:
    enabled: bool
    k: int
    temperature: float
    bank_images: int


@dataclass(frozen=True)
class TrainingSettings:
    """What pretraining and fine-tuning share: the network, the optimisation, the numerics,
    and how the stage runs."""

    arch: str
    zero_init_residual: bool
    epochs: int
    batch_size: int
    precision: str
    deterministic: bool
    log_every: int
    augment_overrides: Mapping
    optimizer: OptimizerSettings
    # the top-level `numerics` (ilmoco.numerics): portable pins the CPU kernels; no default
    # here (fields of the subclasses follow), the schema gives it
    numerics: str = added("native", default=dataclasses.MISSING)
    device: str = execution()
    data_placement: str = execution()
    checkpoint_every: int = execution()
    compile: bool = execution()
    channels_last: bool = execution()
    progress: str = execution()
    tensorboard: bool | str = execution()  # TensorBoard event files: auto | true | false


@dataclass(frozen=True)
class PretrainSettings(TrainingSettings):
    """``pretrain`` without the sections of the bases and terms (those resolve into each
    run's ``base_settings`` and ``term``)."""

    # also "with_term": only methods with an intermediate term (the official scripts);
    # each run's settings hold the resolved bool (RunSettings.pretrain_run)
    zero_init_residual: bool | str
    seed: int
    val_max_images: int | None  # None: the whole validation set
    select: str  # "last" epoch, or the epoch of lowest validation loss ("val_loss")
    knn: KnnSettings
    # "augmented": two augmented views of each validation image; "identical": the image
    # itself twice, un-augmented (the official Moco2EvalTransforms)
    val_views: str = added("augmented")


@dataclass(frozen=True)
class FinetuneSettings(TrainingSettings):
    patience: int
    min_steps_per_epoch: int
    augment: bool
    epochs_by_fraction: Mapping  # fraction ("100") -> maximum epochs; else ``epochs``

    def epochs_at(self, pct: float) -> int:
        """The maximum epochs of a run at label fraction ``pct``."""
        hits = [v for k, v in self.epochs_by_fraction.items() if float(k) == float(pct)]
        return int(hits[0]) if hits else self.epochs


@dataclass(frozen=True)
class ProbeSettings:
    fraction: float
    include_supervised: bool
    supervised_reference: str  # "probe" the fine-tuned model, or its "finetune" result
    random_init: bool
    epochs: int
    patience: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    # "frozen": features extracted once in eval mode, standardised, early stopping;
    # "official": the official probing code (see ilmoco.stages.probe)
    protocol: str = added("frozen")
    # the linear-probe table: the block-4 row of layer probing ("layer") or the official
    # Table 1 probe, fine_tune_mocov2.py --only-ll ("only_ll", ilmoco.stages.linear_probe)
    linear: str = added("layer")
    numerics: str = added("native")  # the top-level `numerics` (ilmoco.numerics)


@dataclass(frozen=True)
class CKASettings:
    kernel: str  # linear | rbf (median bandwidth x rbf_scale) | rbf_fixed (sigma)
    sigma: float
    rbf_scale: float
    subset: int
    repeats: int
    seed: int
    numerics: str = added("native")  # the top-level `numerics` (ilmoco.numerics)


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int
    seed: int
    level: float
    paper_interval: bool  # also report the official mean ± 1.96·sd/√B
    # sd of that interval over the B metric replicates ("replicates"), or over the B x L
    # array of per-label values ("labels": the official chest code, between-label spread)
    paper_interval_spread: str = added("replicates")
    numerics: str = added("native")  # the top-level `numerics` (ilmoco.numerics)


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
class PairedSettings:
    baseline: str


@dataclass(frozen=True)
class DataReportSettings:
    sample_images: int  # image files per dataset whose header and values are read
    per_class: int  # contact-sheet images per class
    seed: int


@dataclass(frozen=True)
class InitSettings:
    """``init``: the weights file of the ``imagenet`` method and of variants with ``init:
    imagenet``, and the input normalisation they were trained with."""

    weights: str | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class InitWeights:
    """A backbone's starting point: a local file of a stock model's weights (torchvision or
    timm layout) and the (mean, std) its inputs were normalised with, folded into the
    stem."""

    weights: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class BackboneRef:
    """A network by its config name and the ``module:callable`` that builds it
    (``builder(arch, in_channels, zero_init_residual, norm_layer=None)``)."""

    arch: str
    builder: str


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


@dataclass(frozen=True)
class TermSpec:
    """A pretraining's intermediate term, fully resolved: its kind, its settings (those of
    the kind, per-block weights set to 0 on unused blocks; None for ``none``) and the
    ``module:Class`` implementing it."""

    kind: str
    settings: typing.Any
    model: str = execution()

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(self.settings.weights) if self.settings is not None else (0.0,) * 4


@dataclass(frozen=True)
class PretrainRun:
    """Everything one pretraining job needs besides its file paths."""

    dataset: str
    method: str
    base: str
    base_settings: typing.Any  # the base's settings (config.bases)
    metric: str  # the dataset's, for the kNN monitor
    term: TermSpec
    augment: AugmentSpec
    settings: PretrainSettings
    base_model: str = execution()  # module:Class of the base
    backbone: BackboneRef = execution()
    init: InitWeights | None = None  # None: the builder's random initialisation


@dataclass(frozen=True)
class InitRun:
    """An encoder made from a weights file without training (the ``imagenet`` method)."""

    dataset: str
    method: str
    arch: str
    init: InitWeights
    backbone: BackboneRef = execution()


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning (its augmentation is that of its label fraction)."""

    dataset: str
    method: str
    metric: str
    augment: AugmentSpec | None
    settings: FinetuneSettings
    backbone: BackboneRef = execution()
    # the validation score that selects the epoch (None: the metric's own, see
    # evaluation.metrics.selection_metric; "auc_raw_logit": the official retina code's)
    select_metric: str | None = added(None)


@dataclass(frozen=True)
class ProbeRun:
    dataset: str
    method: str
    metric: str
    arch: str
    settings: ProbeSettings
    bootstrap: BootstrapSettings
    device: str = execution()
    precision: str = "auto"
    backbone: BackboneRef | None = execution(default=None)
    # the official protocol's training augmentation (None: no augmentation)
    augment: AugmentSpec | None = added(None)


@dataclass(frozen=True)
class LinearProbeRun:
    """The official linear probe of Table 1 (``fine_tune_mocov2.py --only-ll``): fine-tuning
    with the backbone frozen under ``no_grad`` but in train mode, so its epochs, batch,
    optimiser and augmentation are the fine-tuning's (``settings``, ``augment``)."""

    dataset: str
    method: str
    metric: str
    arch: str
    fraction: float
    augment: AugmentSpec | None
    settings: FinetuneSettings
    seed: int
    bootstrap: BootstrapSettings
    backbone: BackboneRef = execution()


@dataclass(frozen=True)
class CKARun:
    settings: CKASettings
    level: float  # the interval level (bootstrap.level)
    precision: str
    device: str = execution()


# ------------------------------------------------------------------ from config sections

def _convert(value, hint):
    """Lists become tuples (frozen); nested dataclass sections are built recursively."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if dataclasses.is_dataclass(hint):
        return build(hint, value)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _convert(value, args[0])
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def build(cls, section: Mapping, where: str = ""):
    """``cls`` from a validated config section: each field read by name."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in section:
            raise ConfigError(f"{where}{f.name}", "missing (the schema should give a default)")
        kwargs[f.name] = _convert(section[f.name], hints[f.name])
    return cls(**kwargs)


def result_fields(obj) -> dict:
    """The fields of a settings object (recursively) that change results, as plain
    builtins: a rule param (Snakemake's params trigger) and a fingerprint part."""
    if dataclasses.is_dataclass(obj):
        return {f.name: result_fields(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.metadata.get("execution") and not _omitted(f, getattr(obj, f.name))}
    if isinstance(obj, Mapping):
        return {str(k): result_fields(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [result_fields(v) for v in obj]
    return obj


def digest(obj) -> str:
    """A short hash of ``result_fields(obj)``."""
    text = json.dumps(result_fields(obj), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def execution_keys() -> dict[str, set[str]]:
    """Config keys per section that only change how a stage runs."""
    return {section: {f.name for f in dataclasses.fields(cls) if f.metadata.get("execution")}
            for section, cls in (("pretrain", PretrainSettings),
                                 ("finetune", FinetuneSettings), ("cache", CacheSettings))}
