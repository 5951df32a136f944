"""Pooling inside the dynamics: max and average pooling and their adjoints (NumPy).

Pooling is a stage of a ``conv2d`` coupling (:mod:`eqprop.graph.conv`), applied to the
convolution's output before it reaches the target layer, as in Ernoult et al. 2019
(their P-conv) and Laborieux et al. 2021: the coupling's term of the primitive function
is :math:`s_{l+1}\\cdot P(\\mathrm{conv}(s_l))`, so the target layer has the pooled
shape and there is no layer between the convolution and the pooling.

* **max**: :math:`P(z)_{k,i,j} = \\max_{(p, q)\\in\\text{window}(i, j)} z_{k,p,q}`. It is
  piecewise linear: where the maxima are unique, :math:`\\partial P(z)/\\partial z` is
  the 0/1 matrix selecting each window's argmax, so the gradient of
  :math:`a\\cdot P(z)` with respect to :math:`z` puts :math:`a_{k,i,j}` at the argmax
  position of window :math:`(i, j)` and zero elsewhere (:func:`max_pool_adjoint`). Ties
  take the first position in C order (row, then column), as PyTorch's ``max_pool2d``.
* **avg**: :math:`P(z)_{k,i,j} = \\frac{1}{k_h k_w}\\sum_{\\text{window}(i,j)} z_{k,p,q}`,
  linear; its adjoint spreads :math:`a_{k,i,j}/(k_h k_w)` over the window.

Windows are square, ``size x size``, moved by ``stride`` (default ``size``: no overlap),
no padding, output ``(H - size) // stride + 1`` (PyTorch's floor mode). Arrays are
images ``(batch, channels, height, width)``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "POOLS",
    "avg_pool",
    "avg_pool_adjoint",
    "max_pool",
    "max_pool_adjoint",
    "pool_output_hw",
]

POOLS = ("max", "avg")


def pool_output_hw(hw: tuple[int, int], size: int, stride: int) -> tuple[int, int]:
    """Height and width after pooling ``hw`` with windows ``size`` moved by ``stride``."""
    return ((hw[0] - size) // stride + 1, (hw[1] - size) // stride + 1)


def _windows(z: np.ndarray, size: int, stride: int) -> np.ndarray:
    """View (batch, channels, Hp, Wp, size, size) of every pooling window of ``z``."""
    return sliding_window_view(z, (size, size), axis=(2, 3))[:, :, ::stride, ::stride]


def max_pool(z: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling of ``z`` (batch, C, H, W).

    Returns
    -------
    pooled : ndarray (batch, C, Hp, Wp)
    index : ndarray of int64 (batch, C, Hp, Wp)
        Position of each window's maximum in its channel's flattened ``H * W`` image
        (first position on ties): the routing of :func:`max_pool_adjoint`.
    """
    H, W = z.shape[2:]
    win = _windows(z, size, stride)
    Hp, Wp = win.shape[2:4]
    local = win.reshape(*win.shape[:4], size * size).argmax(axis=-1)
    rows = np.arange(Hp)[:, None] * stride + local // size
    cols = np.arange(Wp)[None, :] * stride + local % size
    index = rows * W + cols
    pooled = np.take_along_axis(
        z.reshape(z.shape[0], z.shape[1], H * W), index.reshape(*index.shape[:2], -1), axis=2
    ).reshape(index.shape)
    return pooled, index


def max_pool_adjoint(g: np.ndarray, index: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """:math:`(\\partial P/\\partial z)^\\top g`: each ``g[b, k, i, j]`` added at the argmax
    ``index[b, k, i, j]`` of its window, zeros elsewhere; (batch, C, H, W)."""
    B, C = g.shape[:2]
    n = hw[0] * hw[1]
    flat = (index.reshape(B * C, -1) + (np.arange(B * C) * n)[:, None]).ravel()
    gv = g.reshape(-1)
    if np.iscomplexobj(gv):
        out = np.zeros(B * C * n, dtype=g.dtype)
        np.add.at(out, flat, gv)
    else:
        out = np.bincount(flat, weights=gv, minlength=B * C * n).astype(g.dtype, copy=False)
    return out.reshape(B, C, hw[0], hw[1])


def avg_pool(z: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Average pooling of ``z`` (batch, C, H, W) -> (batch, C, Hp, Wp)."""
    return _windows(z, size, stride).mean(axis=(-2, -1))


def avg_pool_adjoint(g: np.ndarray, size: int, stride: int, hw: tuple[int, int]) -> np.ndarray:
    """Adjoint of :func:`avg_pool`: ``g / size**2`` spread over each window; (batch, C, H, W)."""
    B, C, Hp, Wp = g.shape
    out = np.zeros((B, C, hw[0], hw[1]), dtype=g.dtype)
    share = g / (size * size)
    for p in range(size):
        for q in range(size):
            out[
                :, :, p : p + stride * (Hp - 1) + 1 : stride, q : q + stride * (Wp - 1) + 1 : stride
            ] += share
    return out
