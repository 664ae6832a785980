"""The kinds of settings fields, how a section becomes a settings object, and the part of
one that determines results (see the package's docstring)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import field

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


def execution_field_names(cls) -> set[str]:
    """The fields of ``cls`` that only change how a stage runs."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("execution")}
