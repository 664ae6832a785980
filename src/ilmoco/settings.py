"""Settings, resolved once from the validated config into frozen, typed objects per stage.

The schema (``workflow/schemas/config.schema.yaml``) is the only place defaults live:
Snakemake's ``validate`` fills them in, and :func:`resolve` turns the filled config into the
objects below. Every field is read by name from its config section, so a setting is added
end to end by one schema property and one dataclass field.

Fields come in two kinds:

* **result fields** change what a stage produces; they are hashed into the rule's params
  (Snakemake reruns the stage when one changes), into resume-checkpoint fingerprints, and
  recorded next to each result;
* **execution fields** (``metadata={"execution": True}``: device, data placement,
  checkpoint interval, compile, channels_last, progress) only change how a stage runs: a
  finished run is not redone and a resume checkpoint stays valid when they change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

from ilmoco.augment_spec import AugmentSpec, preset
from ilmoco.io import ConfigError
from ilmoco.registry import CONTROL, PAPER_METHODS, SUPERVISED, Method, variant


def execution(**kwargs):
    """A dataclass field that only changes how a stage runs, never what it produces."""
    return field(metadata={"execution": True}, **kwargs)


# Per-format defaults that are facts about the data, not settings: the paper's metric and
# the official code's augmentation preset for each dataset.
FORMAT_METRIC = {"nih_cxr14": "macro_auc", "idc_breast": "f1_macro", "eyepacs_dr": "macro_auc",
                 "medmnist": "macro_auc"}
FORMAT_AUGMENT = {"nih_cxr14": "chest", "idc_breast": "histo", "eyepacs_dr": "retina",
                  "medmnist": "chest"}


@dataclass(frozen=True)
class OptimizerSettings:
    name: str
    lr: float
    momentum: float
    weight_decay: float
    decay_norm_and_bias: bool  # official code: weight decay on every parameter
    schedule: str
    warmup_epochs: float


@dataclass(frozen=True)
class MoCoSettings:
    dim: int
    queue_size: int
    momentum: float
    momentum_schedule: str
    temperature: float
    head: str
    bn: str
    bn_splits: int


@dataclass(frozen=True)
class BYOLSettings:
    dim: int
    hidden: int
    predictor_hidden: int
    momentum: float
    momentum_schedule: str


@dataclass(frozen=True)
class MSESettings:
    weights: tuple[float, ...]
    pool: tuple[int | None, ...]


@dataclass(frozen=True)
class BTSettings:
    weights: tuple[float, ...]
    projector: tuple[int, ...]
    lambda_on: float
    lambda_off: float
    scale: float


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
    device: str = execution()
    data_placement: str = execution()
    checkpoint_every: int = execution()
    compile: bool = execution()
    channels_last: bool = execution()
    progress: str = execution()


@dataclass(frozen=True)
class PretrainSettings(TrainingSettings):
    seed: int
    val_max_images: int
    select: str  # "last" epoch, or the epoch of lowest validation loss ("val_loss")
    moco: MoCoSettings
    byol: BYOLSettings
    mse: MSESettings
    bt: BTSettings
    knn: KnnSettings


@dataclass(frozen=True)
class FinetuneSettings(TrainingSettings):
    patience: int
    min_steps_per_epoch: int
    augment: bool


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


@dataclass(frozen=True)
class CKASettings:
    kernel: str  # linear | rbf (median bandwidth x rbf_scale) | rbf_fixed (sigma)
    sigma: float
    rbf_scale: float
    subset: int
    repeats: int
    seed: int


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int
    seed: int
    level: float
    paper_interval: bool  # also report the official mean ± 1.96·sd/√B


@dataclass(frozen=True)
class SplitSettings:
    seed: int
    ratios: tuple[float, ...]
    use_official: bool
    ensure_each_class: bool
    on_missing_class: str


@dataclass(frozen=True)
class PairedSettings:
    baseline: str


@dataclass(frozen=True)
class DatasetSettings:
    """One entry of ``datasets`` with the per-format facts filled in."""

    name: str
    format: str
    root: str
    display: str
    image_size: int
    metric: str
    augment: str
    ks_reference: str | None
    mse_pool: tuple[int | None, ...] | None
    on_missing: str
    halves: tuple[str, ...] | None
    fundus_crop: bool
    file: str | None
    synthetic: Mapping | None

    @property
    def reader_options(self) -> dict:
        """Keyword arguments of this format's reader."""
        opts = {"on_missing": self.on_missing}
        if self.format == "eyepacs_dr":
            opts["halves"] = self.halves
        if self.format == "medmnist":
            opts["file"] = self.file
        return opts


