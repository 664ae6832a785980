"""GPU claiming on a workstation: distinct free devices, a scheduler's choice left alone,
and lock directories shared by several users."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ilmoco.cluster import gpus

CLAIM = ("import sys; from ilmoco.cluster.gpus import claim_gpus; "
         "print(claim_gpus(1, lock_dir=sys.argv[1], devices=[0, 1], env={}))")


def test_claim_gpus_pins_distinct_free_devices(tmp_path):
    env_a, env_b = {}, {}
    assert gpus.claim_gpus(1, lock_dir=tmp_path, devices=[0, 1], env=env_a) == [0]
    assert gpus.claim_gpus(1, lock_dir=tmp_path, devices=[0, 1], env=env_b) == [1]
    assert env_a["CUDA_VISIBLE_DEVICES"] == "0" and env_b["CUDA_VISIBLE_DEVICES"] == "1"
    with pytest.raises(RuntimeError, match="needed 1 free GPU"):
        gpus.claim_gpus(1, lock_dir=tmp_path, devices=[0, 1], env={})
    # a scheduler's choice (SLURM sets CUDA_VISIBLE_DEVICES) is left alone
    assert gpus.claim_gpus(1, lock_dir=tmp_path, devices=[0, 1],
                           env={"CUDA_VISIBLE_DEVICES": "3"}) is None
    assert gpus.claim_gpus(0, lock_dir=tmp_path, devices=[0]) is None


def test_a_new_lock_directory_is_shared(tmp_path):
    d = tmp_path / "locks"
    subprocess.run([sys.executable, "-c", CLAIM, str(d)], check=True)
    assert stat.S_IMODE(d.stat().st_mode) == 0o1777
    assert stat.S_IMODE((d / "gpu0.lock").stat().st_mode) == 0o666


def claim_as(uid: int, lock_dir) -> str:
    """``claim_gpus`` in a forked child running as user ``uid``: its result, or the error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            os.setgid(uid)
            os.setuid(uid)
            out = repr(gpus.claim_gpus(1, lock_dir=lock_dir, devices=[0, 1], env={}))
        except BaseException as e:  # noqa: BLE001 (reported to the parent)
            out = f"{type(e).__name__}: {e}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user")
def test_two_users_share_lock_directories_of_either_kind():
    """A directory made by this version (1777, files 0666) and one left by an older version
    (755, files 644, owned by root): another user claims a GPU in both."""
    base = Path(tempfile.mkdtemp(prefix="ilmoco-locks-", dir="/tmp"))
    try:
        base.chmod(0o755)
        new, old = base / "new", base / "old"
        subprocess.run([sys.executable, "-c", CLAIM, str(new)], check=True)
        old.mkdir(mode=0o755)
        for i in (0, 1):
            (old / f"gpu{i}.lock").touch(mode=0o644)
        nobody = 65534
        assert claim_as(nobody, new) == "[0]"
        assert claim_as(nobody, old) == "[0]"
        missing = base / "old2"  # an old directory without the lock file: a clear error
        missing.mkdir(mode=0o755)
        assert "ILMOCO_GPU_LOCK_DIR" in claim_as(nobody, missing)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_unusable_lock_directory_names_the_way_out(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    d.chmod(0o555)
    from ilmoco.io import InputError

    with pytest.raises(InputError, match="ILMOCO_GPU_LOCK_DIR"):
        gpus.claim_gpus(1, lock_dir=d, devices=[0], env={})


def test_visible_gpu_indices(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert gpus.visible_gpu_indices(str(tmp_path)) == [0, 1]
    assert gpus.local_gpu_count(env={}, dev_dir=str(tmp_path)) == 2
    assert gpus.local_gpu_count(env={"CUDA_VISIBLE_DEVICES": "3"}, dev_dir=str(tmp_path)) == 1
    assert gpus.local_gpu_count(env={"CUDA_VISIBLE_DEVICES": ""}, dev_dir=str(tmp_path)) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other users")
def test_a_lock_file_of_a_third_user_opens():
    """User B created the lock file in A's shared directory; user C (and A) still lock it."""
    base = Path(tempfile.mkdtemp(prefix="ilmoco-locks-", dir="/tmp"))
    try:
        base.chmod(0o755)
        shared = base / "shared"
        subprocess.run([sys.executable, "-c", CLAIM, str(shared)], check=True)  # A = root
        (shared / "gpu0.lock").unlink()
        assert claim_as(65533, shared) == "[0]"  # B creates gpu0.lock
        assert (shared / "gpu0.lock").stat().st_uid == 65533
        assert claim_as(65534, shared) == "[0]"  # C opens B's file
    finally:
        shutil.rmtree(base, ignore_errors=True)
