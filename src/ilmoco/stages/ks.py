"""The ``ks`` stage: how far the test-probability distribution of a model fine-tuned on few
labels is from that of a reference model fine-tuned on 100 % (``scipy.stats.ks_2samp``).

The official repository has no KS code; the paper's reference differs per dataset (MoCo for
chest, MoCo+MSE for retina, MoCo+BT for histopathology). Here it is configured per dataset
(``ks_reference``) or, by default, the best 100 % method on validation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ilmoco.evaluation.ks import ks_distance
from ilmoco.evaluation.predictions import read_predictions
from ilmoco.io import InputError, read_json, write_csv


def choose_reference(selections: dict, reference: str | None) -> tuple[str, str]:
    """The KS reference method: configured, or the best 100 % method on validation.

    ``selections`` maps (method, fraction, seed) -> selection.json content.
    """
    full = {k: v for k, v in selections.items() if k[1] == 100}
    if not full:
        raise InputError("KS needs runs at 100 % labels; add 100 to `fractions`")
    if reference:
        if reference not in {k[0] for k in full}:
            raise InputError(f"ks reference method {reference!r} has no 100 % run; "
                             f"available: {sorted({k[0] for k in full})}")
        return reference, "configured"
    by_method: dict[str, list] = {}
    for (m, _, _), v in full.items():
        by_method.setdefault(m, []).append(v["val_best_score"])
    best = max(sorted(by_method), key=lambda m: np.mean(by_method[m]))
    return best, "best 100 % method on validation"


def run(*, dataset: str, runs: dict, reference: str | None, out_csv: str) -> pd.DataFrame:
    """KS between each run's test probabilities and the reference method's 100 % run (same
    seed). ``runs`` maps (method, fraction, seed) -> (predictions.csv, selection.json)."""
    ref, how = choose_reference({k: read_json(v[1]) for k, v in runs.items()}, reference)
    rows = []
    for (method, pct, seed), (pred, _) in sorted(runs.items()):
        ref_key = (ref, 100, seed)
        if ref_key not in runs or (method, pct) == (ref, 100):
            continue
        df_a, _, p_a = read_predictions(pred)
        df_b, _, p_b = read_predictions(runs[ref_key][0])
        if not df_a["image_id"].equals(df_b["image_id"]):
            raise InputError(f"{pred}: test images differ from the reference run's")
        r = ks_distance(p_a, p_b)
        rows.append({"dataset": dataset, "method": method, "fraction": float(pct),
                     "seed": int(seed), "reference": ref, "reference_rule": how,
                     "ks": r["ks"], "pvalue": r["pvalue"]})
    df = pd.DataFrame(rows)
    write_csv(out_csv, df, float_format="%.6g")
    return df
