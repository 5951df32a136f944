"""The CUDA backend (issue #17): phases of the dense tied chain on an NVIDIA GPU.

What exists: the free and nudged phases of an :class:`eqprop.network.Network` (dense
couplings, tied feedback, squared cost, either kind, every activation) with the damped
Picard iteration (``Dynamics(method="fixed")`` or ``"picard"``, fixed steps or to
tolerance), returning the CPU path's result objects (:mod:`eqprop.gpu.dense`). Matrix
products go through a small array-module seam (:mod:`eqprop.gpu.backend`: CuPy/cuBLAS,
or NumPy as the CPU stand-in), the element-wise and fused parts through Numba CUDA
kernels (:mod:`eqprop.gpu.kernels`). Training on the GPU is not built yet.

Importing this package imports neither CuPy nor ``numba.cuda``; :func:`free_phase`,
:func:`nudged_phase` and :func:`run_phase` import them when called. CuPy comes with the
optional ``[gpu]`` extra.
"""

from __future__ import annotations

import importlib.util
import os

__all__ = [
    "NOT_BUILT",
    "available",
    "check_device",
    "free_phase",
    "nudged_phase",
    "run_phase",
]

#: What ``device="cuda"`` can and cannot do yet (the one error of the trainer and CLI).
NOT_BUILT = (
    "the CUDA backend runs free/nudged phases of dense chains (eqprop.gpu.free_phase, "
    "eqprop.gpu.nudged_phase); training on the GPU is not built yet: use device='cpu'"
)


def available() -> tuple[bool, str]:
    """Whether a real CUDA device and CuPy are usable here, and why not (one line).

    The simulator (``NUMBA_ENABLE_CUDASIM=1``) does not count as a device.
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return False, "NUMBA_ENABLE_CUDASIM is set: Numba's CUDA simulator, not a GPU"
    if importlib.util.find_spec("cupy") is None:
        return False, "CuPy is not installed (pip install 'eqprop[gpu]')"
    from numba import cuda

    if not cuda.is_available():
        return False, "Numba finds no CUDA device (no NVIDIA GPU or driver here)"
    return True, "CUDA device and CuPy available"


def check_device(device: str) -> str:
    """Validate a ``device`` setting (``"cpu"`` or ``"cuda"``) for a training run.

    Returns ``"cpu"``; raises for ``"cuda"``: a one-line RuntimeError saying that no
    CUDA device is usable here (and why), or, with one, what the CUDA backend runs
    (:data:`NOT_BUILT`), rather than running on the CPU silently.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose 'cpu' or 'cuda'")
    if device == "cpu":
        return device
    ok, why = available()
    if not ok:
        raise RuntimeError(f"device='cuda': no usable CUDA device here: {why}")
    raise RuntimeError(f"device='cuda': {NOT_BUILT}")


def run_phase(*args, **kwargs):
    """:func:`eqprop.gpu.dense.run_phase` (imports ``numba.cuda`` on first call)."""
    from eqprop.gpu import dense

    return dense.run_phase(*args, **kwargs)


def free_phase(*args, **kwargs):
    """:func:`eqprop.gpu.dense.free_phase` (imports ``numba.cuda`` on first call)."""
    from eqprop.gpu import dense

    return dense.free_phase(*args, **kwargs)


def nudged_phase(*args, **kwargs):
    """:func:`eqprop.gpu.dense.nudged_phase` (imports ``numba.cuda`` on first call)."""
    from eqprop.gpu import dense

    return dense.nudged_phase(*args, **kwargs)
