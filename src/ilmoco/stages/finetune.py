"""The ``finetune`` stage: whole network + a new linear head on the ``labeled_<pct>`` images.

With ``precise_bn`` the BatchNorm statistics are recomputed on the labelled images at each
epoch's end, before it is scored. The model is selected by the validation metric (or
``select_metric``, e.g. the official code's accuracy or raw-logit AUC) with early stopping;
the test predictions of that best model and of the last epoch (which the official code
reported) are written, with the selection (thresholds, epochs) and the model. Loss: BCE with
logits per label (multi-label), cross-entropy (binary: a 2-way softmax, as the paper;
multi-class).
The ``evaluate`` stage then turns predictions into ``metrics.json`` (estimate and
percentile-bootstrap interval over patients, for both).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ilmoco import numerics
from ilmoco.config.settings.fields import result_fields
from ilmoco.config.settings.finetune import FinetuneRun
from ilmoco.data.augment import BatchAugment
from ilmoco.data.batches import BatchSource
from ilmoco.data.cache import ImageCache
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.data.split import labelled_sets
from ilmoco.evaluation.metrics import check_metric, tuned_threshold
from ilmoco.evaluation.predictions import write_predictions
from ilmoco.io import read_table, write_csv, write_json
from ilmoco.models.backbone import build_backbone
from ilmoco.names import fraction_column
from ilmoco.runlog import log
from ilmoco.training.batchnorm import precise_bn
from ilmoco.training.batchnorm import subset as bn_subset
from ilmoco.training.checkpoints import ResumeCheckpoint, load_backbone, save_classifier
from ilmoco.training.events import EventLog
from ilmoco.training.heads import Classifier, has_masked, loss_fn, n_outputs, targets
from ilmoco.training.inference import (
    EarlyStopping,
    model_state,
    predict_logits,
    predict_proba,
    raw_logit_auc,
    selection_score,
)
from ilmoco.training.loop import train_loop
from ilmoco.training.optim import build_optimizer, schedule
from ilmoco.training.runtime import fingerprint, prepare


@dataclass
class FinetuneJob:
    """One fine-tuning: (method, fraction, seed), its settings and its files."""

    run: FinetuneRun
    pct: float
    seed: int
    split_csv: str
    meta: DatasetMeta
    cache_images: str
    cache_index: str
    encoder: str | None  # None for the supervised (random init) baseline
    out_predictions: str
    out_predictions_last: str
    out_selection: str
    out_model: str
    out_history: str
    resume_path: str
    code: str = ""  # the code version (a code change must not resume an old checkpoint)
    events_dir: str | None = None  # TensorBoard event files (not an output)


def run(job: FinetuneJob) -> dict:
    """Fine-tune (method, fraction, seed), select the best validation epoch, predict test
    with it and with the last epoch.

    Args:
        job: the typed settings (``FinetuneRun``), the label fraction and seed, the encoder
            (None: random init, the supervised baseline) and the files to write.

    Returns:
        The content of ``selection.json``.
    """
    r, s, meta = job.run, job.run.settings, job.meta
    rt = prepare(s.device, s.precision, s.deterministic, job.seed)
    split = read_table(job.split_csv)
    sets = labelled_sets(split, job.pct, job.split_csv)
    train, val, test = sets["train"], sets["val"], sets["test"]
    cache = ImageCache(job.cache_images, job.cache_index)

    if job.encoder is None:
        backbone = build_backbone(r.backbone.builder, s.arch, cache.channels,
                                  s.zero_init_residual)
    else:
        backbone, _ = load_backbone(job.encoder, zero_init_residual=s.zero_init_residual,
                                    dataset=r.dataset, method=r.method, arch=s.arch,
                                    in_channels=cache.channels)
    model = Classifier(backbone, n_outputs(meta)).to(device=rt.device, dtype=rt.dtype)
    if rt.device.type == "cuda" and s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, s.optimizer)
    if s.compile:
        model.compile(dynamic=False)

    aug = BatchAugment(r.augment, cache.size, rt.dtype) if r.augment is not None else None
    source = BatchSource(cache.images, s.batch_size, job.seed, rt.device, s.data_placement,
                         labels=targets(train, meta), rows=cache.rows(train["image_id"]),
                         min_steps=s.min_steps_per_epoch)
    masked = has_masked(targets(train, meta))
    val_images, y_val = cache.load(val["image_id"]), targets(val, meta)
    # only the images the statistics are taken on: the whole labelled set can be large
    bn_images = cache.load(train["image_id"].iloc[bn_subset(len(train))]) \
        if s.precise_bn else None
    check_metric(r.metric, y_val)
    steps_per_epoch = source.steps_per_epoch
    total = s.epochs * steps_per_epoch

    def predict(images):
        return predict_proba(model, images, meta.task, rt.device)

    def step_fn(x, y, gen, step):
        x = aug(x, gen) if aug is not None else x.to(rt.dtype).div(255)
        with rt.autocast():
            logits = model(x)
        return (loss := loss_fn(logits, y, meta.task, masked)), {"loss": loss.detach()}

    def validation_score():
        if r.select_metric == "auc_raw_logit":
            return raw_logit_auc(y_val, predict_logits(model, val_images, rt.device), meta.task)
        return selection_score(r.select_metric or r.metric, y_val, predict(val_images),
                               meta.task)

    def on_epoch_end(epoch, state):
        if bn_images is not None:  # the statistics of this epoch's weights, not a lagging mean
            precise_bn(model, bn_images, rt.device)
        stopping = EarlyStopping.from_dict(s.patience, state.extra.get("early_stopping"))
        score = validation_score()
        improved, stop = stopping.update(epoch, score, lambda: model_state(model))
        state.extra["early_stopping"] = stopping.to_dict()
        state.history.append({"epoch": epoch, "step": (epoch + 1) * steps_per_epoch,
                              f"val_{r.select_metric or r.metric}": score, "best": bool(improved)})
        return stop

    col = fraction_column(job.pct)
    resume = ResumeCheckpoint(job.resume_path, fingerprint(
        result_fields(r), job.pct, job.seed, job.split_csv, job.cache_index, job.cache_images,
        job.encoder or "random-init", job.code))
    events = EventLog(job.events_dir, s.tensorboard)
    state = train_loop(
        modules=model, optimizer=optimizer, source=source, epochs=s.epochs, step_fn=step_fn,
        lr_fn=schedule(s.optimizer, total, steps_per_epoch), resume=resume, seed=job.seed,
        checkpoint_every=s.checkpoint_every,
        log_every=max(1, min(s.log_every, steps_per_epoch)),
        on_epoch_end=events.after(on_epoch_end),
        desc=f"finetune {r.dataset}/{r.method}/{col}/s{job.seed}", progress=s.progress,
        log_throughput=False,
    )
    events.close(state.history)
    stopping = EarlyStopping.from_dict(s.patience, state.extra["early_stopping"])
    y_test = targets(test, meta)
    test_images = cache.load(test["image_id"])
    # the last epoch, as the official code reported it
    write_predictions(job.out_predictions_last, test, meta, y_test, predict(test_images))
    threshold_last = tuned_threshold(r.metric, y_val, lambda: predict(val_images))
    model.load_state_dict(stopping.best_state)
    log(f"best validation epoch {stopping.best_epoch} of {state.epoch} "
        f"(score {stopping.best_score:.4f})")
    write_predictions(job.out_predictions, test, meta, y_test, predict(test_images))
    selection = {
        "dataset": r.dataset, "method": r.method, "fraction": float(job.pct),
        "seed": int(job.seed), "metric": r.metric,
        "threshold": tuned_threshold(r.metric, y_val, lambda: predict(val_images)),
        "threshold_last": threshold_last, "n_train_labeled": int(len(train)),
        "n_val": int(len(val)), "best_epoch": int(stopping.best_epoch),
        "epochs_run": int(state.epoch), "val_best_score": float(stopping.best_score),
        "encoder": job.encoder, "settings": result_fields(r),
        "numerics": numerics.describe(),
    }
    save_classifier(job.out_model, model, {
        "dataset": r.dataset, "method": r.method, "fraction": float(job.pct),
        "seed": int(job.seed), "arch": s.arch, "builder": r.backbone.builder,
        "in_channels": cache.channels,
        "n_out": n_outputs(meta), "task": meta.task})
    write_csv(job.out_history, pd.DataFrame(state.history), float_format="%.6g")
    write_json(job.out_selection, selection)
    resume.remove()
    return selection
