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

from ilmoco.config.augment import preset
from ilmoco.config.backbones import backbone_ref
from ilmoco.config.bases import BASES
from ilmoco.config.formats import FORMATS
from ilmoco.config.methods import CONTROL, PAPER_METHODS, Method, variant
from ilmoco.config.settings import (
    BootstrapSettings,
    CacheSettings,
    CKARun,
    CKASettings,
    DatasetSettings,
    FinetuneRun,
    FinetuneSettings,
    PairedSettings,
    PretrainRun,
    PretrainSettings,
    ProbeRun,
    ProbeSettings,
    SplitSettings,
    TermSpec,
    build,
)
from ilmoco.config.terms import TERMS
from ilmoco.io import ConfigError
from ilmoco.names import SUPERVISED


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
        # The run keeps only the settings its base and term read, so a setting of another
        # method reruns nothing here.
        return PretrainRun(
            dataset, method, m.base, self.bases[m.base], ds.metric,
            term_spec(m, self.terms, ds),
            preset(ds.augment, "ssl", self.pretrain.augment_overrides), self.pretrain,
            base_model=BASES[m.base].model, backbone=backbone_ref(self.pretrain.arch))

    def finetune_run(self, dataset: str, method: str) -> FinetuneRun:
        ds, ft = self.datasets[dataset], self.finetune
        aug = preset(ds.augment, "finetune", ft.augment_overrides) if ft.augment else None
        return FinetuneRun(dataset, method, ds.metric, aug, ft,
                           backbone=backbone_ref(ft.arch))

    def cka_run(self) -> CKARun:
        return CKARun(self.cka, self.bootstrap.level, self.finetune.precision,
                      device=self.finetune.device)

    def probe_run(self, dataset: str, method: str) -> ProbeRun:
        arch = self.finetune.arch if method == SUPERVISED else self.pretrain.arch
        return ProbeRun(dataset, method, self.datasets[dataset].metric, arch, self.probe,
                        self.bootstrap, device=self.finetune.device,
                        precision=self.finetune.precision, backbone=backbone_ref(arch))


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
    if entry.get("synthetic") and fmt.synthetic is None:
        raise ConfigError(f"datasets.{name}.synthetic", f"format {fmt.name} has no "
                          "synthetic generator")
    options = {"on_missing": entry["on_missing"]}
    for key in fmt.options:
        value = entry.get(key)
        options[key] = tuple(value) if isinstance(value, list) else value
    term_defaults = {}
    for kind in TERMS.values():
        for setting, key in kind.dataset_keys.items():
            value = pick(key)
            if value is not None:
                term_defaults.setdefault(kind.name, {})[setting] = tuple(value)
    synthetic = dict(entry["synthetic"]) if entry.get("synthetic") else None
    return DatasetSettings(
        name=name, format=fmt.name, root=str(entry["root"]),
        display=entry.get("display") or fmt.display + (" (synthetic)" if synthetic else ""),
        image_size=int(pick("image_size")), metric=pick("metric") or fmt.metric,
        augment=pick("augment") or fmt.augment, ks_reference=pick("ks_reference"),
        reader=fmt.reader, reader_options=options, term_defaults=term_defaults,
        fundus_crop=bool(pick("fundus_crop")), synthetic=synthetic,
        synthetic_generator=fmt.synthetic if synthetic else None,
        public_images=fmt.public_images, paper=None if synthetic else fmt.paper,
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
    pre = config["pretrain"]
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
        finetune=build(FinetuneSettings, config["finetune"], "finetune."),
        probe=build(ProbeSettings, config["probe"], "probe."),
        cka=build(CKASettings, config["cka"], "cka."),
        bootstrap=build(BootstrapSettings, config["bootstrap"], "bootstrap."),
        paired=build(PairedSettings, config["paired"], "paired."),
        cache=build(CacheSettings, config["cache"], "cache."),
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
    for base in dict.fromkeys(m.base for m in s.methods if m.is_ssl):
        if BASES[base].check is not None:
            BASES[base].check(s.bases[base], s.pretrain)
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
