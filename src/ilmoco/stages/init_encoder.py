"""The ``init_encoder`` stage: the encoder of a method that starts from a weights file
(``imagenet``: ``init.weights``), made without training.

The stock model's weights (torchvision or timm layout) are mapped onto the backbone, its
classifier dropped, the stem adapted to the dataset's channels and the weights' input
normalisation folded into it (:mod:`ilmoco.models.weights`). The result is an
``encoder.pt`` like a pretraining's, so fine-tuning, probing, CKA and the export read it
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ilmoco.config.settings.fields import result_fields
from ilmoco.config.settings.init import InitRun
from ilmoco.data.cache import ImageCache
from ilmoco.models.backbone import build_backbone
from ilmoco.models.weights import load_stock_weights
from ilmoco.runlog import log
from ilmoco.training.checkpoints import save_encoder


@dataclass
class InitJob:
    run: InitRun
    cache_images: str
    cache_index: str
    out_encoder: str


def run(job: InitJob) -> None:
    """Write ``job.out_encoder``: the backbone of ``job.run.arch`` holding the weights of
    ``job.run.init`` for this dataset's channels."""
    r = job.run
    cache = ImageCache(job.cache_images, job.cache_index)
    # every parameter and buffer is then overwritten: the initialisation does not matter
    backbone = build_backbone(r.backbone.builder, r.arch, cache.channels, True)
    load_stock_weights(backbone, r.init.weights, (r.init.mean, r.init.std))
    log(f"{r.init.weights}: {backbone.library} {backbone.stock_name} weights for "
        f"{cache.channels} input channel(s)")
    save_encoder(job.out_encoder, backbone, {
        "dataset": r.dataset, "method": r.method, "arch": r.arch,
        "builder": r.backbone.builder, "in_channels": cache.channels,
        "image_size": cache.size, "epochs": 0, "settings": result_fields(r)})
