"""The ``figures`` stage: one dataset's figures (PNG + PDF) from its own analysis outputs."""

from __future__ import annotations

import pandas as pd

from ilmoco.evaluation.metrics import chance_level
from ilmoco.evaluation.predictions import read_predictions
from ilmoco.names import runs_by_key
from ilmoco.reporting import figures, tables


def run(*, dataset: str, inputs, presentation: dict, outputs) -> None:
    """``inputs``/``outputs``: the rule's named files (``metrics``, ``probes``, ``ckas``,
    ``pretrain:<method>``, ``predictions:<run>``, ``ks``, ``paired``; ``<figure>_png`` /
    ``<figure>_pdf``); figures whose inputs the run lacks are skipped."""
    inp, out, view = inputs, outputs, presentation
    order, display, level = view["order"], view["display"], view["level"]
    title = view["datasets"][dataset]
    ft = tables.finetune_table(inp["metrics"], level)
    runs = runs_by_key(inp.items(), "predictions")
    seed = min(seed for _, _, seed in runs)  # the CDFs and their KS values: one seed
    predictions = {(m, pct): read_predictions(p[0]) for (m, pct, s), p in runs.items()
                   if s == seed}
    y = next(iter(predictions.values()))[1]
    chance = chance_level(ft["metric"].iloc[0], y)
    figures.finetune_dots(ft, title, order, display, out["finetune_png"],
                          out["finetune_pdf"], chance, level)
    linear, layer = tables.probe_tables(inp["probes"], level=level)
    figures.layer_probe_dots(layer, title, order, display, out["layer_probe_png"],
                             out["layer_probe_pdf"], chance, level)
    figures.cka_lines(tables.feature_reuse_table(inp["ckas"], ft, level), title, order,
                      display, out["feature_reuse_png"], out["feature_reuse_pdf"], level)
    if "ks_cdf_png" in out:
        ks = pd.read_csv(inp["ks"])
        ks = ks[ks["seed"] == seed]
        figures.ks_cdfs({k: v[2] for k, v in predictions.items()}, ks, title, order, display,
                        out["ks_cdf_png"], out["ks_cdf_pdf"])
    curves = {key.split(":", 1)[1]: pd.read_csv(path) for key, path in inp.items()
              if key.startswith("pretrain:")}
    figures.pretrain_curves(curves, title, order, display, out["pretrain_loss_png"],
                            out["pretrain_loss_pdf"], losses=view["losses"],
                            chance=view["chance"])
    if "paired_difference_png" in out:
        figures.paired_forest(tables.paired_table([inp["paired"]], level), title, order,
                              display, out["paired_difference_png"],
                              out["paired_difference_pdf"], level)
