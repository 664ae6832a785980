"""The one training loop, shared by pretraining and fine-tuning.

* Batches come from the uint8 cache with fixed shape (drop_last; a labelled set smaller than
  a batch is cycled), resident on the GPU when they fit, else pinned host memory, else a
  prefetching reader over the memmap. Batch ``(epoch, step)`` is a pure function of the seed,
  and so is every random draw of step ``s`` (its own generator), so a resumed run replays
  exactly what an uninterrupted run would have done.
* Checkpoints (model, optimiser, loop position, caller state, loss history) are written
  atomically every ``ckpt_every`` steps and at each epoch end, to a path outside the declared
  Snakemake outputs, tagged with a fingerprint of the config and inputs: a checkpoint from a
  different configuration is ignored, never resumed.
* A non-finite loss stops training with the step number (checked every step on CPU, at each
  log interval on GPU to avoid a host sync per step, and always before a checkpoint).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ilmoco import dist
from ilmoco.cache import read_rows
from ilmoco.datasets.base import log
from ilmoco.io import torch_load, torch_save


def resolve_device(pref: str = "auto") -> torch.device:
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        log(f"device {pref!r} requested but CUDA is unavailable; running on CPU")
        return torch.device("cpu")
    return torch.device(pref)


def use_bf16(device: torch.device, precision: str) -> bool:
    return device.type == "cuda" and precision in ("auto", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA (no GradScaler needed); fp32 everywhere else."""
    if use_bf16(device, precision):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """``deterministic: true`` asks cuDNN/cuBLAS for deterministic kernels (slower)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def param_groups(modules: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only: BatchNorm parameters and biases (ndim <= 1) excluded."""
    decay, no_decay = [], []
    for p in modules.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(modules: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    groups = param_groups(modules, cfg.get("weight_decay", 0.0))
    name = cfg.get("name", "sgd")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9))
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg["lr"])
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg["lr"])
    raise ValueError(f"unknown optimizer {name!r}; use sgd, adam or adamw")


