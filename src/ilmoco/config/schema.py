"""The config as a dictionary: ``--config`` values coerced to the schema's types, and the
part of it that determines results (``results/resolved_config.yaml``)."""

from __future__ import annotations

from collections.abc import Mapping

from ilmoco.config.settings.data import CacheSettings
from ilmoco.config.settings.fields import execution_field_names
from ilmoco.config.settings.finetune import FinetuneSettings
from ilmoco.config.settings.pretrain import PretrainSettings

_JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None),
               "array": list, "object": dict, "string": str}


def schema_at(schema: Mapping, root: Mapping) -> dict:
    """``schema`` with ``$ref`` and ``allOf`` merged in (enough for coercion)."""
    out = dict(schema)
    if "$ref" in out:
        target = root
        for part in out.pop("$ref").lstrip("#/").split("/"):
            target = target[part]
        out = {**schema_at(target, root), **out}
    for sub in out.pop("allOf", []):
        sub = schema_at(sub, root)
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
    schema = schema_at(schema, root)
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    enum = schema.get("enum")
    if isinstance(value, str) and types and ("string" not in types or (
            enum is not None and value not in enum)):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if _matches(parsed, types) and (enum is None or parsed in enum):
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
    return {section: execution_field_names(cls)
            for section, cls in (("pretrain", PretrainSettings),
                                 ("finetune", FinetuneSettings), ("cache", CacheSettings))}


def result_config(config: Mapping) -> dict:
    """The validated config without its execution settings: what determines the results
    (``results/resolved_config.yaml``; changing only an execution setting reruns nothing)."""
    out = dict(config)
    for section, keys in execution_keys().items():
        if section in out:
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
            if not out[section]:  # a section of execution settings only (cache)
                del out[section]
    return out
