"""The argument types of every Numba CUDA kernel launch, recorded under the simulator and
compiled to PTX for a real GPU without one.

Numba's CUDA simulator runs a kernel as Python: it never types it, so a kernel that
would not compile for a GPU (a variable of two incompatible types, an unsupported
call, a ``None`` argument) passes every simulator test. This module closes that gap in
two processes:

1. **record** (a pytest plugin, ``-p gpu_kernel_signatures``, in a run of
   ``tests/test_gpu_sim.py`` under ``NUMBA_ENABLE_CUDASIM=1``): every
   :func:`eqprop.gpu.kernels.launch` notes the kernel's name and the Numba type of each
   argument (``numba.typeof``: dtype, dimensions and layout of an array, the type of a
   scalar), as a CuPy array of the same dtype and strides would have on a device;
   written as JSON to ``$EQPROP_RECORD_KERNEL_TYPES`` at the end of the run;
2. **compile** (``python tests/gpu_kernel_signatures.py compile FILE``, without the
   simulator, with numba-cuda, NVVM and NVRTC installed; no GPU needed):
   ``numba.cuda.compile_ptx`` of each kernel for each recorded signature, for compute
   capability 9.0 (Hopper, the H200 of the device checks). Exit status 0 when all
   compile, 1 with the failures listed, 77 when this machine has no CUDA compiler.

``tests/test_gpu_ptx.py`` runs both where numba-cuda is installed and skips elsewhere.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

ENV = "EQPROP_RECORD_KERNEL_TYPES"
#: compute capability the PTX is built for (the H200: Hopper, 9.0)
CC = (9, 0)
#: exit status of ``compile`` on a machine without NVVM / NVRTC
NO_COMPILER = 77
#: where a recording run keeps its launches' signatures (kernel name -> set of JSON)
_SEEN = pytest.StashKey[dict]()


def describe(arg) -> list:
    """The Numba type of one kernel argument as plain JSON: ``["array", dtype, ndim,
    layout]`` or ``["scalar", dtype]``."""
    import numba
    from numba import types
    from numba.np.numpy_support import as_dtype

    t = numba.typeof(arg)
    if isinstance(t, types.Array):
        return ["array", str(t.dtype), int(t.ndim), str(t.layout)]
    return ["scalar", str(as_dtype(t))]


def build(desc: list):
    """The Numba type of a :func:`describe` record (arrays mutable: device arrays are)."""
    import numpy as np
    from numba import from_dtype, types

    if desc[0] == "array":
        return types.Array(from_dtype(np.dtype(desc[1])), desc[2], desc[3])
    return from_dtype(np.dtype(desc[1]))


def pytest_configure(config) -> None:
    """Wrap :func:`eqprop.gpu.kernels.launch` to record each launch's signature (only
    when ``$EQPROP_RECORD_KERNEL_TYPES`` names the output file)."""
    if not os.environ.get(ENV):
        return
    from eqprop.gpu import kernels as GK

    seen: dict[str, set] = {}
    config.stash[_SEEN] = seen
    names = {id(v): k for k, v in vars(GK).items() if k.endswith("_kernel")}
    launch = GK.launch

    def recording_launch(kernel, n_threads, *args):
        name = names[id(kernel)]
        seen.setdefault(name, set()).add(json.dumps([describe(a) for a in args]))
        return launch(kernel, n_threads, *args)

    GK.launch = recording_launch


def pytest_unconfigure(config) -> None:
    path = os.environ.get(ENV)
    if path:
        seen = config.stash.get(_SEEN, {})
        record = {k: sorted(json.loads(s) for s in v) for k, v in sorted(seen.items())}
        with open(path, "w") as f:
            json.dump(record, f, indent=1)


def compile_all(record: dict) -> tuple[int, list[str]]:
    """``compile_ptx`` every recorded signature; (number compiled, failure lines)."""
    from numba import cuda

    from eqprop.gpu import kernels as GK

    done, failures = 0, []
    for name, sigs in record.items():
        func = getattr(GK, name).py_func
        for sig in sigs:
            argtys = tuple(build(d) for d in sig)
            try:
                cuda.compile_ptx(func, argtys, cc=CC)
                done += 1
            except Exception as e:  # every failure listed, not only the first
                failures.append(f"{name}{argtys}: {type(e).__name__}: {e}"[:2000])
    return done, failures


def _answer_compute_capability() -> None:
    """A device function (``cuda.jit(device=True)``) compiles for the compute capability
    of the current device, which needs a driver: answer :data:`CC` instead, so that the
    kernels calling them compile on a machine without a GPU (this process only)."""
    import types as pytypes

    from numba.cuda import dispatcher

    if not hasattr(dispatcher, "get_current_device"):
        raise RuntimeError("numba-cuda changed: dispatcher.get_current_device is gone")
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=CC)


def _has_compiler() -> str | None:
    """None when a trivial kernel compiles to PTX here, else why not (one line)."""
    from numba import cuda, types

    def probe(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(probe, (types.float32[::1],), cc=CC)
    except Exception as e:
        return f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "compile":
        print("usage: python tests/gpu_kernel_signatures.py compile RECORD.json")
        return 2
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("compile: unset NUMBA_ENABLE_CUDASIM (the simulator compiles nothing)")
        return 2
    # numba-cuda <= 0.30 under NumPy >= 2.5 needs the alias before its first compile
    from eqprop.gpu.compat import restore_row_stack

    restore_row_stack()
    _answer_compute_capability()
    why = _has_compiler()
    if why is not None:
        print(f"SKIP: no CUDA compiler here ({why})")
        return NO_COMPILER
    with open(argv[1]) as f:
        record = json.load(f)
    done, failures = compile_all(record)
    for line in failures:
        print("FAILED", line)
    print(f"compiled {done} signatures of {len(record)} kernels to PTX for cc {CC}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
