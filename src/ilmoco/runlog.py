"""Running a stage as a job: its log file, header and final line, progress reporting, and
one-line errors.

Used by the thin Snakemake scripts; nothing here imports Snakemake or torch at import time.
Each job log starts with a header line (stage, what it works on, the digest of its result
settings, git revision, library versions) and ends with ``done in ... s`` or the error, so
no log is empty and every log says which configuration produced it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from ilmoco.io import InputError


class Stopped(Exception):
    """A job asked to stop (a preemption signal): the message says where it resumes."""


# Errors whose message already says what is wrong and what to do (bad input or config, a
# diverging loss, a preemption): no traceback needed. Anything else is a bug and gets its
# traceback.
CLEAR_ERRORS = (InputError, FloatingPointError, Stopped)


def log(msg: str) -> None:
    print(f"[ilmoco] {msg}", file=sys.stderr, flush=True)


def git_revision(start: Path | str = ".") -> str:
    """The repository's commit hash (with '+dirty' when modified), or 'unknown'."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=start, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=start, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def header(stage: str, what: str = "", settings_digest: str | None = None) -> str:
    """One line: stage, subject, settings digest, git revision, Python and library versions,
    the numerics (portable or native, and the kernels torch runs)."""
    from ilmoco import numerics

    versions = [f"python {platform.python_version()}"]
    for mod in ("torch", "numpy", "pandas"):
        if mod in sys.modules:
            versions.append(f"{mod} {sys.modules[mod].__version__}")
    parts = [f"== {stage}" + (f" {what}" if what else ""),
             f"settings {settings_digest}" if settings_digest else None,
             f"git {git_revision(Path(__file__).parent)}", ", ".join(versions),
             f"numerics {numerics.summary()}", f"host {platform.node()}"]
    return " | ".join(p for p in parts if p)


@contextlib.contextmanager
def job_log(path, threads: int | None = None, stage: str = "", what: str = "",
            settings_digest: str | None = None):
    """Send stdout/stderr to ``path`` with a header and a final line; on failure print one
    line to the console too, and exit 1 so Snakemake marks the job failed."""
    from ilmoco import numerics

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    # SLURM's warning before a time limit (--signal=USR1@<s>) is for the training loop,
    # which checkpoints on it; any other stage goes on (USR1 would otherwise end it)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    console = os.dup(2)
    saved_out = os.dup(1)
    start = time.perf_counter()
    with open(path, "w", buffering=1) as fh:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        failure = None
        try:
            numerics.verify()  # portable: one thread, AVX2 kernels, or a one-line error
            print(header(stage or Path(sys.argv[0]).stem, what, settings_digest), flush=True)
            yield
        except CLEAR_ERRORS as e:
            failure = f"ERROR: {str(e).strip(chr(39))}"
        except Exception as e:  # unexpected: full traceback in the log
            traceback.print_exc()
            failure = f"ERROR: {type(e).__name__}: {e} (traceback in {path})"
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            if failure:
                print(failure, file=sys.stderr, flush=True)
            else:
                print(f"== done in {time.perf_counter() - start:.1f} s", flush=True)
            os.dup2(saved_out, 1)
            os.dup2(console, 2)
        if failure:
            os.write(2, (failure.splitlines()[0] + "\n").encode())
            sys.exit(1)


class Progress:
    """Progress of ``total`` steps: a tqdm bar on a terminal, else one plain line at every
    tenth of the work (logs stay readable with ``less``); ``mode``: auto, bar, lines, quiet."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", mode: str = "auto",
                 unit: str = "step"):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.total, self.done, self.desc, self.unit = mode, total, initial, desc, unit
        self.start, self.start_done = time.perf_counter(), initial
        self.bar = None
        self.next_line = self._next_mark(initial)
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, mininterval=5,
                            dynamic_ncols=True)

    def _next_mark(self, done: int) -> int:
        step = max(1, self.total // 10)
        return (done // step + 1) * step

    def update(self, n: int = 1, **postfix) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
        elif self.mode == "lines" and (self.done >= self.next_line or self.done == self.total):
            self.next_line = self._next_mark(self.done)
            rate = (self.done - self.start_done) / max(time.perf_counter() - self.start, 1e-9)
            extra = "".join(f" {k} {v}" for k, v in postfix.items())
            print(f"{self.desc}: {self.done}/{self.total} {self.unit}s "
                  f"({100 * self.done / max(self.total, 1):.0f} %, {rate:.2f} {self.unit}/s)"
                  f"{extra}", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        """A line that does not disturb the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        elif self.mode != "quiet":
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
