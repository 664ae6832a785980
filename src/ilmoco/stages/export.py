"""The ``export`` stage: an encoder in its library's own layout, for anyone to load.

``encoder.safetensors`` holds the backbone's weights under the key names of the stock model
(``torchvision.models.<model>()`` or ``timm.create_model(<model>)``) without its classifier,
so ``load_state_dict(..., strict=False)`` into a stock model reports only the classifier (and
for timm the layers after block 4) as missing. Its metadata is the recipe: library and
model, the config's ``arch``, input channels and image size, the input convention (pixels
scaled to [0, 1], no mean/std normalisation), the embedding, the method, the dataset and
the digest of the settings that produced it (the one in the job logs' headers).
"""

from __future__ import annotations

from ilmoco.config.settings.fields import digest
from ilmoco.models.weights import save_stock
from ilmoco.training.checkpoints import load_backbone

FORMAT = "ilmoco-encoder/1"
NORMALIZATION = "none: pixel values / 255, in [0, 1], channels first (no mean/std)"
EMBEDDING = "global average of block 4, the output of the last of the four feature stages"


def recipe(backbone, meta: dict) -> dict:
    """The metadata of an exported encoder (safetensors metadata: strings, or JSON)."""
    return {
        "format": FORMAT, "library": backbone.library, "model": backbone.stock_name,
        "arch": meta["arch"], "in_channels": str(meta["in_channels"]),
        "image_size": str(meta["image_size"]), "normalization": NORMALIZATION,
        "embedding": EMBEDDING, "block_dims": list(backbone.block_dims),
        "method": meta["method"], "dataset": meta["dataset"],
        "kind": meta.get("kind", ""), "epochs": meta.get("epochs"),
        "selected_epoch": meta.get("selected_epoch"),
        "settings_digest": digest(meta["settings"]), "settings": meta["settings"],
        "git": meta.get("git", ""), "torch": meta.get("torch", ""),
    }


def run(encoder: str, out: str) -> dict:
    """Write ``out`` (``encoder.safetensors``) from ``encoder`` (an ``encoder.pt``); returns
    its metadata."""
    backbone, meta = load_backbone(encoder)
    metadata = recipe(backbone, meta)
    save_stock(out, backbone, metadata)
    return metadata
