"""Portable numerics: the same bits from the same config on any x86-64 CPU with AVX2.

A CPU job's floating-point results depend on more than its inputs: the libraries under torch
and numpy pick their kernels by the CPU they find, and wider vectors and other blockings sum
in other orders. With ``numerics: portable`` every job's process pins each of them before it
is imported (the variables are read once, at the library's first use):

* ATen's vectorised kernels (reductions, BatchNorm, the optimisers' fused kernels, Sleef's
  exp/log): ``ATEN_CPU_CAPABILITY=avx2``, not AVX-512 where the CPU has it;
* oneDNN's JIT convolutions: ``ONEDNN_MAX_CPU_ISA=AVX2``;
* MKL's BLAS (torch's dense layers): ``MKL_CBWR=COMPATIBLE``. MKL honours its AVX2
  reproducibility branch on Intel CPUs only: on an AMD EPYC ``MKL_CBWR=AVX2`` runs as
  ``AUTO`` (MKL_VERBOSE shows ``CNR:AUTO``), so the one branch both vendors share is
  COMPATIBLE (SSE2 code; torch's few small matrix products pay for it, convolutions do not);
* numpy's BLAS (OpenBLAS: CKA, the probes' features): ``OPENBLAS_CORETYPE=Haswell``, and
  numpy's own SIMD loops without their AVX-512 variants (``NPY_DISABLE_CPU_FEATURES``);
* one intra-op thread in every library (ATen, oneDNN, MKL and OpenBLAS split reductions by
  thread count), and torch's deterministic algorithms.

Snakefile-side, :func:`apply` puts these variables into the environment that every job
inherits (locally and through a cluster executor, which parses the Snakefile again); in the
job, :func:`verify` checks that torch runs what was asked (a CPU without AVX2 fails with one
line) and :func:`describe` is what the job log's header and the results record. ``native``
(the default) leaves every library to choose: fastest, reproducible on the same machine only.

What these variables cannot reach: a blocking that a library may choose from the CPU's cache
sizes (oneDNN's heuristics read them); bit-identity across CPU models rests on such blockings
not changing the order of a reduction.
"""

from __future__ import annotations

import os
import sys

MODES = ("native", "portable")
MODE_VARIABLE = "ILMOCO_NUMERICS"
THREADS = 1

PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
    "OPENBLAS_NUM_THREADS": str(THREADS),
}


def environment(mode: str) -> dict[str, str]:
    """The variables a job of ``mode`` runs with (besides the mode itself)."""
    if mode not in MODES:
        raise ValueError(f"numerics {mode!r}: use one of {list(MODES)}")
    return dict(PORTABLE_ENV) if mode == "portable" else {}


def apply(mode: str, environ=os.environ) -> dict[str, str]:
    """Put ``mode``'s variables into ``environ`` (overriding what the shell set: a portable
    run must not depend on it), for the processes started from here."""
    env = {MODE_VARIABLE: mode, **environment(mode)}
    environ.update(env)
    return env


def mode() -> str:
    return os.environ.get(MODE_VARIABLE, "native")


def verify() -> None:
    """In a job: make torch follow the mode. Portable: one thread, deterministic algorithms,
    and an error if ATen did not take the AVX2 kernels (a CPU without AVX2, or torch imported
    before the variables were set)."""
    torch = sys.modules.get("torch")
    if mode() != "portable" or torch is None:  # a job without torch (data, tables) has none
        return
    from ilmoco.io import InputError

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)
    got = torch.backends.cpu.get_cpu_capability()
    if got != "AVX2":
        raise InputError(f"numerics: portable runs ATen's AVX2 kernels, but this process has "
                         f"{got} (ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY')!r}"
                         "); on a CPU without AVX2 use numerics: native")


def describe() -> dict:
    """What the process computes with: the mode, the kernels torch chose, the pinned
    variables. Recorded in job logs and results."""
    out: dict = {"mode": mode()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["aten"] = torch.backends.cpu.get_cpu_capability()
        out["threads"] = torch.get_num_threads()
        out["deterministic"] = torch.are_deterministic_algorithms_enabled()
    out["env"] = {k: os.environ[k] for k in PORTABLE_ENV if k in os.environ}
    return out


def summary() -> str:
    """One phrase for a log header, e.g. ``portable (ATen AVX2, 1 thread)``."""
    d = describe()
    if "aten" not in d:
        return d["mode"]
    return f"{d['mode']} (ATen {d['aten']}, {d['threads']} thread{'s' * (d['threads'] != 1)})"
