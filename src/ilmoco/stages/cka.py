"""The ``cka`` stage (feature reuse): CKA per block between the pretrained encoder and each encoder
fine-tuned from it, averaged over random test subsets (the same subsets for every model of
a dataset). Both encoders' features are extracted here, the same way (eval mode, the same
precision), on the images of those subsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ilmoco.config.settings.cka import CKARun
from ilmoco.data.cache import ImageCache
from ilmoco.evaluation.similarity import cka_over_subsets, cka_subsets
from ilmoco.io import read_table, write_csv
from ilmoco.names import BLOCKS
from ilmoco.training.checkpoints import load_backbone
from ilmoco.training.inference import extract_features
from ilmoco.training.runtime import resolve_device


@dataclass
class CKAJob:
    """``finetuned`` maps (fraction, seed) -> the ``model.pt`` fine-tuned from ``encoder``."""

    dataset: str
    method: str
    run: CKARun
    encoder: str
    finetuned: dict
    split_csv: str
    cache_images: str
    cache_index: str
    out_csv: str


def run(job: CKAJob) -> pd.DataFrame:
    """CKA per block between ``job.encoder`` and each model fine-tuned from it, averaged over
    the same random test subsets; writes and returns one row per (fraction, seed, block)."""
    s = job.run.settings
    split = read_table(job.split_csv)
    test_ids = np.sort(split.loc[split["split"] == "test", "image_id"].astype(str).to_numpy())
    subsets = cka_subsets(len(test_ids), s.subset, s.repeats, s.seed)
    used = np.unique(np.concatenate(subsets))  # extract each needed image once
    where = {v: i for i, v in enumerate(used)}
    subsets = [np.array([where[i] for i in sub]) for sub in subsets]
    images = ImageCache(job.cache_images, job.cache_index).load(test_ids[used])
    device = resolve_device(job.run.device)

    def features(path):
        backbone, _ = load_backbone(path, dataset=job.dataset, method=job.method)
        return extract_features(backbone.to(device), images, device, job.run.precision)

    before = features(job.encoder)
    rows = []
    for (pct, seed), path in sorted(job.finetuned.items()):
        after = features(path)
        for block, fb, fa in zip(BLOCKS, before, after):
            r = cka_over_subsets(fb, fa, subsets, s.kernel, job.run.level,
                                 rbf_scale=s.rbf_scale, sigma=s.sigma)
            rows.append({"dataset": job.dataset, "method": job.method, "fraction": float(pct),
                         "seed": int(seed), "block": block, "kernel": s.kernel, **r})
    df = pd.DataFrame(rows)
    write_csv(job.out_csv, df, float_format="%.6g")
    return df
