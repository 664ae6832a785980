"""Augmentation settings: what each view of an image may undergo, and the per-dataset presets
of the official code. Pure data (no torch), so the workflow can resolve settings at parse
time; ``ilmoco.data.augment`` applies them to batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class AugmentSpec:
    crop_scale: tuple[float, float] | None = None  # random-resized-crop area range
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.0
    vflip: float = 0.0
    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    jitter: tuple[float, float, float, float] | None = None  # brightness, contrast, sat., hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels of the output image

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, overrides: dict | None) -> AugmentSpec:
        if not overrides:
            return self
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise KeyError(f"unknown augmentation key(s) {sorted(unknown)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        return replace(self, **fixed)


_JIT = (0.4, 0.4, 0.4, 0.1)
# Per-dataset presets from the official code (docs/protocol.md): "ssl" gives the two
# views for pretraining, "finetune" the training augmentation for fine-tuning, "dataset"
# the official dataset class's own training transform, which applies where the official
# code set no other: fine-tuning below 100 % labels on histopathology (the Subset quirk)
# and its probing script (histopathology: a horizontal flip; none for the other datasets,
# whose official code never falls back on it).
PRESETS: dict[str, dict[str, AugmentSpec]] = {
    "chest": {
        "ssl": AugmentSpec(jitter=_JIT, grayscale_p=0.2, blur_p=0.5, rotation=30),
        "finetune": AugmentSpec(jitter=_JIT, grayscale_p=0.2, blur_p=0.5, rotation=30),
        "dataset": AugmentSpec(),
    },
    "histo": {
        "ssl": AugmentSpec(crop_scale=(0.4, 1.0), jitter=_JIT, grayscale_p=0.2, blur_p=0.5,
                           hflip=0.5),
        "finetune": AugmentSpec(crop_scale=(0.2, 1.0), jitter=_JIT, grayscale_p=0.2, blur_p=0.5,
                                rotation=30, hflip=0.5),
        "dataset": AugmentSpec(hflip=0.5),
    },
    "retina": {
        "ssl": AugmentSpec(jitter=_JIT, grayscale_p=0.2, blur_p=0.5, rotation=30, hflip=0.5),
        "finetune": AugmentSpec(jitter=(0.0, 0.4, 0.0, 0.1), hflip=0.5, vflip=0.5),
        "dataset": AugmentSpec(),
    },
    "none": {"ssl": AugmentSpec(), "finetune": AugmentSpec(), "dataset": AugmentSpec()},
}


def preset(name: str, stage: str, overrides: dict | None = None) -> AugmentSpec:
    if name not in PRESETS:
        raise KeyError(f"unknown augmentation preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name][stage].with_overrides(overrides)
