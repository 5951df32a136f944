"""The ``conv2d`` coupling (with max / average pooling) on the CUDA backend's arrays.

The GPU module beside the CPU reference :mod:`eqprop.graph.conv` (and
:mod:`eqprop.graph.pool`), at the seam ``docs/couplings.rst`` describes: the same maps of
a :class:`~eqprop.graph.model.Coupling` of kind ``conv2d``, on device arrays of the array
backend (:mod:`eqprop.gpu.backend`: CuPy / cuBLAS, or NumPy as the stand-in the tests
drive), by **im2col + GEMM**:

* forward drive :math:`P(\\mathrm{conv}(a_{src}))`: ``im2col(a_src) @ W2.T`` with
  ``W2 = W.reshape(C_out, C_in kh kw)``, then the pooling stage;
* feedback drive :math:`\\gamma\\,\\mathrm{conv}^\\top(P'(z)^\\top a_{dst})`:
  ``rows(P'^T a_dst) @ W2`` scattered back by ``col2im``; the max-pool routing is the
  argmax of each window of :math:`z = \\mathrm{conv}(a_{src})` (first position on ties,
  as PyTorch's ``max_pool2d`` and the reference);
* weight gradient :math:`\\partial F/\\partial W = -\\overline{\\mathrm{rows}(P'^\\top
  a_{dst})^\\top \\mathrm{im2col}(a_{src})}` (batch mean);
* energy term :math:`-\\langle a_{dst}, P(\\mathrm{conv}(a_{src}))\\rangle` per sample.

Every product is one GEMM over the whole batch and all positions through
:meth:`ArrayBackend.matmul` (cuBLAS on a GPU; the mixed-precision ``products`` setting
applies); the patch gather / scatter and the pooling are ``kh * kw`` (or ``size**2``)
strided array copies written with array-module operations only (no NumPy-only helpers
such as ``sliding_window_view`` or ``np.add.at``), so the same code runs on CuPy. The
max-pool adjoint adds each window's value at its argmax offset by offset, without
atomics, so it is deterministic.

Tested (``tests/test_gpu_conv.py``) on the NumPy stand-in against :mod:`eqprop.graph.conv`
to 1e-12 in float64 (drives, feedback, energy term, weight gradient; stride, padding,
max and avg pooling, overlapping windows, ties). The conv phases on the device:
:mod:`eqprop.gpu.graph`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eqprop.gpu.backend import ArrayBackend, get_backend
from eqprop.graph.conv import conv_output_hw
from eqprop.graph.model import Coupling
from eqprop.graph.pool import pool_output_hw

__all__ = ["DeviceConv2d", "col2im", "im2col", "max_pool", "max_pool_adjoint"]


def _strided(a, p: int, q: int, n_h: int, n_w: int, step: int):
    """``a[:, :, p :: step, q :: step]`` limited to ``n_h x n_w`` positions (a view)."""
    return a[:, :, p : p + step * (n_h - 1) + 1 : step, q : q + step * (n_w - 1) + 1 : step]


def im2col(xp, img, kernel: tuple[int, int], stride: int, padding: int):
    """Patches of ``img`` (batch, C, H, W), zero-padded: (batch * Ho * Wo, C * kh * kw),
    row ``(b Ho + i) Wo + j`` the patch at ``(i stride, j stride)`` in the order
    ``(c, p, q)`` (:func:`eqprop.graph.conv.im2col`)."""
    B, C, H, W = img.shape
    kh, kw = kernel
    Ho, Wo = conv_output_hw((H, W), kernel, stride, padding)
    if padding:
        img = xp.pad(img, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = xp.empty((B, Ho, Wo, C, kh, kw), dtype=img.dtype)
    for p in range(kh):
        for q in range(kw):
            cols[:, :, :, :, p, q] = _strided(img, p, q, Ho, Wo, stride).transpose(0, 2, 3, 1)
    return cols.reshape(B * Ho * Wo, C * kh * kw)


def col2im(xp, cols, image_shape, kernel: tuple[int, int], stride: int, padding: int):
    """Adjoint of :func:`im2col`: patches scatter-added into (batch, C, H, W)."""
    B, C, H, W = image_shape
    kh, kw = kernel
    Ho, Wo = conv_output_hw((H, W), kernel, stride, padding)
    patches = cols.reshape(B, Ho, Wo, C, kh, kw)
    out = xp.zeros((B, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    for p in range(kh):
        for q in range(kw):
            _strided(out, p, q, Ho, Wo, stride)[...] += patches[:, :, :, :, p, q].transpose(
                0, 3, 1, 2
            )
    if padding:
        out = out[:, :, padding:-padding, padding:-padding]
    return out


def _rows(img):
    """(batch, K, Ho, Wo) -> (batch * Ho * Wo, K), the GEMM layout of target values."""
    return img.transpose(0, 2, 3, 1).reshape(-1, img.shape[1])


def max_pool(xp, z, size: int, stride: int):
    """Max pooling of ``z`` (batch, C, H, W): the pooled values (batch, C, Hp, Wp) and the
    window offset ``t = p size + q`` of each maximum (first on ties)."""
    Hp, Wp = pool_output_hw(z.shape[2:], size, stride)
    win = xp.stack(
        [_strided(z, p, q, Hp, Wp, stride) for p in range(size) for q in range(size)], axis=-1
    )
    local = xp.argmax(win, axis=-1)
    pooled = xp.take_along_axis(win, local[..., None], axis=-1)[..., 0]
    return pooled, local


def max_pool_adjoint(xp, g, local, size: int, stride: int, hw: tuple[int, int]):
    """Each ``g[b, k, i, j]`` added at its window's argmax (offset ``local``), zeros
    elsewhere: (batch, C, H, W). Offset by offset: no atomics, deterministic."""
    B, C, Hp, Wp = g.shape
    out = xp.zeros((B, C, hw[0], hw[1]), dtype=g.dtype)
    for p in range(size):
        for q in range(size):
            _strided(out, p, q, Hp, Wp, stride)[...] += xp.where(local == p * size + q, g, 0)
    return out


def _avg_pool(xp, z, size: int, stride: int):
    Hp, Wp = pool_output_hw(z.shape[2:], size, stride)
    acc = xp.zeros((*z.shape[:2], Hp, Wp), dtype=z.dtype)
    for p in range(size):
        for q in range(size):
            acc += _strided(z, p, q, Hp, Wp, stride)
    return acc / (size * size)


def _avg_pool_adjoint(xp, g, size: int, stride: int, hw: tuple[int, int]):
    B, C, Hp, Wp = g.shape
    out = xp.zeros((B, C, hw[0], hw[1]), dtype=g.dtype)
    share = g / (size * size)
    for p in range(size):
        for q in range(size):
            _strided(out, p, q, Hp, Wp, stride)[...] += share
    return out


class DeviceConv2d:
    """A ``conv2d`` coupling's maps on device arrays (its weights uploaded once).

    Parameters
    ----------
    c : eqprop.graph.model.Coupling
        ``type="conv2d"`` with ``c.conv`` (:class:`eqprop.graph.conv.ConvSpec`) and
        ``c.W`` (C_out, C_in, kh, kw); tied or ``scaled`` feedback.
    backend : {"cupy", "numpy"} or ArrayBackend

    Activities are flat device arrays (batch, C*H*W) in C order, as on the CPU.
    ``self.W`` is the device weight; assign it (``.W[...] = ...``) for updates.
    """

    def __init__(self, c: Coupling, backend: str | ArrayBackend = "cupy"):
        if c.type != "conv2d" or c.conv is None:
            raise ValueError(f"coupling {c.name!r} is {c.type!r}, not a conv2d coupling")
        if c.feedback not in ("tied", "scaled"):
            raise ValueError(
                f"coupling {c.name!r}: feedback {c.feedback!r} has no GPU module (tied or "
                "scaled only)"
            )
        self.c = c
        self.be = get_backend(backend)
        self.xp: Any = self.be.xp
        self.W = self.be.to_device(np.asarray(c.W))
        spec = c.conv
        self.kernel = (int(c.W.shape[2]), int(c.W.shape[3]))
        self.stride, self.padding = int(spec.stride), int(spec.padding)
        self.in_hw = (int(spec.input_hw[0]), int(spec.input_hw[1]))
        self.conv_hw = conv_output_hw(self.in_hw, self.kernel, self.stride, self.padding)
        self.pool = spec.pool
        self.size = int(spec.pool_size) if spec.pool is not None else 1
        self.step = int(spec.pool_step) if spec.pool is not None else 1
        self.gamma = c.gamma if c.feedback == "scaled" else None

    def _image(self, a):
        return a.reshape(a.shape[0], self.W.shape[1], *self.in_hw)

    def _W2(self):
        return self.W.reshape(self.W.shape[0], -1)

    def conv(self, a_src):
        """:math:`z = \\mathrm{conv}(a_{src})`, (batch, C_out, Ho, Wo), one GEMM."""
        B = a_src.shape[0]
        cols = im2col(self.xp, self._image(a_src), self.kernel, self.stride, self.padding)
        z = self.be.matmul(cols, self._W2().T)
        return z.reshape(B, *self.conv_hw, self.W.shape[0]).transpose(0, 3, 1, 2)

    def _pooled(self, z):
        if self.pool is None:
            return z, None
        if self.pool == "avg":
            return _avg_pool(self.xp, z, self.size, self.step), None
        return max_pool(self.xp, z, self.size, self.step)

    def forward_drive(self, a_src):
        """:math:`P(\\mathrm{conv}(a_{src}))` flattened, (batch, n_dst)."""
        pooled, _ = self._pooled(self.conv(a_src))
        return pooled.reshape(a_src.shape[0], -1)

    def _target_image(self, a_dst, a_src):
        """:math:`P'(z)^\\top a_{dst}`, (batch, C_out, Ho, Wo); z = conv(a_src) routes
        max pooling."""
        B, Co = a_dst.shape[0], self.W.shape[0]
        if self.pool is None:
            return a_dst.reshape(B, Co, *self.conv_hw)
        hp = pool_output_hw(self.conv_hw, self.size, self.step)
        g = a_dst.reshape(B, Co, *hp)
        if self.pool == "avg":
            return _avg_pool_adjoint(self.xp, g, self.size, self.step, self.conv_hw)
        if a_src is None:
            raise ValueError(
                f"coupling {self.c.name!r}: the feedback of a max-pooled conv2d coupling "
                "needs the source activity a_src (the argmax routing)"
            )
        _, local = max_pool(self.xp, self.conv(a_src), self.size, self.step)
        return max_pool_adjoint(self.xp, g, local, self.size, self.step, self.conv_hw)

    def feedback_drive(self, a_dst, a_src=None):
        """:math:`\\gamma\\,\\mathrm{conv}^\\top(P'(z)^\\top a_{dst})`, (batch, n_src)."""
        g = self._target_image(a_dst, a_src)
        cols = self.be.matmul(_rows(g), self._W2())
        B = a_dst.shape[0]
        back = col2im(
            self.xp,
            cols,
            (B, self.W.shape[1], *self.in_hw),
            self.kernel,
            self.stride,
            self.padding,
        ).reshape(B, -1)
        return back * self.gamma if self.gamma is not None else back

    def energy_term(self, a_src, a_dst):
        """:math:`-\\langle a_{dst}, P(\\mathrm{conv}(a_{src}))\\rangle` per sample (tied)."""
        if self.c.feedback != "tied":
            raise ValueError(f"coupling {self.c.name!r}: only feedback='tied' has an energy term")
        return -(self.forward_drive(a_src) * a_dst).sum(axis=1)

    def weight_gradient(self, a_src, a_dst):
        """:math:`\\partial F/\\partial W` (C_out, C_in, kh, kw), batch mean."""
        g = _rows(self._target_image(a_dst, a_src))
        cols = im2col(self.xp, self._image(a_src), self.kernel, self.stride, self.padding)
        return -(self.be.matmul(g.T, cols)).reshape(self.W.shape) / a_src.shape[0]
