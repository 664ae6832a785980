"""``paired``: the method every other is compared with on the same test images."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairedSettings:
    baseline: str
