"""The ``evaluate`` stage: a fine-tuning run scored from its test predictions, the metric of
the selected model and of the last epoch with their intervals (``metrics.json``). A stage of
its own, light (no torch), so that changing the interval settings retrains nothing."""

from __future__ import annotations

from ilmoco.config.settings.bootstrap import BootstrapSettings
from ilmoco.config.settings.fields import result_fields
from ilmoco.data.formats.base import DatasetMeta
from ilmoco.evaluation.bootstrap import metric_interval
from ilmoco.evaluation.metrics import one_class
from ilmoco.evaluation.predictions import read_predictions
from ilmoco.io import read_json, write_json
from ilmoco.runlog import log


def run(*, predictions, predictions_last, selection, meta: DatasetMeta,
             bootstrap: BootstrapSettings, out_metrics) -> dict:
    """``metrics.json`` of a fine-tuning run: the test metric of the selected model and of
    the last epoch with their intervals (a cheap stage of its own, so changing the interval
    settings retrains nothing).

    Args:
        predictions, predictions_last: test predictions of the best-validation and the last
            epoch (``predictions.csv`` / ``predictions_last.csv``).
        selection: ``selection.json`` of the run (metric, thresholds, epochs, sizes).
        meta: the dataset's metadata (patients resampled where the dataset has them).
        bootstrap: the interval settings.
    """
    sel = read_json(selection)
    df, y, p = read_predictions(predictions)
    groups = df["patient_id"].to_numpy() if meta.patient_ids else None
    ci = metric_interval(y, p, sel["metric"], sel["threshold"], groups, bootstrap)
    _, y_last, p_last = read_predictions(predictions_last)
    last = metric_interval(y_last, p_last, sel["metric"], sel["threshold_last"], groups,
                         bootstrap)
    last["epoch"] = sel["epochs_run"] - 1
    # a constant prediction scores what a model that learned nothing scores: no result
    last["one_class"] = one_class(sel["metric"], y_last, p_last, sel["threshold_last"])
    flat = one_class(sel["metric"], y, p, sel["threshold"])
    result = {**sel, **ci, "one_class": flat, "last_epoch": last,
              "bootstrap_unit": "patient" if groups is not None else "image",
              "bootstrap": result_fields(bootstrap)}
    write_json(out_metrics, result)
    log(f"test {sel['metric']} {ci['estimate']:.4f} [{ci['ci_low']:.4f}, {ci['ci_high']:.4f}]"
        f"{' (predicts one class)' if flat else ''}; last epoch {last['estimate']:.4f}")
    return result
