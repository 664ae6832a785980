"""The ``synthetic_data`` stage: a synthetic dataset written in its format's real layout
(the embedded demo)."""

from __future__ import annotations

from collections.abc import Mapping

from ilmoco.imports import load_object


def run(*, generator: str, root, options: Mapping) -> None:
    """Write the dataset with ``generator`` (``module:function``, from the format registry)."""
    load_object(generator)(root, **dict(options))
