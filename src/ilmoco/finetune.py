"""The ``finetune`` stage: whole network + a new linear head on the ``labeled_<pct>`` images.

The model is selected by the validation metric with early stopping, and that best model,
not the last epoch, is evaluated on test (the official code evaluated the last epoch).
Loss: BCE with logits per label (multi-label), cross-entropy (binary: a 2-way softmax, as
the paper; multi-class). Outputs: test ``predictions.csv``, ``metrics.json`` (estimate,
percentile-bootstrap 95 % CI over patients, n), ``model.pt`` and the per-epoch history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ilmoco.augment import GpuAugment, preset
from ilmoco.backbone import Backbone
from ilmoco.cache import ImageCache
from ilmoco.config import fraction_column, git_revision
from ilmoco.datasets.base import DatasetMeta, log
from ilmoco.engine import (
    BatchSource,
    Checkpointer,
    autocast,
    build_optimizer,
    configure_determinism,
    fingerprint,
    lr_at,
    resolve_device,
    train_loop,
)
from ilmoco.io import InputError, torch_load, torch_save, write_csv, write_json
from ilmoco.predictions import write_predictions
from ilmoco.stats import best_f1_threshold, bootstrap_ci, metric_fn
from ilmoco.tasks import loss_fn, n_outputs, prediction_loss, probabilities, targets


class Classifier(nn.Module):
    def __init__(self, backbone: Backbone, n_out: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_dim, n_out)

    def forward(self, x):
        emb, _ = self.backbone(x)
        return self.head(emb)


@torch.inference_mode()
def predict(model: nn.Module, images: np.ndarray, task: str, device, precision: str,
            batch_size: int = 256) -> np.ndarray:
    """Probabilities on un-augmented images, model in eval mode (BN statistics frozen)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).to(device).float().div_(255)
        with autocast(device, precision):
            out.append(probabilities(model(x), task).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0,))


def check_encoder(meta: dict, path, *, dataset: str, method: str, arch: str,
                  in_channels: int) -> None:
    """Refuse a checkpoint recorded for another dataset, method, backbone or input."""
    expect = {"dataset": dataset, "method": method, "arch": arch, "in_channels": in_channels}
    for key, want in expect.items():
        got = meta.get(key)
        if got != want:
            raise InputError(
                f"{path}: checkpoint was trained with {key}={got!r} but this run needs "
                f"{key}={want!r}; point fine-tuning at the matching encoder"
            )


def load_backbone(path, *, dataset: str, method: str, arch: str, in_channels: int,
                  zero_init_residual: bool = True) -> Backbone:
    ckpt = torch_load(path)
    if not isinstance(ckpt, dict) or "backbone" not in ckpt or "meta" not in ckpt:
        raise InputError(f"{path}: not an encoder checkpoint of this project (no backbone/meta)")
    check_encoder(ckpt["meta"], path, dataset=dataset, method=method, arch=arch,
                  in_channels=in_channels)
    backbone = Backbone(arch, in_channels, zero_init_residual)
    backbone.load_state_dict(ckpt["backbone"])
    return backbone


@dataclass
class FinetuneJob:
    dataset: str
    method: str
    pct: float
    seed: int
    split_csv: str
    cache_images: str
    cache_index: str
    meta: DatasetMeta
    metric: str
    augment: str
    cfg: dict  # resolved ``finetune`` section
    bootstrap: dict
    encoder: str | None  # None for the supervised (random init) baseline
    out_predictions: str
    out_metrics: str
    out_model: str
    out_history: str
    ckpt_path: str
    progress: bool = True


def _selection_score(metric_name: str, y, p) -> float:
    """Validation score used to pick the best epoch (threshold-free for the tuned F1)."""
    name = "f1_macro" if metric_name == "f1_pos_tuned" else metric_name
    return float(metric_fn(name)(y, p)[0])


