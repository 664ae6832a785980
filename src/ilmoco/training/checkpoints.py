"""Every checkpoint the workflow writes and reads, with one set of checks.

* ``encoder.pt`` (pretraining): ``{"backbone": state dict, "meta": {...}}``;
* ``model.pt`` (fine-tuning): ``{"model": backbone.* + head.* state dict, "meta": {...}}``;
* ``resume.pt`` (either stage, outside the declared outputs): model, optimiser and loop
  state, tagged with a fingerprint of the result settings and inputs, so a checkpoint of
  another configuration is ignored, never resumed.

All are written atomically (temp file, fsync, rename) and loaded with
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ilmoco import dist
from ilmoco.io import InputError, torch_load, torch_save
from ilmoco.models.backbone import build_backbone
from ilmoco.runlog import git_revision, log

ENCODER_FORMAT = 1


def provenance() -> dict:
    """What every checkpoint records about the code that wrote it."""
    return {"git": git_revision(Path(__file__).parent), "torch": str(torch.__version__)}


def save_encoder(path, backbone: nn.Module, meta: dict) -> None:
    """A pretrained backbone (compiled-module prefixes stripped) with its metadata."""
    sd = {k.replace("_orig_mod.", ""): v.detach().cpu() for k, v in backbone.state_dict().items()}
    torch_save({"backbone": sd, "meta": {"format_version": ENCODER_FORMAT, "kind": "pretrained",
                                         **meta, **provenance()}}, path)


def save_classifier(path, model: nn.Module, meta: dict) -> None:
    """A fine-tuned backbone + head with its metadata."""
    sd = {k.replace("_orig_mod.", ""): v.cpu() for k, v in model.state_dict().items()}
    torch_save({"model": sd, "meta": {"kind": "finetuned", **meta,
                                      "git": provenance()["git"]}}, path)


def read_checkpoint(path, **expect) -> tuple[dict, dict]:
    """(backbone state dict, meta) of an ``encoder.pt`` or ``model.pt``; every ``expect``
    key (dataset, method, arch, in_channels...) must match what the checkpoint records."""
    ckpt = torch_load(path)
    if not isinstance(ckpt, dict) or "meta" not in ckpt or not (
            "backbone" in ckpt or "model" in ckpt):
        raise InputError(f"{path}: not a checkpoint of this project (no backbone/model and "
                         "meta); rerun the stage that writes it")
    meta = ckpt["meta"]
    for key, want in expect.items():
        got = meta.get(key)
        if want is not None and got != want:
            raise InputError(
                f"{path}: checkpoint was trained with {key}={got!r} but this run needs "
                f"{key}={want!r}; point this stage at the matching checkpoint")
    if "backbone" in ckpt:
        return ckpt["backbone"], meta
    prefix = "backbone."
    return {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}, meta


def load_backbone(path, *, zero_init_residual: bool = True, **expect) -> tuple[nn.Module, dict]:
    """The backbone of an ``encoder.pt`` or ``model.pt`` (see :func:`read_checkpoint`),
    built by the builder it records."""
    sd, meta = read_checkpoint(path, **expect)
    backbone = build_backbone(meta["builder"], meta["arch"], meta["in_channels"],
                              zero_init_residual)
    backbone.load_state_dict(sd)
    return backbone, meta


class ResumeCheckpoint:
    """Atomic resume checkpoints tagged with a fingerprint of what produced them."""

    def __init__(self, path, tag: str):
        self.path, self.tag = Path(path), tag

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        state = torch_load(self.path)
        if state.get("fingerprint") != self.tag:
            log(f"{self.path}: checkpoint from a different configuration; starting afresh")
            return None
        return state

    def save(self, state: dict) -> None:
        if dist.rank() == 0:
            torch_save({**state, "fingerprint": self.tag}, self.path)
        if dist.is_dist():
            torch.distributed.barrier()

    def remove(self) -> None:
        if dist.rank() == 0:
            self.path.unlink(missing_ok=True)
