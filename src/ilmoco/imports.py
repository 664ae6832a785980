"""Implementations named by import path (``"package.module:attribute"``).

The registries (``ilmoco.config``) name the module of each format's reader, each base and
term, and each backbone family as a string. A job imports only the implementation its run
names, and the rule hashes exactly that module's code, so adding a base, a term or a
format reruns nothing that does not use it.
"""

from __future__ import annotations

import importlib


def module_of(path: str) -> str:
    """``"ilmoco.models.bases.moco:MoCo"`` -> ``"ilmoco.models.bases.moco"``."""
    return path.partition(":")[0]


def load_object(path: str):
    """The attribute a ``"module:attribute"`` path names."""
    module, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"{path!r} is not a 'module:attribute' path")
    return getattr(importlib.import_module(module), attr)