def run(job: FinetuneJob) -> dict:
    cfg, meta = job.cfg, job.meta
    device = resolve_device(cfg["device"])
    configure_determinism(cfg["deterministic"], device)
    seed = int(job.seed)
    split = pd.read_csv(job.split_csv, dtype={"image_id": str, "patient_id": str})
    col = fraction_column(job.pct)
    if col not in split.columns:
        raise InputError(f"{job.split_csv}: no column {col}; add {job.pct} to `fractions`")
    train = split[(split["split"] == "train") & split[col].astype(bool)]
    val, test = split[split["split"] == "val"], split[split["split"] == "test"]
    for name, part in (("train", train), ("val", val), ("test", test)):
        if len(part) == 0:
            raise InputError(f"{job.split_csv}: the {name} set of {col} is empty; add data")
    cache = ImageCache(job.cache_images, job.cache_index)

    torch.manual_seed(seed)
    if job.encoder is None:
        backbone = Backbone(cfg["arch"], cache.channels, cfg["zero_init_residual"])
    else:
        backbone = load_backbone(job.encoder, dataset=job.dataset, method=job.method,
                                 arch=cfg["arch"], in_channels=cache.channels,
                                 zero_init_residual=cfg["zero_init_residual"])
    model = Classifier(backbone, n_outputs(meta)).to(device)
    if device.type == "cuda" and cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg["optimizer"])
    if cfg["compile"]:
        model.compile(dynamic=False)

    aug = GpuAugment(preset(job.augment, "finetune", cfg["augment_overrides"]), cache.size) \
        if cfg["augment"] else None
    source = BatchSource(cache.images, cfg["batch_size"], seed, device, cfg["data_placement"],
                         labels=targets(train, meta), rows=cache.rows(train["image_id"]),
                         min_steps=cfg["min_steps_per_epoch"])
    val_images, y_val = cache.load(val["image_id"]), targets(val, meta)
    epochs, spe = cfg["epochs"], source.steps_per_epoch
    opt = cfg["optimizer"]
    total = epochs * spe

    def step_fn(x, y, gen, g):
        x = aug(x, gen) if aug is not None else x.float().div(255)
        with autocast(device, cfg["precision"]):
            logits = model(x)
        return (loss := loss_fn(logits, y, meta.task)), {"loss": loss.detach()}

    def on_epoch_end(epoch, state):
        p_val = predict(model, val_images, meta.task, device, cfg["precision"])
        score = _selection_score(job.metric, y_val, p_val)
        ex = state.extra
        if not np.isfinite(score):  # e.g. validation lacks a class: fall back on val loss
            score = -prediction_loss(y_val, p_val, meta.task)
        improved = "best_score" not in ex or score > ex["best_score"]
        if improved:
            ex.update(best_score=score, best_epoch=epoch, bad_epochs=0,
                      best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
        else:
            ex["bad_epochs"] = ex.get("bad_epochs", 0) + 1
        state.history.append({"epoch": epoch, "step": (epoch + 1) * spe,
                              f"val_{job.metric}": score, "best": bool(improved)})
        return ex["bad_epochs"] >= cfg["patience"]

    tag = fingerprint(cfg, job.method, job.pct, seed, job.metric, job.augment, job.split_csv,
                      job.cache_index, job.encoder or "random-init")
    ckpt = Checkpointer(job.ckpt_path, tag)
    state = train_loop(
        modules=model, optimizer=optimizer, source=source, epochs=epochs, step_fn=step_fn,
        lr_fn=lambda g: lr_at(g, total, opt["lr"], opt["schedule"], 0), ckpt=ckpt, seed=seed,
        ckpt_every=cfg["checkpoint_every"], log_every=max(1, min(cfg["log_every"], spe)),
        on_epoch_end=on_epoch_end, desc=f"finetune {job.dataset}/{job.method}/{col}/s{seed}",
        progress=job.progress, log_throughput=False,
    )
    ex = state.extra
    model.load_state_dict(ex["best_state"])
    log(f"best validation epoch {ex['best_epoch']} of {state.epoch} (score {ex['best_score']:.4f})")

    threshold = None
    if job.metric == "f1_pos_tuned":
        threshold = best_f1_threshold(y_val, predict(model, val_images, meta.task, device,
                                                     cfg["precision"]))
    p_test = predict(model, cache.load(test["image_id"]), meta.task, device, cfg["precision"])
    y_test = targets(test, meta)
    groups = test["patient_id"].to_numpy() if meta.patient_ids else None
    ci = bootstrap_ci(y_test, p_test, metric_fn(job.metric, threshold), groups,
                      job.bootstrap["resamples"], job.bootstrap["seed"], job.bootstrap["level"])
    write_predictions(job.out_predictions, test, meta, y_test, p_test)
    result = {
        "dataset": job.dataset, "method": job.method, "fraction": float(job.pct), "seed": seed,
        "metric": job.metric, **ci, "threshold": threshold,
        "n_train_labeled": int(len(train)), "n_val": int(len(val)),
        "bootstrap_unit": "patient" if groups is not None else "image",
        "best_epoch": int(ex["best_epoch"]), "epochs_run": int(state.epoch),
        "val_best_score": float(ex["best_score"]), "encoder": job.encoder,
        "config": {"finetune": cfg, "bootstrap": job.bootstrap, "augment": job.augment},
    }
    torch_save({"model": {k: v.cpu() for k, v in model.state_dict().items()},
                "meta": {"kind": "finetuned", "dataset": job.dataset, "method": job.method,
                         "fraction": float(job.pct), "seed": seed, "arch": cfg["arch"],
                         "in_channels": cache.channels, "n_out": n_outputs(meta),
                         "task": meta.task, "git": git_revision(Path(__file__).parent)}},
               job.out_model)
    write_csv(job.out_history, pd.DataFrame(state.history), float_format="%.6g")
    write_json(job.out_metrics, result)
    ckpt.remove()
    return result