@dataclass(frozen=True)
class TermSpec:
    """A pretraining's intermediate term, fully resolved: per-block weights (0 = block not
    used) and the settings of its kind."""

    kind: str  # none | mse | bt
    weights: tuple[float, ...]
    pool: tuple[int | None, ...]
    projector: tuple[int, ...]
    lambda_on: float
    lambda_off: float
    scale: float


@dataclass(frozen=True)
class PretrainRun:
    """Everything one pretraining job needs besides its file paths."""

    dataset: str
    method: str
    base: str
    metric: str  # the dataset's, for the kNN monitor
    term: TermSpec
    augment: AugmentSpec
    settings: PretrainSettings


@dataclass(frozen=True)
class FinetuneRun:
    dataset: str
    method: str
    metric: str
    augment: AugmentSpec | None
    settings: FinetuneSettings


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


@dataclass(frozen=True)
class CKARun:
    settings: CKASettings
    level: float  # the interval level (bootstrap.level)
    precision: str
    device: str = execution()


@dataclass(frozen=True)
class RunSettings:
    """The whole run: datasets, methods and every stage's settings."""

    datasets: Mapping[str, DatasetSettings]
    methods: tuple[Method, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    split: SplitSettings
    pretrain: PretrainSettings
    finetune: FinetuneSettings
    probe: ProbeSettings
    cka: CKASettings
    bootstrap: BootstrapSettings
    paired: PairedSettings

    # ----------------------------------------------------------- method queries
    def method(self, name: str) -> Method:
        if name == CONTROL.name:
            return CONTROL
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def method_names(self) -> list[str]:
        return [m.name for m in self.methods]

    @property
    def ssl_methods(self) -> list[str]:
        return [m.name for m in self.methods if m.is_ssl]

    @property
    def display_names(self) -> dict[str, str]:
        return {m.name: m.display for m in (*self.methods, CONTROL)}

    @property
    def has_full_labels(self) -> bool:
        return 100.0 in self.fractions

    def probe_methods(self) -> list[str]:
        """Encoders the probing stage reads: every SSL method, the random-init control and,
        as a reference, the supervised model fine-tuned on 100 %."""
        out = list(self.ssl_methods)
        if self.probe.random_init:
            out.append(CONTROL.name)
        if (self.probe.include_supervised and self.probe.supervised_reference == "probe"
                and self.has_full_labels and SUPERVISED in self.method_names):
            out.append(SUPERVISED)
        return out

    # ----------------------------------------------------------- per-job settings
    def pretrain_run(self, dataset: str, method: str) -> PretrainRun:
        m, ds = self.method(method), self.datasets[dataset]
        if not m.is_ssl:
            raise ValueError(f"{method!r} is not a self-supervised method")
        # The run keeps only the settings its method reads (the term is resolved into
        # ``term``), so a setting of another method reruns nothing here.
        used = dataclasses.replace(self.pretrain, mse=None, bt=None,
                                   moco=self.pretrain.moco if m.base == "moco" else None,
                                   byol=self.pretrain.byol if m.base == "byol" else None)
        return PretrainRun(dataset, method, m.base, ds.metric, term_spec(m, self.pretrain, ds),
                           preset(ds.augment, "ssl", self.pretrain.augment_overrides), used)

    def finetune_run(self, dataset: str, method: str) -> FinetuneRun:
        ds, ft = self.datasets[dataset], self.finetune
        aug = preset(ds.augment, "finetune", ft.augment_overrides) if ft.augment else None
        return FinetuneRun(dataset, method, ds.metric, aug, ft)

    def cka_run(self) -> CKARun:
        return CKARun(self.cka, self.bootstrap.level, self.finetune.precision,
                      device=self.finetune.device)

    def probe_run(self, dataset: str, method: str) -> ProbeRun:
        arch = self.finetune.arch if method == SUPERVISED else self.pretrain.arch
        return ProbeRun(dataset, method, self.datasets[dataset].metric, arch, self.probe,
                        self.bootstrap, device=self.finetune.device,
                        precision=self.finetune.precision)


def term_spec(method: Method, pre: PretrainSettings, ds: DatasetSettings) -> TermSpec:
    """The intermediate term of ``method``: the variant's overrides, else the dataset's MSE
    pooling (``mse_pool``), else ``pretrain.mse`` / ``pretrain.bt``. Settings the term's kind
    does not read are left empty, so changing them reruns nothing."""
    over = dict(method.term_overrides)
    kind = method.term
    if kind == "none":
        return TermSpec("none", (0.0,) * 4, (), (), 0.0, 0.0, 0.0)
    base_weights = pre.mse.weights if kind == "mse" else pre.bt.weights
    weights = tuple(float(w) for w in over.get("weights", base_weights))
    weights = tuple(w if b in method.blocks else 0.0 for b, w in zip(range(1, 5), weights))
    if kind == "mse":
        return TermSpec("mse", weights, tuple(over.get("pool", ds.mse_pool or pre.mse.pool)),
                        (), 0.0, 0.0, 0.0)
    return TermSpec("bt", weights, (), tuple(over.get("projector", pre.bt.projector)),
                    float(over.get("lambda_on", pre.bt.lambda_on)),
                    float(over.get("lambda_off", pre.bt.lambda_off)),
                    float(over.get("scale", pre.bt.scale)))


# ------------------------------------------------------------------ building from the config

def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


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
    hints = _hints(cls)
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
                if not f.metadata.get("execution")}
    if isinstance(obj, Mapping):
        return {str(k): result_fields(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [result_fields(v) for v in obj]
    return obj


def digest(obj) -> str:
    """A short hash of ``result_fields(obj)``."""
    text = json.dumps(result_fields(obj), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FORMAT_DISPLAY = {"nih_cxr14": "NIH ChestX-ray14", "idc_breast": "IDC histopathology",
                  "eyepacs_dr": "EyePACS retinopathy", "medmnist": "MedMNIST"}


def dataset_settings(name: str, entry: Mapping, by_format: Mapping) -> DatasetSettings:
    """One dataset: its own entry, else ``by_format.<format>``, else the format's facts."""
    fmt = entry["format"]
    fmt_defaults = by_format[fmt]

    def pick(key):
        own = entry.get(key)
        return own if own is not None else fmt_defaults.get(key)

    mse_pool = pick("mse_pool")
    display = entry.get("display") or (
        FORMAT_DISPLAY[fmt] + (" (synthetic)" if entry.get("synthetic") else ""))
    return DatasetSettings(
        name=name, format=fmt, root=str(entry["root"]), display=display,
        image_size=int(pick("image_size")),
        metric=pick("metric") or FORMAT_METRIC[fmt],
        augment=pick("augment") or FORMAT_AUGMENT[fmt],
        ks_reference=pick("ks_reference"),
        mse_pool=tuple(mse_pool) if mse_pool else None,
        on_missing=entry["on_missing"],
        halves=tuple(entry["halves"]) if entry.get("halves") else None,
        fundus_crop=bool(pick("fundus_crop")) and fmt == "eyepacs_dr",
        file=entry.get("file"),
        synthetic=dict(entry["synthetic"]) if entry.get("synthetic") else None,
    )


def resolve(config: Mapping) -> RunSettings:
    """The typed settings of a run.

    Args:
        config: the config after Snakemake's ``validate`` against the schema (every default
            filled in).

    Raises:
        ConfigError: a combination the schema cannot express, naming the key to change.
    """
    unknown = [d for d in config["use_datasets"] if d not in config["datasets"]]
    if unknown:
        raise ConfigError("use_datasets", f"{unknown} not defined under `datasets` "
                          f"(defined: {sorted(config['datasets'])})")
    datasets = {d: dataset_settings(d, config["datasets"][d], config["by_format"])
                for d in config["use_datasets"]}
    methods = resolve_methods(config)
    fractions = tuple(float(p) for p in config["fractions"])
    pre = build(PretrainSettings, config["pretrain"], "pretrain.")
    settings = RunSettings(
        datasets=datasets, methods=methods, fractions=fractions,
        seeds=tuple(int(s) for s in config["seeds"]),
        split=build(SplitSettings, config["split"], "split."), pretrain=pre,
        finetune=build(FinetuneSettings, config["finetune"], "finetune."),
        probe=build(ProbeSettings, config["probe"], "probe."),
        cka=build(CKASettings, config["cka"], "cka."),
        bootstrap=build(BootstrapSettings, config["bootstrap"], "bootstrap."),
        paired=build(PairedSettings, config["paired"], "paired."),
    )
    check(settings)
    return settings


def resolve_methods(config: Mapping) -> tuple[Method, ...]:
    variants = config.get("variants") or {}
    out = []
    for name in config["methods"]:
        if name in variants:
            if name in PAPER_METHODS or name == CONTROL.name:
                raise ConfigError(f"variants.{name}", "redefines a predefined method; "
                                  "give the variant another name")
            out.append(variant(name, variants[name]))
        elif name in PAPER_METHODS:
            out.append(PAPER_METHODS[name])
        else:
            raise ConfigError("methods", f"{name!r} is neither a predefined method "
                              f"{sorted(PAPER_METHODS)} nor defined under `variants`")
    return tuple(out)


def check(s: RunSettings) -> None:
    """Cross-field rules the schema cannot state."""
    if s.probe.fraction not in s.fractions:
        raise ConfigError("probe.fraction", f"{s.probe.fraction:g} is not one of `fractions` "
                          f"{[f'{f:g}' for f in s.fractions]}")
    pre = s.pretrain
    uses_moco = any(m.base == "moco" for m in s.methods)
    if pre.moco.bn == "split" and pre.batch_size % pre.moco.bn_splits:
        raise ConfigError("pretrain.moco.bn_splits", f"{pre.moco.bn_splits} does not divide "
                          f"pretrain.batch_size {pre.batch_size}")
    if (uses_moco and pre.moco.bn == "split" and pre.moco.head == "mlp_bn"
            and pre.batch_size // pre.moco.bn_splits < 2):
        # BatchNorm1d in the head has no spatial positions: one sample per split cannot train
        raise ConfigError("pretrain.moco.bn_splits", f"{pre.moco.bn_splits} splits of "
                          f"pretrain.batch_size {pre.batch_size} leave one image per split "
                          "for the mlp_bn head's BatchNorm; use fewer splits")
    if uses_moco and pre.moco.queue_size < pre.batch_size:
        raise ConfigError("pretrain.moco.queue_size", "must be at least pretrain.batch_size")
    if sum(s.split.ratios) <= 0:
        raise ConfigError("split.ratios", "must sum to a positive number")
    names = s.method_names
    if len(names) > 1 and s.paired.baseline not in names:
        raise ConfigError("paired.baseline", f"{s.paired.baseline!r} is not one of `methods` "
                          f"{names}")
    for d, ds in s.datasets.items():
        if ds.ks_reference and ds.ks_reference not in names:
            raise ConfigError(f"datasets.{d}.ks_reference", f"{ds.ks_reference!r} is not one "
                              f"of `methods` {names}")
    for m in s.methods:
        spec = term_spec(m, pre, next(iter(s.datasets.values())))
        if m.is_ssl and m.term != "none" and not any(spec.weights):
            raise ConfigError(f"variants.{m.name}", "its term has weight 0 on every block")


# ------------------------------------------------------------------ --config values

_JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None),
               "array": list, "object": dict, "string": str}


def _schema_at(schema: Mapping, root: Mapping) -> dict:
    """``schema`` with ``$ref`` and ``allOf`` merged in (enough for coercion)."""
    out = dict(schema)
    if "$ref" in out:
        target = root
        for part in out.pop("$ref").lstrip("#/").split("/"):
            target = target[part]
        out = {**_schema_at(target, root), **out}
    for sub in out.pop("allOf", []):
        sub = _schema_at(sub, root)
        inner, outer = sub.get("properties", {}), out.get("properties", {})
        props = {k: {**inner.get(k, {}), **outer.get(k, {})} for k in {*inner, *outer}}
        out = {**sub, **out, **({"properties": props} if props else {})}
    return out


def _matches(value, types) -> bool:
    if isinstance(value, bool) and "boolean" not in types:
        return False
    return any(isinstance(value, _JSON_TYPES[t]) for t in types)


def coerce_to_schema(value, schema: Mapping, root: Mapping | None = None):
    """Values from ``snakemake --config`` converted to the types the schema asks for.

    Snakemake reads ``--config seeds=[0,1]`` as the list ``['0', '1']`` (nested values
    are strings); a string where the schema wants a number, boolean, null or list is read
    as YAML when that gives the wanted type. Anything else is returned unchanged, so the
    schema still reports what is wrong."""
    import yaml

    root = root if root is not None else schema
    schema = _schema_at(schema, root)
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(value, str) and types and "string" not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if _matches(parsed, types):
            value = parsed
    if isinstance(value, list) and "items" in schema:
        return [coerce_to_schema(v, schema["items"], root) for v in value]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: coerce_to_schema(v, props[k], root) if k in props else
                coerce_to_schema(v, extra, root) if isinstance(extra, Mapping) else v
                for k, v in value.items()}
    return value


def execution_keys() -> dict[str, set[str]]:
    """Config keys per section that only change how a stage runs."""
    return {section: {f.name for f in dataclasses.fields(cls) if f.metadata.get("execution")}
            for section, cls in (("pretrain", PretrainSettings),
                                 ("finetune", FinetuneSettings))}


def result_config(config: Mapping) -> dict:
    """The validated config without its execution settings: what determines the results
    (``results/resolved_config.yaml``; changing only an execution setting reruns nothing)."""
    out = dict(config)
    for section, keys in execution_keys().items():
        if section in out:
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
    return out
