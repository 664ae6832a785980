"""The one training loop, shared by pretraining and fine-tuning.

* Batches come from a :class:`~ilmoco.data.batches.BatchSource`; every random draw of step ``s``
  comes from its own generator (:func:`~ilmoco.training.runtime.step_generator`), so a resumed run
  replays exactly what an uninterrupted run would have done.
* Resume checkpoints (model, optimiser, loop position, caller state, loss history) are
  written once ``checkpoint_every`` steps have passed since the last one, checked after every
  step and at each epoch end (``0``: at each epoch end). An epoch end does not force one: a
  CPU demo's epochs are ~20 steps, and a 135 MB checkpoint per epoch was a tenth of a short
  fine-tuning job (measured).
* A non-finite loss stops training with the step number (checked every step on CPU, at each
  log interval on GPU to avoid a host sync per step, and always before a checkpoint).
* The log gets progress lines (a bar on a terminal) and one summary line per epoch.
* Preemption: SIGTERM (SLURM's time limit, preemption, ``scancel``) or SIGUSR1 (the warning
  a job asks for with ``--signal=USR1@<s>``) lets the current step finish, writes a resume
  checkpoint and stops with :class:`Preempted` ("preempted at step k"); the retry, or
  SLURM's requeue, resumes at that step ("resumed at step k") and ends as an uninterrupted
  run would. Data-parallel ranks agree on the step (the flag is reduced at each check).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ilmoco import dist
from ilmoco.data.batches import BatchSource
from ilmoco.models.losses import upcast
from ilmoco.runlog import Progress, Stopped, log
from ilmoco.training.checkpoints import ResumeCheckpoint
from ilmoco.training.runtime import step_generator


@dataclass
class LoopState:
    epoch: int = 0
    step: int = 0  # next step within ``epoch``
    history: list = field(default_factory=list)  # rows of logged metrics
    extra: dict = field(default_factory=dict)  # caller-owned state (early stopping...)
    stopped: bool = False


class NonFiniteLoss(FloatingPointError):
    pass


class Preempted(Stopped):
    """The job was asked to stop (a signal); its resume checkpoint holds the step."""


PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@contextlib.contextmanager
def preemption_flag():
    """A one-element list set to True when a preemption signal arrives (the handlers are
    installed for the duration, in the main thread only, and the previous ones restored)."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # only a flag: the loop acts on it between steps
        flag[0] = True

    previous = {s: signal.signal(s, handler) for s in PREEMPT_SIGNALS}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _any_rank(flag: bool, device) -> bool:
    if not dist.is_dist():
        return flag
    v = torch.tensor(float(flag), device=device)
    torch.distributed.all_reduce(v, op=torch.distributed.ReduceOp.MAX)
    return bool(v.item())


def _mean_over_ranks(sums: dict, count: int) -> dict:
    """Interval means of the logged terms, averaged over data-parallel ranks."""
    if not sums:
        return {}
    keys = sorted(sums)
    v = torch.stack([sums[k] for k in keys]) / count
    if dist.is_dist():
        torch.distributed.all_reduce(v)
        v = v / dist.world_size()
    return dict(zip(keys, v.tolist()))


def epoch_summary(epoch: int, epochs: int, rows: list[dict], seconds: float) -> str:
    """``epoch 3/8 | loss 4.81 infonce 4.70 | val_infonce 4.9 | 12.3 s``: the epoch's last
    training row merged with the rows the stage added at its end (validation, monitors)."""
    merged: dict = {}
    for r in rows:
        merged.update({k: v for k, v in r.items() if k not in ("step", "epoch", "best")})
    items = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in merged.items()]
    return f"epoch {epoch + 1}/{epochs} | " + " ".join(items) + f" | {seconds:.1f} s"


