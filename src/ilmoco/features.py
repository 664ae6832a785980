"""Frozen block features: the backbone in eval mode, features cached to disk.

The backbone is frozen *in eval mode*: BatchNorm uses its running statistics and they do not
move (the official probing code kept BN in train mode, so its statistics drifted). Features
are global-average-pooled block 1-4 outputs, extracted once per model under
``torch.inference_mode`` (bf16 on CUDA) and shared by the probes and the CKA stage.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ilmoco.backbone import BLOCKS, Backbone, pooled_blocks
from ilmoco.cache import ImageCache
from ilmoco.config import fraction_column
from ilmoco.engine import autocast, resolve_device
from ilmoco.io import InputError, atomic_path, torch_load


@torch.inference_mode()
def extract_features(backbone: nn.Module, images: np.ndarray, device, precision: str = "auto",
                     batch_size: int = 256) -> list[np.ndarray]:
    """GAP features of blocks 1-4, (n, C_i) float32 each; the backbone is left as it was."""
    was_training = backbone.training
    backbone.eval()
    out = [[] for _ in BLOCKS]
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[start:start + batch_size])).to(device)
        with autocast(device, precision):
            _, blocks = backbone(x.float().div_(255))
        for i, f in enumerate(pooled_blocks(blocks)):
            out[i].append(f.float().cpu())
    backbone.train(was_training)
    return [torch.cat(o).numpy() if o else np.zeros((0, 0), np.float32) for o in out]


def load_frozen_backbone(path, *, dataset: str) -> tuple[Backbone, dict]:
    """Backbone of a pretrained ``encoder.pt`` or a fine-tuned ``model.pt``."""
    ckpt = torch_load(path)
    meta = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
    if meta.get("dataset") != dataset:
        raise InputError(f"{path}: checkpoint is for dataset {meta.get('dataset')!r}, "
                         f"not {dataset!r}")
    backbone = Backbone(meta["arch"], meta["in_channels"])
    if "backbone" in ckpt:
        sd = ckpt["backbone"]
    else:
        sd = {k[len("backbone."):]: v for k, v in ckpt["model"].items()
              if k.startswith("backbone.")}
    backbone.load_state_dict(sd)
    return backbone, meta


def probe_sets(split: pd.DataFrame, fraction: float) -> dict[str, pd.DataFrame]:
    col = fraction_column(fraction)
    if col not in split.columns:
        raise InputError(f"probe.fraction {fraction} is not one of the split's fractions ({col})")
    return {"train": split[(split["split"] == "train") & split[col].astype(bool)],
            "val": split[split["split"] == "val"], "test": split[split["split"] == "test"]}


def run_features(model_path, split_csv, cache_images, cache_index, out_npz, *, dataset: str,
                 fraction: float, device: str = "auto", precision: str = "auto",
                 batch_size: int = 256) -> None:
    """Cache block features for the probe's train/val/test images of one frozen model."""
    dev = resolve_device(device)
    backbone, meta = load_frozen_backbone(model_path, dataset=dataset)
    backbone.to(dev)
    split = pd.read_csv(split_csv, dtype={"image_id": str, "patient_id": str})
    sets = probe_sets(split, fraction)
    ids = pd.concat([s["image_id"] for s in sets.values()])
    which = np.concatenate([[k] * len(s) for k, s in sets.items()])
    cache = ImageCache(cache_images, cache_index)
    feats = extract_features(backbone, cache.load(ids), dev, precision, batch_size)
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, image_id=ids.to_numpy().astype(str), set=which,
                     **{b: f.astype(np.float16) for b, f in zip(BLOCKS, feats)})


def load_features(path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    with np.load(path) as z:
        index = pd.DataFrame({"image_id": z["image_id"].astype(str), "set": z["set"].astype(str)})
        return index, {b: z[b].astype(np.float32) for b in BLOCKS}
