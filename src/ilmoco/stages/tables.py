"""The ``tables`` stage: every result table (CSV, Markdown, LaTeX) from the per-dataset
results."""

from __future__ import annotations

from pathlib import Path

from ilmoco.reporting.tables import build_all


def run(*, finetune, probes, ckas, kss, paireds, presentation: dict, out_dir,
        linear=()) -> None:
    """``presentation``: the run's method order, display names, interval level, the
    supervised row's source, the probe protocol and each dataset's name in the paper (from
    the workflow); ``linear``: the ``--only-ll`` linear probes, if the run has them."""
    view = presentation
    build_all(finetune_metrics=finetune, probes=probes, ckas=ckas, kss=kss, paireds=paireds,
              out_dir=Path(out_dir), order=view["order"], display=view["display"],
              level=view["level"], supervised_from_finetune=view["supervised_from_finetune"],
              paper_datasets=view["paper_datasets"], linear_probes=list(linear),
              probe_protocol=view.get("probe_protocol", "frozen"))
