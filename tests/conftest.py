import atexit
import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/layouts.py
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The suite writes nothing outside the checkout and the temp directory: the caches and
# settings of matplotlib, Snakemake and this project go to a throw-away home, and no real
# site file (~/.config/ilmoco/site.yaml) or GPU lock directory of the machine is used.
_HOME = Path(tempfile.mkdtemp(prefix="ilmoco-tests-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config"),
                 ("MPLCONFIGDIR", "matplotlib")):
    os.environ[var] = str(_HOME / sub)
os.environ["ILMOCO_SITE"] = str(_HOME / "site.yaml")
os.environ["ILMOCO_GPU_LOCK_DIR"] = str(_HOME / "gpu-locks")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, worker_id):
    """The whole DAG on the smoke configuration (local executor), run once per test session:
    pytest-xdist workers share one run through a lock file in the session's temp root, so
    the worker that needs it first builds it while the others go on with their own tests."""
    from snakerun import snakemake

    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # gw0, gw1, ...: the parent is shared by the session
        root = root.parent
    work, done = root / "smoke", root / "smoke.done"
    with open(root / "smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            snakemake(workdir=work)
            done.touch()
    return work
