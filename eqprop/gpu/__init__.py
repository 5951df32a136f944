"""The CUDA backend (issue #17): EP phases and training on an NVIDIA GPU.

What exists: the free and nudged phases of an :class:`eqprop.network.Network` (dense
couplings, tied feedback, squared cost, either kind, every activation) with the damped
Picard iteration, its fused iterates or Gauss-Seidel / red-black layer sweeps (fixed
steps or to tolerance), returning the CPU path's result objects (:mod:`eqprop.gpu.dense`);
a conv2d / pool coupling on the array backend (:mod:`eqprop.gpu.conv`) and the
fixed-steps phases of conv graph networks (:mod:`eqprop.gpu.graph`); EP training of
both with states and parameters on the device for a whole run (:mod:`eqprop.gpu.train`,
``Trainer`` with ``device="cuda"``). Matrix products go through a small
array-module seam (:mod:`eqprop.gpu.backend`: CuPy/cuBLAS, or NumPy as the CPU
stand-in), the element-wise and fused parts through Numba CUDA kernels
(:mod:`eqprop.gpu.kernels`).

Importing this package imports neither CuPy nor ``numba.cuda``; :func:`free_phase`,
:func:`nudged_phase` and :func:`run_phase` import them when called. CuPy comes with the
optional ``[gpu]`` extra.
"""

from __future__ import annotations

import importlib.util
import os

__all__ = [
    "METHODS",
    "STANDIN_ENV",
    "available",
    "backend_name",
    "check_device",
    "check_trainable",
    "device_run",
    "free_phase",
    "nudged_phase",
    "run_phase",
]

#: Test-only switch: with it set to 1 *and* ``NUMBA_ENABLE_CUDASIM=1``, ``device="cuda"``
#: runs the CUDA code on Numba's CUDA simulator and the NumPy stand-in of the array
#: backend (slow; for tests and ``benchmarks/gpu_check.py --dry-run``, never a real run).
STANDIN_ENV = "EQPROP_CUDA_STANDIN"

#: ``Dynamics.method`` names the CUDA phases run (:mod:`eqprop.gpu.dense`).
METHODS = ("fixed", "fused", "picard", "gauss-seidel", "gauss-seidel-parity")

#: Methods of the conv graph networks' CUDA phases (:mod:`eqprop.gpu.graph`): the same
#: names, there Picard and whole-layer Gauss-Seidel / red-black sweeps of the conv map.
CONV_METHODS = METHODS

#: The rules, methods and networks the CUDA trainer runs (the rest is refused by name).
TRAINABLE = (
    "rule 'ep' (one-sided, random-sign or symmetric, no homeostasis) on a dense tied chain "
    "(eqprop.network.Network) with cost='squared', methods fixed/fused/picard/"
    "gauss-seidel/gauss-seidel-parity, or a conv architecture (tied or scaled feedback, "
    "the same methods)"
)


def _simulator() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _standin() -> bool:
    return os.environ.get(STANDIN_ENV, "0") == "1" and _simulator()


def available() -> tuple[bool, str]:
    """Whether a real CUDA device and CuPy are usable here, and why not (one line).

    The simulator (``NUMBA_ENABLE_CUDASIM=1``) does not count as a device.
    """
    if _simulator():
        return False, "NUMBA_ENABLE_CUDASIM is set: Numba's CUDA simulator, not a GPU"
    if importlib.util.find_spec("cupy") is None:
        return False, "CuPy is not installed (pip install 'eqprop[gpu]')"
    from numba import cuda

    if not cuda.is_available():
        return False, "Numba finds no CUDA device (no NVIDIA GPU or driver here)"
    return True, "CUDA device and CuPy available"


def backend_name() -> str:
    """The array backend ``device="cuda"`` runs on: ``"cupy"`` with a usable device,
    ``"numpy"`` under the test-only stand-in (:data:`STANDIN_ENV` and the simulator);
    RuntimeError (one line, why) otherwise."""
    ok, why = available()
    if ok:
        return "cupy"
    if _standin():
        return "numpy"
    raise RuntimeError(f"device='cuda': no usable CUDA device here: {why}")


def check_device(device: str) -> str:
    """Validate a ``device`` setting (``"cpu"`` or ``"cuda"``) for a training run.

    Returns ``device``; for ``"cuda"`` without a usable CUDA device (and CuPy) a one-line
    RuntimeError saying why, rather than running on the CPU silently. (Under the
    test-only stand-in, :data:`STANDIN_ENV`, ``"cuda"`` is accepted and runs on the
    simulator.)
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose 'cpu' or 'cuda'")
    if device == "cuda":
        backend_name()
    return device


def check_trainable(config) -> None:
    """Raise a one-line ValueError naming the first setting of ``config`` (a
    :class:`eqprop.config.TrainConfig`) that the CUDA trainer cannot run
    (:data:`TRAINABLE`); called before any data loads."""
    net, rule = config.network, config.rule
    why = None
    conv = net.is_conv
    if rule.name != "ep":
        why = f"rule {rule.name!r}"
    elif float(rule.params.get("homeostasis", 0.0) or 0.0) != 0.0:
        why = "EP with homeostasis"
    elif net.cost != "squared":
        why = f"cost={net.cost!r}"
    elif conv and net.feedback not in ("tied", "scaled"):
        why = f"a conv network with feedback={net.feedback!r}"
    elif not conv and (net.feedback != "tied" or net.skip or net.output_activation is not None):
        why = "a graph network (untied feedback, skip couplings or an output activation)"
    elif not conv and net.feedback_scale != 1.0:
        why = f"feedback_scale={net.feedback_scale!r}"
    else:
        dynamics = config.dynamics
        for dyn in (dynamics.phases, dynamics.free_dynamics(), dynamics.early_free_dynamics()):
            methods = CONV_METHODS if conv else METHODS
            if not isinstance(dyn.method, str) or dyn.method not in methods:
                why = f"method {dyn.method_name!r}" + (" on a conv network" if conv else "")
            elif dyn.method == "fused" and not dyn.is_fixed_steps:
                why = (
                    "method 'fused' to a tolerance (fixed_steps=False: no GPU kernel yet; "
                    "--early-free-fixed-steps restores the fixed steps of the epochs before "
                    "--free-from-epoch)"
                )
            elif dyn.record_energy:
                why = "record_energy=True"
    if why is None and config.dynamics.free_from_sample:
        why = (
            f"free_from_sample={config.dynamics.free_from_sample} (a switch of the free "
            "phase inside an epoch: the device epoch has no such step yet; switch at an "
            "epoch, free_from_sample=0)"
        )
    if why is not None:
        raise ValueError(f"device='cuda' cannot train {why}; it runs {TRAINABLE}")


def device_run(trainer):
    """The :class:`eqprop.gpu.train.DeviceRun` of a trainer (uploads its data, parameters
    and particles to the device; imports ``numba.cuda``), its products in the run's
    ``products`` (:class:`eqprop.config.RunConfig`)."""
    from eqprop.gpu.backend import get_backend
    from eqprop.gpu.train import DeviceRun, GraphDeviceRun

    be = get_backend(backend_name()).with_products(trainer.config.run.products)
    if trainer.is_graph:
        return GraphDeviceRun(trainer, be)
    return DeviceRun(trainer, be)


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
