"""Test-set predictions on disk: ``image_id, patient_id, y_<label>..., p_<label>...``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ilmoco.data.formats.base import DatasetMeta
from ilmoco.io import read_table, write_csv


def write_predictions(path, df: pd.DataFrame, meta: DatasetMeta, y, p) -> None:
    out = df[["image_id", "patient_id"]].reset_index(drop=True).copy()
    if meta.task == "multilabel":
        for j, name in enumerate(meta.label_columns):
            out[f"y_{name}"] = y[:, j].astype(int)
        for j, name in enumerate(meta.label_columns):
            out[f"p_{name}"] = p[:, j]
    elif meta.task == "binary":
        out[f"y_{meta.label_columns[0]}"] = y
        out[f"p_{meta.label_columns[0]}"] = p
    else:
        out[f"y_{meta.label_columns[0]}"] = y
        for k in range(p.shape[1]):
            out[f"p_{k}"] = p[:, k]
    write_csv(path, out, float_format="%.9g")  # float32 probabilities round-trip exactly


def read_predictions(path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(frame, y, p) from a ``predictions.csv``; p is (n,) for binary tasks."""
    df = read_table(path)
    ycols = [c for c in df.columns if c.startswith("y_")]
    pcols = [c for c in df.columns if c.startswith("p_")]
    y, p = df[ycols].to_numpy(), df[pcols].to_numpy()
    if len(pcols) == 1:
        y, p = y[:, 0], p[:, 0]
    elif len(ycols) == 1:
        y = y[:, 0]
    return df, y, p
