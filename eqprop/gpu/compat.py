"""Version compatibility of the GPU toolchain (numba-cuda against NumPy).

numba-cuda up to its 0.30 releases registers an overload of ``np.row_stack`` when its
CUDA target first loads its registries, at the first kernel compile or cache load.
NumPy 2.5 removed that alias of ``np.vstack`` (deprecated since NumPy 2.0), so with
NumPy >= 2.5 every kernel launch raises ``AttributeError: module 'numpy' has no
attribute 'row_stack'`` (NVIDIA/numba-cuda issue #907: numba-cuda is in maintenance
mode and its maintainers do not plan a fix; numba-cuda-mlir 0.4.1 and numba 0.67 guard
the overload). eqprop met it on the H200 device image (NumPy 2.5.2, CuPy 14.2.0,
Python 3.12.3) on 2026-12-04: 9 of the 10 GPU-marked tests failed on it, the one that
launches no Numba kernel passed.

:func:`restore_row_stack` puts the alias back before :mod:`eqprop.gpu.kernels` imports
``numba.cuda`` compiles a kernel. ``np.row_stack`` was an alias of ``np.vstack`` (the
same function in NumPy 1.x; in 2.0 to 2.4 a wrapper that warns and calls it), so the
restored name stacks as the removed one did, without the warning; numba-cuda uses it
only as the key of its overload, and nothing in eqprop calls it.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

__all__ = ["restore_row_stack"]


def restore_row_stack(numpy_module: ModuleType = np) -> bool:
    """Define ``numpy_module.row_stack = numpy_module.vstack`` where NumPy removed it.

    Parameters
    ----------
    numpy_module
        The NumPy module to mend (default: :mod:`numpy`; tests pass a stand-in).

    Returns
    -------
    bool
        True when the alias was missing and has been restored, False when it was there
        (NumPy < 2.5) and is left untouched.
    """
    if hasattr(numpy_module, "row_stack"):
        return False
    setattr(numpy_module, "row_stack", numpy_module.vstack)  # noqa: B010 (a removed name)
    return True
