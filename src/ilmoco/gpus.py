"""Which GPUs a job uses, and data-parallel launch inside one job.

Snakemake never sets ``CUDA_VISIBLE_DEVICES``: on a workstation run with
``--resources gpu=N`` at most N GPU jobs run at once, but all of them would pick GPU 0.
``claim_gpus`` makes each job take free devices by locking ``<lock_dir>/gpu<i>.lock``
(released when the process exits, also when it is killed). Under SLURM (or any scheduler
that sets ``CUDA_VISIBLE_DEVICES``) nothing is changed.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from pathlib import Path

_held: list = []  # open lock files: keep them alive for the life of the process


def visible_gpu_indices(dev_dir: str = "/dev") -> list[int]:
    """GPU indices from device nodes (no CUDA initialisation, so the choice can still be
    applied through CUDA_VISIBLE_DEVICES)."""
    try:
        names = os.listdir(dev_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"nvidia(\d+)", n)))


def claim_gpus(n: int, *, lock_dir: str | os.PathLike | None = None,
               devices: list[int] | None = None, env=os.environ) -> list[int] | None:
    """Pin this process to ``n`` free GPUs; returns their indices, or None if left alone."""
    if n <= 0 or "CUDA_VISIBLE_DEVICES" in env:
        return None
    devices = visible_gpu_indices() if devices is None else devices
    if not devices:
        return None
    lock_dir = Path(lock_dir or os.environ.get("ILMOCO_GPU_LOCK_DIR", "/tmp/ilmoco-gpu-locks"))
    lock_dir.mkdir(parents=True, exist_ok=True)
    taken = []
    for i in devices:
        fh = open(lock_dir / f"gpu{i}.lock", "w")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        _held.append(fh)
        taken.append(i)
        if len(taken) == n:
            break
    if len(taken) < n:
        raise RuntimeError(f"needed {n} free GPU(s) but only {taken} were free; "
                           "run Snakemake with --resources gpu=<number of GPUs>")
    env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, taken))
    return taken


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn, args) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    fn(*args)


def run_data_parallel(fn, args: tuple, nprocs: int) -> None:
    """Run ``fn(*args)`` in ``nprocs`` processes forming one process group (torchrun-style
    environment: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT); ``nprocs == 1`` runs it
    here, unchanged."""
    if nprocs <= 1:
        fn(*args)
        return
    import torch.multiprocessing as mp

    mp.start_processes(_worker, args=(nprocs, free_port(), fn, args), nprocs=nprocs,
                       join=True, start_method="spawn")
