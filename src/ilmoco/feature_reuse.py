"""The feature-reuse stage: CKA per block between the pretrained and each fine-tuned encoder,
on one fixed, seeded test subset shared by every model of a dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ilmoco.backbone import BLOCKS
from ilmoco.cache import ImageCache
from ilmoco.engine import resolve_device
from ilmoco.features import extract_features, load_features, load_frozen_backbone
from ilmoco.io import InputError, write_csv
from ilmoco.similarity import cka_with_spread


def cka_subset(test_ids: pd.Series, size: int, seed: int) -> np.ndarray:
    """The fixed, seeded test subset every model of a dataset is compared on."""
    ids = np.sort(test_ids.astype(str).to_numpy())
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))


def run_cka(*, dataset: str, method: str, pretrained_features: str, finetuned: dict,
            cache_images: str, cache_index: str, cfg: dict, out_csv: str,
            device: str = "auto", precision: str = "auto") -> pd.DataFrame:
    """CKA per block between the pretrained encoder and each fine-tuned model.

    ``finetuned`` maps (fraction, seed) -> model.pt. The pretrained features come from the
    cached probe features (same images), the fine-tuned ones are extracted here.
    """
    index, feats = load_features(pretrained_features)
    test = index[index["set"] == "test"]
    subset = cka_subset(test["image_id"], cfg["subset"], cfg["seed"])
    pos = pd.Series(test.index, index=test["image_id"]).loc[subset].to_numpy()
    before = {b: feats[b][pos] for b in BLOCKS}
    dev = resolve_device(device)
    images = ImageCache(cache_images, cache_index).load(subset)
    rows = []
    for (pct, seed), path in sorted(finetuned.items()):
        backbone, meta = load_frozen_backbone(path, dataset=dataset)
        if meta.get("method") != method:
            raise InputError(f"{path}: fine-tuned model of method {meta.get('method')!r}, "
                             f"expected {method!r}")
        after = extract_features(backbone.to(dev), images, dev, precision)
        for b, f in zip(BLOCKS, after):
            r = cka_with_spread(before[b], f, cfg["kernel"], cfg["resamples"], cfg["seed"],
                                rbf_scale=cfg["rbf_scale"])
            rows.append({"dataset": dataset, "method": method, "fraction": float(pct),
                         "seed": int(seed), "block": b, "kernel": cfg["kernel"], **r})
    df = pd.DataFrame(rows)
    write_csv(out_csv, df, float_format="%.6g")
    return df
