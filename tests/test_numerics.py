"""``numerics: portable``: every job's process computes with the same kernels whatever the
CPU offers and whatever the shell set, so one config gives the same bits; ``native`` leaves
the libraries to choose. The kernels are chosen when a library is first used, so each case
runs in a new process, as a job does."""

import json
import os
import subprocess
import sys

import pytest

from ilmoco import numerics

# A little of everything a job computes: ResNet-18 forward and backward (oneDNN
# convolutions, ATen BatchNorm and reductions), fused Adam (ATen's vectorised kernel), a
# dense layer (MKL), numpy's BLAS and exp (OpenBLAS, numpy's SIMD loops). Prints the hash of
# every result byte and what the process computed with.
WORK = """
import hashlib, json
import numpy as np, torch, torchvision
from ilmoco import numerics
numerics.verify()
torch.manual_seed(0)
net = torchvision.models.resnet18(num_classes=4)
opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
for _ in range(2):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
h = hashlib.sha256()
for v in net.state_dict().values():
    h.update(v.detach().numpy().tobytes())
a = np.random.default_rng(0).standard_normal((300, 64))
h.update((a @ a.T).tobytes())
h.update(np.exp(a).tobytes())
print(json.dumps({"hash": h.hexdigest(), **numerics.describe()}))
"""

# What a shell on another machine might have set, or what another CPU would choose by itself
OTHER_KERNELS = {
    "baseline": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                 "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "AUTO",
                 "OPENBLAS_CORETYPE": "Nehalem",
                 "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL",
                 "OMP_NUM_THREADS": "2"},
    "widest": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "ALL"},
}


def clean_env(**over) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in numerics.PORTABLE_ENV and k != numerics.MODE_VARIABLE}
    return {**env, **over}


def run(env) -> dict:
    r = subprocess.run([sys.executable, "-c", WORK], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_apply_sets_every_variable_and_overrides_the_shell():
    env = {"ATEN_CPU_CAPABILITY": "default", "PATH": "/bin"}
    set_ = numerics.apply("portable", env)
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["PATH"] == "/bin"
    assert set_ == {numerics.MODE_VARIABLE: "portable", **numerics.PORTABLE_ENV}
    env = {"ATEN_CPU_CAPABILITY": "default"}
    assert numerics.apply("native", env) == {numerics.MODE_VARIABLE: "native"}
    assert env["ATEN_CPU_CAPABILITY"] == "default"  # native leaves the shell's choice
    with pytest.raises(ValueError, match="numerics 'fast'"):
        numerics.environment("fast")


@pytest.mark.slow
def test_portable_gives_the_same_bits_whatever_kernels_the_shell_asked_for():
    results = {}
    for name, outer in {"as is": {}, **OTHER_KERNELS}.items():
        env = clean_env(**outer)
        numerics.apply("portable", env)
        results[name] = run(env)
    first = results["as is"]
    assert first["aten"] == "AVX2" and first["threads"] == 1 and first["deterministic"]
    assert {r["hash"] for r in results.values()} == {first["hash"]}, results


@pytest.mark.slow
def test_native_follows_the_kernels_so_the_pinning_is_what_makes_them_equal():
    """Without the pinning, other kernels give other bits (here: ATen's scalar kernels
    against the CPU's own choice), i.e. the test above could fail."""
    native = run(clean_env(OMP_NUM_THREADS="1"))
    baseline = run(clean_env(**{**OTHER_KERNELS["baseline"], "OMP_NUM_THREADS": "1"}))
    assert baseline["aten"] == "DEFAULT" and native["aten"] != "DEFAULT"
    assert native["mode"] == "native" and native["hash"] != baseline["hash"]


def test_a_process_that_cannot_run_the_pinned_kernels_stops_with_one_line():
    env = clean_env()
    numerics.apply("portable", env)
    env["ATEN_CPU_CAPABILITY"] = "default"  # as on a CPU without AVX2
    code = ("import torch\nfrom ilmoco import numerics\nfrom ilmoco.io import InputError\n"
            "try:\n    numerics.verify()\nexcept InputError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert "numerics: portable runs ATen's AVX2 kernels, but this process has DEFAULT" \
        in r.stdout, r.stdout + r.stderr