def train_loop(
    *, modules: nn.Module, optimizer: torch.optim.Optimizer, source: BatchSource, epochs: int,
    step_fn: Callable, lr_fn: Callable[[int], float], resume: ResumeCheckpoint | None,
    seed: int, checkpoint_every: int = 0, log_every: int = 10,
    on_epoch_end: Callable[[int, LoopState], bool] | None = None,
    desc: str = "train", progress: str = "auto", pairs_per_step: int | None = None,
    log_throughput: bool = True,
) -> LoopState:
    """Run (or resume) training.

    Args:
        modules: everything whose state is checkpointed (and put in train mode each epoch).
        step_fn: ``(x, y, gen, step) -> (loss, logs)`` for one batch; ``step`` is global.
        lr_fn: ``step -> learning rate``.
        resume: where resume checkpoints go (None: no checkpoints).
        on_epoch_end: ``(epoch, state) -> stop``; may append rows to ``state.history`` and
            keep its own state in ``state.extra``.
        progress: ``auto`` (a bar on a terminal, else lines), ``bar``, ``lines`` or ``quiet``.

    Returns:
        The final loop state.
    """
    device = source.device
    state = LoopState()
    saved = resume.load() if resume else None
    if saved is not None:
        modules.load_state_dict(saved["modules"])
        optimizer.load_state_dict(saved["optimizer"])
        state = LoopState(**saved["loop"])
        log(f"resumed {desc} at step {state.epoch * source.steps_per_epoch + state.step} "
            f"(epoch {state.epoch}, step {state.step} of the epoch)")
    sums: dict[str, torch.Tensor] = dict(saved["log_sums"]) if saved else {}
    n_acc = int(saved["log_count"]) if saved else 0
    steps_per_epoch = source.steps_per_epoch
    total = epochs * steps_per_epoch
    check_every = 1 if device.type == "cpu" else max(1, log_every)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    since_save = 0  # steps since the last checkpoint (or the start)

    def save():
        nonlocal since_save
        since_save = 0
        if resume is not None:
            check_finite()
            resume.save({"modules": modules.state_dict(), "optimizer": optimizer.state_dict(),
                         "loop": state.__dict__, "log_sums": sums, "log_count": n_acc})

    def check_finite():
        bad = int(first_bad)
        if bad >= 0:
            raise NonFiniteLoss(f"{desc}: loss became NaN/inf at step {bad} "
                                f"(epoch {bad // steps_per_epoch}); lower the learning rate "
                                "or check the input data")

    bar = None
    if dist.rank() == 0 and progress != "quiet":
        bar = Progress(total, state.epoch * steps_per_epoch + state.step, desc, progress)
    t_last = t_epoch = time.perf_counter()
    with preemption_flag() as preempted:
        while state.epoch < epochs and not state.stopped:
            modules.train()
            first_row = len(state.history)
            for s, (x, y) in source.iterate(state.epoch, state.step):
                step = state.epoch * steps_per_epoch + s
                lr = lr_fn(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss, logs = step_fn(x, y, step_generator(seed, step, device), step)
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                                        torch.full_like(first_bad, step), first_bad)
                if (step + 1) % check_every == 0:
                    check_finite()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for k, v in logs.items():
                    v = upcast(v)
                    sums[k] = sums[k] + v if k in sums else v.clone()
                n_acc += 1
                state.step = s + 1
                logged = None
                if (step + 1) % log_every == 0 or state.step == steps_per_epoch:
                    check_finite()
                    now = time.perf_counter()
                    row = {"step": step + 1, "epoch": state.epoch, "lr": lr}
                    row.update(_mean_over_ranks(sums, n_acc))
                    if log_throughput:  # timing: the only column a rerun does not reproduce
                        per = pairs_per_step or source.batch_size
                        row["throughput"] = n_acc * per / max(now - t_last, 1e-9)
                    state.history.append(row)
                    logged = row
                    sums, n_acc, t_last = {}, 0, now
                if bar is not None:
                    bar.update(1, **({"loss": f"{logged['loss']:.3f}"}
                                     if logged and "loss" in logged else {}))
                since_save += 1
                if checkpoint_every and since_save >= checkpoint_every and \
                        state.step < steps_per_epoch:
                    save()
                if (step + 1) % check_every == 0 and _any_rank(preempted[0], device):
                    save()
                    raise Preempted(
                        f"{desc}: preempted at step {step + 1} (epoch {state.epoch}, step "
                        f"{state.step} of the epoch); resume checkpoint written, the retry "
                        "resumes there")
            stop = on_epoch_end(state.epoch, state) if on_epoch_end else False
            if bar is not None:
                now = time.perf_counter()
                bar.write(epoch_summary(state.epoch, epochs, state.history[first_row:][-3:],
                                        now - t_epoch))
                t_epoch = now
            state.epoch, state.step = state.epoch + 1, 0
            state.stopped = bool(stop)
            if not checkpoint_every or since_save >= checkpoint_every:
                save()
    if bar is not None:
        bar.close()
    return state
