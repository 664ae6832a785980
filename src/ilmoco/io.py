"""Atomic, crash-safe file writes and the project's one error type for bad input.

Every result file is written to a temporary sibling, flushed, fsync'ed and renamed into
place, so a killed job (SLURM preemption, kill -9) never leaves a half-written file that a
later stage could mistake for a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


class InputError(Exception):
    """Bad input: the message is one line naming the file, key or value and what to do."""


class ConfigError(InputError, ValueError):
    """A config value the workflow cannot run: ``where`` is the dotted key."""

    def __init__(self, where: str, message: str):
        super().__init__(f"config error at {where or '<top level>'}: {message}")
        self.where = where


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched. The file
    gets the mode a plain ``open`` would give (0666 minus the umask), not mkstemp's 0600, so
    colleagues on a shared filesystem can read results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def read_table(path):
    """A CSV of this workflow (manifest, split, predictions) with its ids read as strings."""
    import pandas as pd

    return pd.read_csv(path, dtype={"image_id": str, "patient_id": str})


def write_csv(path, df, **kwargs) -> None:
    """Write a DataFrame atomically, with a fixed float format so reruns are byte-identical."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("lineterminator", "\n")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def torch_save(obj, path) -> None:
    """``torch.save`` through a temp file + fsync + rename (checkpoints survive kill -9)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load(path, map_location="cpu"):
    """``torch.load`` with ``weights_only=True`` (no pickled code runs); errors name the file."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint not found") from None
    except Exception as e:  # corrupt / truncated / not a plain-weights checkpoint
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines else "")
        raise InputError(
            f"{path}: cannot load checkpoint ({type(e).__name__}: {why[:200]}); "
            "delete it and rerun the stage that writes it") from None


def require_free_disk(directory, needed_bytes: int, what: str) -> None:
    """Refuse to start writing ``what`` when the disk holding ``directory`` lacks the space."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    margin = int(needed_bytes * 1.05) + (64 << 20)
    if free < margin:
        raise InputError(
            f"{directory}: {what} needs {needed_bytes / 2**30:.2f} GiB but only "
            f"{free / 2**30:.2f} GiB is free; free space or point results elsewhere"
        )


def fingerprint(*parts) -> str:
    """A short hash of files (by content) and JSON-able values. Files over 64 MiB (the image
    cache) count by their size and their first and last 8 MiB (header and pixels), which a
    rebuilt cache of another resolution or preprocessing changes."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (str, os.PathLike)) and Path(p).is_file():
            size = Path(p).stat().st_size
            with open(p, "rb") as fh:
                if size <= 64 << 20:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
                else:
                    h.update(str(size).encode())
                    h.update(fh.read(8 << 20))
                    fh.seek(-(8 << 20), os.SEEK_END)
                    h.update(fh.read())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
