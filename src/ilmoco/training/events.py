"""TensorBoard event files of a training job: the scalars of its history rows (the rows of
``metrics.csv`` / ``history.csv``, at their ``step``), so ``tensorboard --logdir results``
shows every run, and every tracker that imports TensorBoard files (W&B, MLflow) can too.

Rows are written at each epoch end. A job that starts, afresh or resumed, first empties its
directory; a resumed job's history, restored from its checkpoint, is then written again with
the new rows, so a run keeps one curve: no duplicated or restarted steps, nothing left of
the steps an interrupted attempt ran past its checkpoint. The files are not outputs of the
rule (they change nothing a rerun compares); without the optional ``tensorboard`` package,
``tensorboard: auto`` writes none.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence

from ilmoco import dist
from ilmoco.optional import installed, needs, require
from ilmoco.runlog import log


class EventLog:
    """The event files of one job in ``log_dir`` (None, or ``mode`` false: none)."""

    def __init__(self, log_dir: str | None, mode: bool | str = "auto"):
        self.writer, self.written = None, 0
        if log_dir is None or mode is False or dist.rank() != 0:
            return
        if mode is True:
            require("tensorboard", "tensorboard: true")
        elif not installed("tensorboard"):
            log(f"no TensorBoard event files: tensorboard: auto without {needs('tensorboard')}")
            return
        from torch.utils.tensorboard import SummaryWriter

        shutil.rmtree(log_dir, ignore_errors=True)
        self.writer = SummaryWriter(log_dir)

    def write(self, rows: Sequence[dict]) -> None:
        """The rows not written yet: every finite number as a scalar of its column's name at
        the row's ``step`` (``epoch`` is no metric: an epoch's rows share it)."""
        if self.writer is None:
            return
        for row in rows[self.written:]:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) \
                        and math.isfinite(value):
                    self.writer.add_scalar(key, float(value), int(row["step"]))
        self.written = len(rows)
        self.writer.flush()

    def after(self, on_epoch_end: Callable) -> Callable:
        """``on_epoch_end`` of the training loop, then the rows of the epoch written."""

        def wrapped(epoch, state):
            stop = on_epoch_end(epoch, state)
            self.write(state.history)
            return stop

        return wrapped

    def close(self, rows: Sequence[dict]) -> None:
        self.write(rows)
        if self.writer is not None:
            self.writer.close()
