"""Which GPUs a job uses, and data-parallel launch inside one job.

Snakemake never sets ``CUDA_VISIBLE_DEVICES``: on a workstation run with
``--resources gpu=N`` at most N GPU jobs run at once, but all of them would pick GPU 0.
``claim_gpus`` makes each job take free devices by locking ``<lock_dir>/gpu<i>.lock``
(released when the process exits, also when it is killed). Under SLURM (or any scheduler
that sets ``CUDA_VISIBLE_DEVICES``) nothing is changed.

Several users share one lock directory (``ILMOCO_GPU_LOCK_DIR``, default
``/tmp/ilmoco-gpu-locks``): it is created sticky and world-writable (1777, like /tmp), lock
files world-readable and -writable (0666), and a lock is taken on a read-only descriptor,
so a lock file created by another user works too.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from pathlib import Path

from ilmoco.io import InputError

_held: list = []  # open lock descriptors: kept for the life of the process


def visible_gpu_indices(dev_dir: str = "/dev") -> list[int]:
    """GPU indices from device nodes (no CUDA initialisation, so the choice can still be
    applied through CUDA_VISIBLE_DEVICES)."""
    try:
        names = os.listdir(dev_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"nvidia(\d+)", n)))


def shared_lock_dir(lock_dir: Path) -> Path:
    """The lock directory, created sticky and world-writable if it does not exist."""
    if not lock_dir.is_dir():
        try:
            lock_dir.mkdir(parents=True)
            os.chmod(lock_dir, 0o1777)
        except FileExistsError:  # another job created it meanwhile
            pass
    return lock_dir


def open_lock(path: Path) -> int:
    """A read-only descriptor of ``path``, creating it world-writable (0666) if absent.

    An existing file is opened without O_CREAT: in a sticky world-writable directory,
    Linux's protected_regular refuses O_CREAT on another user's file even when it exists."""
    try:
        while True:
            try:
                return os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                pass
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:  # created by another job meanwhile
                continue
            os.fchmod(fd, 0o666)  # whatever the umask: every user must open it
            return fd
    except PermissionError:
        raise InputError(
            f"{path}: cannot open or create this GPU lock file (permission denied); set "
            "ILMOCO_GPU_LOCK_DIR to a directory every user of this machine can write, e.g. "
            "one with mode 1777 like /tmp") from None


def claim_gpus(n: int, *, lock_dir: str | os.PathLike | None = None,
               devices: list[int] | None = None, env=os.environ) -> list[int] | None:
    """Pin this process to ``n`` free GPUs; returns their indices, or None if left alone."""
    if n <= 0 or "CUDA_VISIBLE_DEVICES" in env:
        return None
    devices = visible_gpu_indices() if devices is None else devices
    if not devices:
        return None
    lock_dir = shared_lock_dir(Path(
        lock_dir or os.environ.get("ILMOCO_GPU_LOCK_DIR", "/tmp/ilmoco-gpu-locks")))
    taken = []
    for i in devices:
        fd = open_lock(lock_dir / f"gpu{i}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held.append(fd)  # held until the process exits
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


def requested_gpus(resources) -> int:
    """The GPUs a job was given: its ``gpu`` resource, else the count of a ``gres``
    request (``gpu:2``, ``gpu:a100:2``; ``gpu`` alone is one), the form some sites require
    (the profile then sets ``gpu: 0`` so that the plugin passes ``--gres`` only)."""
    if int(resources.get("gpu", 0) or 0):
        return int(resources["gpu"])
    for entry in str(resources.get("gres") or "").split(","):
        name, *rest = entry.strip().split(":")
        if name == "gpu":
            return int(rest[-1]) if rest and rest[-1].isdigit() else 1
    return 0


def local_gpu_count(env=os.environ, dev_dir: str = "/dev") -> int:
    """GPUs this machine offers to jobs: those listed in CUDA_VISIBLE_DEVICES when it is set,
    else the NVIDIA device nodes."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    return len(visible_gpu_indices(dev_dir))
