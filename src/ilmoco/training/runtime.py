"""Where and how a training or evaluation stage runs: device, numeric precision,
determinism, per-step random generators, and the fingerprint that ties a resume checkpoint to
what produced it. Pretraining and fine-tuning prepare their run through :func:`prepare`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from ilmoco import dist
from ilmoco.io import fingerprint  # noqa: F401 (defined beside the files it hashes)
from ilmoco.runlog import log


def resolve_device(pref: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one; an unavailable CUDA request falls back to CPU."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        log(f"device {pref!r} requested but CUDA is unavailable; running on CPU")
        return torch.device("cpu")
    return torch.device(pref)


def use_bf16(device: torch.device, precision: str) -> bool:
    return device.type == "cuda" and precision in ("auto", "bf16")


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of parameters and inputs: float64 for ``fp64`` runs (exact comparisons of
    training dynamics), else float32 (bf16 enters through autocast only)."""
    return torch.float64 if precision == "fp64" else torch.float32


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA (no GradScaler needed); full precision everywhere else."""
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


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The random generator of training step ``step`` alone: every random draw of a step is
    a function of (seed, step), so resuming needs no saved RNG state."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1))
    return gen


@dataclass(frozen=True)
class Runtime:
    """A prepared run: its device, precision and dtype."""

    device: torch.device
    precision: str
    dtype: torch.dtype

    def autocast(self):
        return autocast(self.device, self.precision)


def prepare(device: str, precision: str, deterministic: bool, seed: int) -> Runtime:
    """Pick the device (the local rank's GPU under data parallelism), join the process group
    the launcher describes, set determinism and the global seed."""
    dev = resolve_device(device)
    if dev.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_from_env(dev.type)
    configure_determinism(deterministic, dev)
    torch.manual_seed(seed)
    return Runtime(dev, precision, compute_dtype(precision))
