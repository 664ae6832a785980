"""Running a stage as a job: log-file redirection, thread count, one-line errors.

Used by the thin Snakemake scripts; nothing here imports Snakemake.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path

from ilmoco.io import InputError

# Errors whose message already says what is wrong and what to do: no traceback needed.
CLEAR_ERRORS = (InputError, FloatingPointError, KeyError)


@contextlib.contextmanager
def job_log(path, threads: int | None = None):
    """Send stdout/stderr (progress bars included) to ``path``; on failure print one line
    to the console too, and exit 1 so Snakemake marks the job failed."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    console = os.dup(2)
    saved_out = os.dup(1)
    with open(path, "w", buffering=1) as fh:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        failure = None
        try:
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
            os.dup2(saved_out, 1)
            os.dup2(console, 2)
        if failure:
            os.write(2, (failure.splitlines()[0] + "\n").encode())
            sys.exit(1)