def lr_at(step: int, total: int, base: float, schedule: str = "constant",
          warmup_steps: int = 0) -> float:
    """Linear warm-up, then constant or cosine decay to 0."""
    if warmup_steps and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule == "constant":
        return base
    t = (step - warmup_steps) / max(1, total - warmup_steps)
    return float(base * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """A generator for step ``step`` alone: resuming needs no saved RNG state."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1))
    return g


def fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (str, os.PathLike)) and Path(p).is_file():
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class BatchSource:
    """Fixed-shape uint8 batches, addressable by (epoch, step).

    ``images`` is (n, C, S, S) uint8 (an array or memmap). Each rank of a data-parallel run
    takes its contiguous slice of the global batch.
    """

    def __init__(self, images: np.ndarray, batch_size: int, seed: int, device: torch.device,
                 placement: str = "auto", labels: np.ndarray | None = None,
                 rows: np.ndarray | None = None, min_steps: int = 1):
        """``rows`` selects the samples from ``images`` (e.g. a memmap of the whole cache);
        an epoch has at least ``min_steps`` steps (a small labelled set is cycled)."""
        rows = np.arange(len(images)) if rows is None else np.asarray(rows)
        self.rows = rows
        self.n = len(rows)
        if self.n == 0:
            raise ValueError("no images to train on")
        self.world, self.rank = dist.world_size(), dist.rank()
        if batch_size % self.world:
            raise ValueError(f"batch size {batch_size} not divisible by {self.world} ranks")
        self.batch_size, self.local = batch_size, batch_size // self.world
        self.seed, self.device = seed, device
        self.steps_per_epoch = max(1, min_steps, self.n // batch_size)
        self._perm_epoch, self._perm = None, None
        self.labels = None if labels is None else torch.as_tensor(labels)
        nbytes = self.n * int(np.prod(images.shape[1:]))
        self.placement = placement if placement != "auto" else self._choose(nbytes)
        if self.placement in ("device", "host"):
            t = torch.from_numpy(read_rows(images, rows))
            if self.placement == "device":
                self.data = t.to(device)
            else:
                self.data = t.pin_memory() if device.type == "cuda" else t
        else:  # memmap: read each batch from disk, prefetched by a thread
            self.data = images
        if self.labels is not None:
            self.labels = self.labels.to(device)

    def _choose(self, nbytes: int) -> str:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if nbytes < 0.3 * free:
                return "device"
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            avail = 8 << 30
        return "host" if nbytes < 0.4 * avail else "memmap"

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            need = self.steps_per_epoch * self.batch_size
            parts, j = [], 0
            while sum(len(p) for p in parts) < need:  # cycle a small labelled set
                parts.append(np.random.default_rng([self.seed, epoch, j]).permutation(self.n))
                j += 1
            self._perm, self._perm_epoch = np.concatenate(parts), epoch
        return self._perm

    def indices(self, epoch: int, step: int) -> np.ndarray:
        """This rank's sample indices for batch (epoch, step)."""
        start = step * self.batch_size + self.rank * self.local
        return self._permutation(epoch)[start:start + self.local]

    def batch(self, epoch: int, step: int):
        """(uint8 images on the device, labels or None) for batch (epoch, step)."""
        idx = self.indices(epoch, step)
        if self.placement == "device":
            x = self.data[torch.as_tensor(idx, device=self.device)]
        elif self.placement == "host":
            x = self.data[torch.as_tensor(idx)]
            x = x.pin_memory() if self.device.type == "cuda" else x
            x = x.to(self.device, non_blocking=True)
        else:
            x = torch.from_numpy(read_rows(self.data, self.rows[idx]))
            x = (x.pin_memory() if self.device.type == "cuda" else x).to(self.device,
                                                                         non_blocking=True)
        y = None
        if self.labels is not None:
            y = self.labels[torch.as_tensor(idx, device=self.labels.device)]
        return x, y

    def iterate(self, epoch: int, start: int = 0):
        """Batches ``start..`` of an epoch; for memmap data the next batch loads in a thread."""
        if self.placement != "memmap":
            for s in range(start, self.steps_per_epoch):
                yield s, self.batch(epoch, s)
            return
        result: dict = {}

        def load(s):
            result[s] = self.batch(epoch, s)

        t = None
        for s in range(start, self.steps_per_epoch):
            if t is None:
                load(s)
            else:
                t.join()
            if s + 1 < self.steps_per_epoch:
                t = threading.Thread(target=load, args=(s + 1,))
                t.start()
            yield s, result.pop(s)


class Checkpointer:
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


@dataclass
class LoopState:
    epoch: int = 0
    step: int = 0  # next step within ``epoch``
    history: list = field(default_factory=list)  # rows of logged metrics
    extra: dict = field(default_factory=dict)  # caller-owned state (early stopping...)
    stopped: bool = False


class NonFiniteLoss(FloatingPointError):
    pass


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


def train_loop(
    *, modules: nn.Module, optimizer: torch.optim.Optimizer, source: BatchSource, epochs: int,
    step_fn: Callable, lr_fn: Callable[[int], float], ckpt: Checkpointer | None, seed: int,
    ckpt_every: int = 0, log_every: int = 10,
    on_epoch_end: Callable[[int, LoopState], bool] | None = None,
    desc: str = "train", progress: bool = True, pairs_per_step: int | None = None,
    log_throughput: bool = True,
) -> LoopState:
    """Run (or resume) training. ``step_fn(x, y, gen, global_step) -> (loss, logs)``.

    ``on_epoch_end(epoch, state)`` may append to ``state.history`` / ``state.extra`` and
    returns True to stop early. Returns the final loop state.
    """
    device = source.device
    state = LoopState()
    saved = ckpt.load() if ckpt else None
    if saved is not None:
        modules.load_state_dict(saved["modules"])
        optimizer.load_state_dict(saved["optimizer"])
        state = LoopState(**saved["loop"])
        log(f"resuming {desc} from epoch {state.epoch} step {state.step}")
    sums: dict[str, torch.Tensor] = dict(saved["log_sums"]) if saved else {}
    n_acc = int(saved["log_count"]) if saved else 0
    spe = source.steps_per_epoch
    total = epochs * spe
    check_every = 1 if device.type == "cpu" else max(1, log_every)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def save():
        if ckpt is not None:
            check_finite()
            ckpt.save({"modules": modules.state_dict(), "optimizer": optimizer.state_dict(),
                       "loop": state.__dict__, "log_sums": sums, "log_count": n_acc})

    def check_finite():
        s = int(first_bad)
        if s >= 0:
            raise NonFiniteLoss(f"{desc}: loss became NaN/inf at step {s} (epoch {s // spe}); "
                                "lower the learning rate or check the input data")

    bar = None
    if progress and dist.rank() == 0:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=state.epoch * spe + state.step, desc=desc, unit="step",
                   mininterval=5, dynamic_ncols=True)
    t_last = time.perf_counter()
    while state.epoch < epochs and not state.stopped:
        modules.train()
        for s, (x, y) in source.iterate(state.epoch, state.step):
            g = state.epoch * spe + s
            lr = lr_fn(g)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, logs = step_fn(x, y, step_generator(seed, g, device), g)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                                    torch.full_like(first_bad, g), first_bad)
            if (g + 1) % check_every == 0:
                check_finite()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in logs.items():
                sums[k] = sums[k] + v.float() if k in sums else v.float().clone()
            n_acc += 1
            state.step = s + 1
            if bar is not None:
                bar.update(1)
            if (g + 1) % log_every == 0 or state.step == spe:
                check_finite()
                now = time.perf_counter()
                row = {"step": g + 1, "epoch": state.epoch, "lr": lr}
                row.update(_mean_over_ranks(sums, n_acc))
                if log_throughput:  # timing: the only column a rerun does not reproduce
                    per = pairs_per_step or source.batch_size
                    row["throughput"] = n_acc * per / max(now - t_last, 1e-9)
                state.history.append(row)
                if bar is not None:
                    bar.set_postfix(loss=f"{row.get('loss', float('nan')):.3f}")
                sums, n_acc, t_last = {}, 0, now
            if ckpt_every and (g + 1) % ckpt_every == 0 and state.step < spe:
                save()
        stop = on_epoch_end(state.epoch, state) if on_epoch_end else False
        state.epoch, state.step = state.epoch + 1, 0
        state.stopped = bool(stop)
        save()
    if bar is not None:
        bar.close()
    return state
