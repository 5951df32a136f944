"""Every Numba CUDA kernel compiles for a real GPU (PTX, compute capability 9.0) with the
argument types its launches have: checked without a GPU, where numba-cuda, NVVM and
NVRTC are installed; skipped elsewhere (CI installs no numba-cuda).

The simulator tests (``tests/test_gpu_sim.py``) run the kernels as Python and never type
them; here a run of those tests under the simulator records each launch's argument
types (``tests/gpu_kernel_signatures.py``, a pytest plugin), and a second process
without the simulator compiles each kernel for each recorded signature with
``numba.cuda.compile_ptx``. A kernel that the simulator accepts but Numba's CUDA
target would reject at its first launch on a GPU fails here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
pytestmark = pytest.mark.skipif(
    not HAS_NUMBA_CUDA or os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"),
    reason="needs numba-cuda (with NVVM and NVRTC), outside the simulator",
)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM",)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "marks", ["not slow and not benchmark", pytest.param("not benchmark", marks=pytest.mark.slow)]
)
def test_every_launched_kernel_compiles_to_ptx(tmp_path, marks):
    record = tmp_path / "kernel_types.json"
    sim = _env(NUMBA_ENABLE_CUDASIM="1", EQPROP_CUDA_STANDIN="1")
    sim["EQPROP_RECORD_KERNEL_TYPES"] = str(record)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += ["-p", "gpu_kernel_signatures", "-m", marks, str(TESTS / "test_gpu_sim.py")]
    r = subprocess.run(cmd, env=sim, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    recorded = json.loads(record.read_text())
    # every kernel the module exports was launched at least once
    from eqprop.gpu import kernels as GK

    assert set(recorded) == {name for name in GK.__all__ if name.endswith("_kernel")}
    cmd = [sys.executable, str(TESTS / "gpu_kernel_signatures.py"), "compile", str(record)]
    r = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    if r.returncode == 77:
        pytest.skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    n = sum(len(v) for v in recorded.values())
    assert f"compiled {n} signatures of {len(recorded)} kernels" in r.stdout
