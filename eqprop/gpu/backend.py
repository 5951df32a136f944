"""The array-module seam of the CUDA backend: where the matrix products run.

The dense (and later im2col / implicit-GEMM conv) products of a phase go through one
small interface, :class:`ArrayBackend`: ``to_device`` / ``to_host`` move arrays,
``matmul`` is the product, ``empty`` / ``zeros`` allocate. Two implementations:

``"cupy"``
    CuPy arrays on the GPU, products by cuBLAS (``cupy.matmul``). CuPy is imported
    only when this backend is asked for (the optional ``[gpu]`` extra; never a core
    dependency).
``"numpy"``
    NumPy arrays on the host, products by NumPy's BLAS: the CPU stand-in that the tests
    drive (together with Numba's CUDA simulator, ``NUMBA_ENABLE_CUDASIM=1``, which runs
    the element-wise kernels of :mod:`eqprop.gpu.kernels` on NumPy arrays).

Both hand arrays to the Numba CUDA kernels unchanged: CuPy arrays through the CUDA array
interface, NumPy arrays through the simulator (or by Numba's automatic transfers).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "PRODUCTS", "ArrayBackend", "get_backend", "round_operand"]

#: Names accepted by :func:`get_backend`.
BACKENDS = ("numpy", "cupy")
#: Precisions of the operands of :meth:`ArrayBackend.matmul` (``"native"``: the arrays'
#: own dtype; ``"float16"`` / ``"bfloat16"``: mixed precision, see :func:`round_operand`).
PRODUCTS = ("native", "float16", "bfloat16")


def round_operand(xp, a, products: str):
    """``a`` (float32) rounded to the 16-bit format ``products`` and held in float32.

    ``"float16"``: IEEE half (``a.astype(float16)``, round to nearest even; overflow to
    inf above 65504); ``"bfloat16"``: the top 16 bits of the float32 word, rounded to
    nearest even (``u + 0x7FFF + ((u >> 16) & 1)``, then the low half cleared; NaN kept).
    The product of two such operands is exact in float32, so a float32 matmul of rounded
    operands is a 16-bit-operand product with float32 accumulation: what tensor-core
    GEMMs compute (up to the order of summation), here on any backend.
    """
    if products == "native":
        return a
    if a.dtype != np.float32:
        raise ValueError(f"mixed-precision products need float32 arrays, got {a.dtype}")
    if products == "float16":
        return a.astype(np.float16).astype(np.float32)
    u = xp.ascontiguousarray(a).view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    r = xp.where(xp.isnan(a), u, r)
    return r.view(np.float32)


@dataclass(frozen=True)
class ArrayBackend:
    """An array module (NumPy or CuPy) and the few operations a phase needs.

    Attributes
    ----------
    name : {"numpy", "cupy"}
    xp : module
        ``numpy`` or ``cupy``.
    """

    name: str
    xp: Any
    products: str = "native"

    def to_device(self, a: np.ndarray):
        """A C-contiguous copy of the host array ``a`` on this backend (always a copy,
        also on the host, so that a phase never writes into its caller's arrays)."""
        return self.xp.array(a, order="C", copy=True)

    def to_host(self, a) -> np.ndarray:
        """``a`` as a NumPy array (a copy from the GPU; the array itself on the host)."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        return self.xp.full(shape, value, dtype=dtype)

    def matmul(self, a, b, out=None):
        """``a @ b`` (cuBLAS on the GPU, BLAS on the host), into ``out`` when given; with
        ``products`` float16 / bfloat16 the operands are rounded to it first
        (:func:`round_operand`) and the product accumulates in float32."""
        if self.products != "native":
            a = round_operand(self.xp, a, self.products)
            b = round_operand(self.xp, b, self.products)
        return self.xp.matmul(a, b, out=out)

    def with_products(self, products: str) -> ArrayBackend:
        """This backend with matmul operands in ``products`` (one of :data:`PRODUCTS`)."""
        if products not in PRODUCTS:
            raise ValueError(f"unknown products {products!r}; choose one of {', '.join(PRODUCTS)}")
        return ArrayBackend(self.name, self.xp, products)

    def synchronize(self) -> None:
        """Wait for the device (no-op on the host)."""
        if self.name == "cupy":
            self.xp.cuda.Device().synchronize()


def get_backend(name: str | ArrayBackend = "cupy") -> ArrayBackend:
    """The :class:`ArrayBackend` called ``name`` (``"numpy"`` or ``"cupy"``).

    Raises
    ------
    ValueError
        Unknown name.
    RuntimeError
        ``"cupy"`` when CuPy is not installed (one line naming the ``[gpu]`` extra).
    """
    if isinstance(name, ArrayBackend):
        return name
    if name not in BACKENDS:
        raise ValueError(f"unknown array backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "numpy":
        return ArrayBackend("numpy", np)
    try:
        cp = importlib.import_module("cupy")
    except ImportError as e:
        raise RuntimeError(
            f"the 'cupy' array backend needs CuPy ({e}); install eqprop[gpu] on a machine "
            "with an NVIDIA GPU, or use backend='numpy' (the CPU stand-in)"
        ) from None
    return ArrayBackend("cupy", cp)
