"""The run, resolved once: the validated config (schema defaults filled in) becomes a
:class:`RunSettings`, which the workflow asks for each job's typed settings.

The registries (formats, bases, terms, backbones) are read here, when the workflow plans
the run; the per-job objects carry the import paths of the implementations they use, so no
stage imports a registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ilmoco.config.augment import preset
from ilmoco.config.backbones import backbone_ref, family_of
from ilmoco.config.bases import BASES
from ilmoco.config.formats import FORMATS
from ilmoco.config.methods import CONTROL, PREDEFINED, Method, variant
from ilmoco.config.settings.backbone import InitWeights
from ilmoco.config.settings.bootstrap import BootstrapSettings
from ilmoco.config.settings.cka import CKARun, CKASettings
from ilmoco.config.settings.data import (
    CacheSettings,
    DataReportSettings,
    DatasetSettings,
    SplitSettings,
)
from ilmoco.config.settings.fields import TOP_LEVEL_FIELDS, build
from ilmoco.config.settings.finetune import FinetuneRun, FinetuneSettings
from ilmoco.config.settings.init import InitRun, InitSettings
from ilmoco.config.settings.linear_probe import LinearProbeRun
from ilmoco.config.settings.paired import PairedSettings
from ilmoco.config.settings.pretrain import PretrainRun, PretrainSettings, TermSpec
from ilmoco.config.settings.probe import ProbeRun, ProbeSettings
from ilmoco.config.terms import TERMS
from ilmoco.io import ConfigError
from ilmoco.names import SUPERVISED
from ilmoco.optional import installed, needs


@dataclass(frozen=True)
class RunSettings:
    """The whole run: datasets, methods and every stage's settings."""

    datasets: Mapping[str, DatasetSettings]
    methods: tuple[Method, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    split: SplitSettings
    pretrain: PretrainSettings
    bases: Mapping  # base name -> its settings (pretrain.<base>)
    terms: Mapping  # term kind -> its settings (pretrain.<term>)
    finetune: FinetuneSettings
    probe: ProbeSettings
    cka: CKASettings
    bootstrap: BootstrapSettings
    paired: PairedSettings
    data_report: DataReportSettings
    init: InitSettings
    cache: CacheSettings

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
    def encoder_methods(self) -> list[str]:
        """Methods fine-tuned from an encoder file: pretrained ones (SSL) and those made from
        a weights file (``imagenet``)."""
        return [m.name for m in self.methods if m.has_encoder]

    @property
    def weights_methods(self) -> list[str]:
        """Methods whose encoder is a weights file, converted (the ``init_encoder`` rule)."""
        return [m.name for m in self.methods if m.kind == "weights"]

    @property
    def has_full_labels(self) -> bool:
        return 100.0 in self.fractions

    def arch_of(self, method: str) -> str:
        """The backbone of a method's encoder and of every model fine-tuned from it: the
        variant's own ``arch``, else ``pretrain.arch`` for SSL and the random-init control
        (the pretraining's starting point), else ``finetune.arch``."""
        m = self.method(method)
        if m.arch is not None:
            return m.arch
        return self.pretrain.arch if m.is_ssl or m.kind == "control" else self.finetune.arch

    def init_of(self, method: str) -> InitWeights | None:
        """The weights file a method starts from, or None (random initialisation)."""
        init = self.method(method).init
        if init == "imagenet":
            return InitWeights(self.init.weights, self.init.mean, self.init.std)
        if isinstance(init, Mapping):
            return InitWeights(str(init["weights"]),
                               tuple(init.get("mean") or self.init.mean),
                               tuple(init.get("std") or self.init.std))
        return None

    def probe_methods(self) -> list[str]:
        """Encoders the probing stage reads: every pretrained encoder and those made from
        weights files, the random-init control and, as a reference, the supervised model
        fine-tuned on 100 %."""
        out = list(self.encoder_methods)
        if self.probe.random_init:
            out.append(CONTROL.name)
        if (self.probe.include_supervised and self.probe.supervised_reference == "probe"
                and self.has_full_labels and SUPERVISED in self.method_names):
            out.append(SUPERVISED)
        return out

    @property
    def control_zero_init_residual(self) -> bool:
        """The random-init control's initialisation: the pretraining's (``with_term``: that
        of the methods with an intermediate term, whose starting point the paper's claims
        are about)."""
        z = self.pretrain.zero_init_residual
        return True if z == "with_term" else bool(z)

    def base_chance(self, method: str) -> tuple[float, str] | None:
        """The base loss of an encoder that learned nothing (e.g. InfoNCE's ln(K + 1)) and
        its label, or None."""
        spec = BASES[self.method(method).base]
        return spec.chance(self.bases[spec.name]) if spec.chance else None

    # ----------------------------------------------------------- per-job settings
    def pretrain_run(self, dataset: str, method: str) -> PretrainRun:
        m, ds = self.method(method), self.datasets[dataset]
        if not m.is_ssl:
            raise ValueError(f"{method!r} is not a self-supervised method")
        arch = self.arch_of(method)
        pre = self.pretrain
        zero_init = (m.term != "none") if pre.zero_init_residual == "with_term" else bool(
            pre.zero_init_residual)
        pre = dataclasses.replace(pre, arch=arch, zero_init_residual=zero_init,
                                  batch_size=ds.pretrain_batch_size or pre.batch_size,
                                  epochs=ds.pretrain_epochs or pre.epochs)
        # The run keeps only the settings its base and term read, so a setting of another
        # method reruns nothing here.
        return PretrainRun(
            dataset, method, m.base, self.bases[m.base], ds.metric,
            term_spec(m, self.terms, ds),
            preset(ds.augment, "ssl", self.pretrain.augment_overrides), pre,
            base_model=BASES[m.base].model, backbone=backbone_ref(arch),
            init=self.init_of(method))

    def init_run(self, dataset: str, method: str) -> InitRun:
        arch = self.arch_of(method)
        return InitRun(dataset, method, arch, self.init_of(method), backbone=backbone_ref(arch))

    def finetune_augment(self, dataset: str, pct: float):
        """The fine-tuning augmentation of a label fraction: the dataset's preset, or below
        100 % with ``official_subset_augment`` the dataset's own transform only."""
        ds, ft = self.datasets[dataset], self.finetune
        if not ft.augment:
            return None
        stage = "dataset" if ds.official_subset_augment and float(pct) < 100 else "finetune"
        return preset(ds.augment, stage, ft.augment_overrides)

    def finetune_run(self, dataset: str, method: str, pct: float = 100.0) -> FinetuneRun:
        """The run at label fraction ``pct``: its augmentation, its own maximum epochs
        (``epochs_by_fraction``, so an entry for one fraction reruns only that fraction) and
        the method's encoder's arch."""
        ds, ft = self.datasets[dataset], self.finetune_at(method, pct)
        return FinetuneRun(dataset, method, ds.metric, self.finetune_augment(dataset, pct),
                           ft, backbone=backbone_ref(ft.arch), select_metric=ds.select_metric)

    def finetune_at(self, method: str, pct: float) -> FinetuneSettings:
        """``finetune`` as one run at ``pct`` reads it: the method's encoder's arch and that
        fraction's epochs (the other fractions' entries dropped, so they rerun nothing)."""
        ft = self.finetune
        return dataclasses.replace(ft, arch=self.arch_of(method), epochs=ft.epochs_at(pct),
                                   epochs_by_fraction={})

    def cka_run(self) -> CKARun:
        return CKARun(self.cka, self.bootstrap.level, self.finetune.precision,
                      device=self.finetune.device)

    def probe_run(self, dataset: str, method: str) -> ProbeRun:
        ds, arch = self.datasets[dataset], self.arch_of(method)
        probe = dataclasses.replace(self.probe,
                                    batch_size=ds.probe_batch_size or self.probe.batch_size)
        augment = None
        if probe.protocol == "official" and ds.probe_augment != "none":
            augment = preset(ds.augment, ds.probe_augment, self.finetune.augment_overrides)
        return ProbeRun(dataset, method, ds.metric, arch, probe, self.bootstrap,
                        device=self.finetune.device, precision=self.finetune.precision,
                        backbone=backbone_ref(arch), augment=augment)

    def linear_probe_run(self, dataset: str, method: str) -> LinearProbeRun:
        """The ``--only-ll`` linear probe of an encoder (``probe.linear: only_ll``), on the
        probe's label fraction."""
        pct = self.probe.fraction
        ft = self.finetune_at(method, pct)
        arch = ft.arch
        return LinearProbeRun(dataset, method, self.datasets[dataset].metric, arch, pct,
                              self.finetune_augment(dataset, pct), ft,
                              self.probe.seed, self.bootstrap, backbone=backbone_ref(arch))


def term_spec(method: Method, terms: Mapping, ds: DatasetSettings) -> TermSpec:
    """The intermediate term of ``method``: each setting from the variant's overrides, else
    the dataset's (``mse_pool``), else ``pretrain.<term>``; blocks the method leaves out get
    weight 0. Settings of other terms are not part of it, so changing them reruns nothing."""
    kind = TERMS[method.term]
    if kind.settings is None:
        return TermSpec(kind.name, None, model=kind.model)
    values = dataclasses.asdict(terms[kind.name])
    values.update({k: v for k, v in ds.term_defaults.get(kind.name, {}).items()
                   if v is not None})
    known = {f.name for f in dataclasses.fields(kind.settings)}
    unknown = sorted(set(method.term_overrides) - known)
    if unknown:
        raise ConfigError(f"variants.{method.name}.{unknown[0]}", f"not a setting of term "
                          f"{kind.name!r} (its settings: {sorted(known)})")
    values.update(method.term_overrides)
    values["weights"] = [float(w) if b in method.blocks else 0.0
                         for b, w in zip(range(1, 5), values["weights"])]
    return TermSpec(kind.name, build(kind.settings, values), model=kind.model)


def dataset_settings(name: str, entry: Mapping, by_format: Mapping) -> DatasetSettings:
    """One dataset: its own entry, else ``by_format.<format>``, else the format's facts."""
    fmt = FORMATS[entry["format"]]
    fmt_defaults = by_format[fmt.name]

    def pick(key):
        own = entry.get(key)
        return own if own is not None else fmt_defaults.get(key)

    others = {k for f in FORMATS.values() for k in f.options} - set(fmt.options)
    stray = sorted(k for k in others if entry.get(k) is not None)
    if stray:
        raise ConfigError(f"datasets.{name}.{stray[0]}", f"is not read by format {fmt.name} "
                          f"(its own keys: {list(fmt.options) or 'none'})")
    stray = sorted(k for k in others if fmt_defaults.get(k) is not None)
    if stray:
        raise ConfigError(f"by_format.{fmt.name}.{stray[0]}", f"is not read by format "
                          f"{fmt.name} (its own keys: {list(fmt.options) or 'none'})")
    if fmt.check is not None:
        fmt.check(name, entry)
    if entry.get("synthetic") and fmt.synthetic is None:
        raise ConfigError(f"datasets.{name}.synthetic", f"format {fmt.name} has no "
                          "synthetic generator")
    options = {"on_missing": entry["on_missing"]}
    for key in fmt.options:
        value = pick(key)
        options[key] = tuple(value) if isinstance(value, list) else value
    lists = entry.get("split_lists")
    if lists:  # relative to the dataset root, or absolute
        lists = {k: str(Path(entry["root"]) / Path(lists[k]).expanduser())
                 for k in ("train", "val", "test")}
    term_defaults = {}
    for kind in TERMS.values():
        for setting, key in kind.dataset_keys.items():
            value = pick(key)
            if value is not None:
                term_defaults.setdefault(kind.name, {})[setting] = tuple(value)
    synthetic = dict(entry["synthetic"]) if entry.get("synthetic") else None
    return DatasetSettings(
        name=name, format=fmt.name, root=str(entry["root"]),
        # a format the user describes is named after the dataset, not the layout
        display=entry.get("display") or (name if fmt.generic else fmt.display)
        + (" (synthetic)" if synthetic else ""),
        image_size=int(pick("image_size")), metric=pick("metric") or fmt.metric,
        augment=pick("augment") or fmt.augment, ks_reference=pick("ks_reference"),
        reader=fmt.reader, reader_options=options, term_defaults=term_defaults,
        fundus_crop=bool(pick("fundus_crop")), synthetic=synthetic,
        synthetic_generator=fmt.synthetic if synthetic else None,
        public_images=fmt.public_images, paper=None if synthetic else fmt.paper,
        split_lists=lists or None, pretrain_batch_size=pick("pretrain_batch_size"),
        pretrain_epochs=pick("pretrain_epochs"),
        probe_batch_size=pick("probe_batch_size"), probe_augment=pick("probe_augment"),
        official_subset_augment=bool(pick("official_subset_augment")),
        select_metric=pick("select_metric"),
        window=_window(entry.get("window", "file")),
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
    # numerics (portable or native) changes the results of every stage that computes floats:
    # a result field of each of their sections
    num = {k: config[k] for k in TOP_LEVEL_FIELDS}
    pre = {**config["pretrain"], **num}
    settings = RunSettings(
        datasets=datasets, methods=resolve_methods(config),
        fractions=tuple(float(p) for p in config["fractions"]),
        seeds=tuple(int(s) for s in config["seeds"]),
        split=build(SplitSettings, config["split"], "split."),
        pretrain=build(PretrainSettings, pre, "pretrain."),
        bases={b.name: build(b.settings, pre[b.name], f"pretrain.{b.name}.")
               for b in BASES.values()},
        terms={t.name: build(t.settings, pre[t.name], f"pretrain.{t.name}.")
               for t in TERMS.values() if t.settings is not None},
        finetune=build(FinetuneSettings, {**config["finetune"], **num}, "finetune."),
        probe=build(ProbeSettings, {**config["probe"], **num}, "probe."),
        cka=build(CKASettings, {**config["cka"], **num}, "cka."),
        bootstrap=build(BootstrapSettings, {**config["bootstrap"], **num}, "bootstrap."),
        paired=build(PairedSettings, config["paired"], "paired."),
        data_report=build(DataReportSettings, config["data_report"], "data_report."),
        init=build(InitSettings, config["init"], "init."),
        cache=build(CacheSettings, config["cache"], "cache."),
    )
    check(settings)
    return settings


def resolve_methods(config: Mapping) -> tuple[Method, ...]:
    variants = config.get("variants") or {}
    out = []
    for name in config["methods"]:
        if name in variants:
            if name in PREDEFINED or name == CONTROL.name:
                raise ConfigError(f"variants.{name}", "redefines a predefined method; "
                                  "give the variant another name")
            out.append(variant(name, variants[name]))
        elif name in PREDEFINED:
            out.append(PREDEFINED[name])
        else:
            raise ConfigError("methods", f"{name!r} is neither a predefined method "
                              f"{sorted(PREDEFINED)} nor defined under `variants`")
    return tuple(out)


def check(s: RunSettings) -> None:
    """Cross-field rules the schema cannot state."""
    if s.probe.fraction not in s.fractions:
        raise ConfigError("probe.fraction", f"{s.probe.fraction:g} is not one of `fractions` "
                          f"{[f'{f:g}' for f in s.fractions]}")
    for d, ds in s.datasets.items():  # with each dataset's pretraining batch
        for m in s.ssl_methods:
            base = BASES[s.method(m).base]
            if base.check is None:
                continue
            try:
                base.check(s.bases[base.name], s.pretrain_run(d, m).settings)
            except ConfigError as e:
                if not ds.pretrain_batch_size:
                    raise
                raise ConfigError(e.where, str(e).split(": ", 1)[1] + f" (dataset {d}'s "
                                  f"pretrain_batch_size)") from None
    for key in s.finetune.epochs_by_fraction:
        if float(key) not in s.fractions:
            raise ConfigError(f"finetune.epochs_by_fraction.{key}", f"{key} is not one of "
                              f"`fractions` {[f'{f:g}' for f in s.fractions]}")
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
        if m.is_ssl and m.term != "none":
            spec = term_spec(m, s.terms, next(iter(s.datasets.values())))
            if not any(spec.weights):
                raise ConfigError(f"variants.{m.name}", "its term has weight 0 on every block")
    check_backbones(s)
    check_init(s)
    for section in ("pretrain", "finetune"):
        if getattr(s, section).tensorboard is True and not installed("tensorboard"):
            raise ConfigError(f"{section}.tensorboard", f"true needs {needs('tensorboard')} "
                              "(or set auto)")


def _window(value):
    return tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else value


def check_backbones(s: RunSettings) -> None:
    """Each backbone the run builds, by its family's check (e.g. timm knows the model), with
    the BatchNorm the method's SSL base asks for (MoCo's ``bn``)."""
    checked = set()
    for m in (*s.methods, CONTROL):
        arch = s.arch_of(m.name)
        where = f"variants.{m.name}.arch" if m.arch else \
            "pretrain.arch" if m.is_ssl or m is CONTROL else "finetune.arch"
        bn = getattr(s.bases[m.base], "bn", "global") if m.is_ssl else "global"
        family = family_of(arch)
        if family.check is not None and (arch, bn) not in checked:
            checked.add((arch, bn))
            family.check(arch, where, bn)


def check_init(s: RunSettings) -> None:
    """Every weights file a method starts from is named and exists (nothing downloads)."""
    for m in s.methods:
        init = s.init_of(m.name)
        if init is None:
            continue
        where = f"variants.{m.name}.init.weights" if isinstance(m.init, Mapping) \
            else "init.weights"
        if init.weights is None:
            raise ConfigError("init.weights", f"method {m.name!r} starts from ImageNet "
                              "weights: set init.weights to a local weights file (the README "
                              "says how to get one)")
        if not Path(init.weights).is_file():
            raise ConfigError(where, f"{init.weights}: no such file")
        for key, values in (("mean", init.mean), ("std", init.std)):
            if len(values) not in (1, 3):
                raise ConfigError(where.replace("weights", key), "one value per input "
                                  "channel of the weights' stem (1 or 3)")
