"""Numba CUDA kernels of the dense tied chain: the element-wise and fused parts of a step.

The matrix products (``a_{l-1} W_l``, ``a_{l+1} W_{l+1}^T``) run through the array
backend (:mod:`eqprop.gpu.backend`, cuBLAS on a GPU); everything else of one synchronous
step is here, one thread per state entry or per sample:

* :func:`activities_kernel`: :math:`a = \\rho(s)` (Hopfield kind; the prototypical kind
  uses the state itself);
* :func:`layer_map_kernel`: the update of one layer given its products, the map
  :math:`g(s)_l` of :mod:`eqprop.kernels` (``evaluate``, ``MODE_MAP``): Hopfield
  :math:`s - \\epsilon\\,(s - \\rho'(s) P - \\beta Q)` (projected onto [0, 1] for the
  hard sigmoid), prototypical :math:`\\sigma(P + \\beta Q)` (nudge inside) or
  :math:`\\sigma(P) + \\beta Q` (outside), with :math:`P_l = a_{l-1}W_l + b_l +
  a_{l+1}W_{l+1}^\\top` and :math:`Q = d - s_L` (squared cost) on the output layer;
* :func:`residual_update_kernel`: per sample, the projection of ``g(x)`` onto the box,
  the residual :math:`r = \\max_i |P(g(x))_i - x_i|`, the convergence / failure verdict
  of ``solvers`` (``_bookkeeping.sample_verdict``) and the damped update
  :math:`x \\leftarrow x + a (P(g(x)) - x)` of the samples still running.

This module imports ``numba.cuda``: under ``NUMBA_ENABLE_CUDASIM=1`` the kernels run on
NumPy arrays on the CPU (Numba's CUDA simulator, slow, for the tests). No fastmath: the
kernels test NaN and convergence; ``cache=True``. Activation codes are those of
:mod:`eqprop.kernels`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from eqprop.gpu.compat import restore_row_stack
from eqprop.graph.kernels import ACT_IDENTITY
from eqprop.kernels import (
    ACT_HARD,
    ACT_SHIFTED,
    ACT_SIGMOID,
    KIND_HOPFIELD,
    NUDGE_INSIDE,
)

# numba-cuda loads its target's registries (and with them an overload of np.row_stack)
# at the first kernel compile, after these imports: NumPy >= 2.5 needs the alias back
# by then (eqprop.gpu.compat)
restore_row_stack()

__all__ = [
    "THREADS",
    "activities_kernel",
    "block_update_kernel",
    "clip_kernel",
    "graph_layer_kernel",
    "launch",
    "layer_map_kernel",
    "residual_update_kernel",
]

#: Threads per block of the element-wise kernels.
THREADS = 128
# verdicts of solvers._bookkeeping (RUNNING, CONVERGED, STOPPED, FAILED)
_RUNNING, _CONVERGED, _STOPPED, _FAILED = 0, 1, 2, 3
_TINY = float(np.finfo(np.float64).tiny)


def _device_arg(a):
    """A CuPy (CUDA-array-interface) argument as a Numba device array view without the
    stream synchronisation Numba's launch would do (``as_cuda_array(sync=True)`` waits for
    the exporter's stream on every launch and argument: a device-wide wait per kernel
    when CuPy exports its legacy default stream). The kernels and CuPy's products run
    on that same default stream, in order, so no wait is needed. Anything else (NumPy
    arrays under the simulator, scalars) unchanged."""
    if hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray):
        return cuda.as_cuda_array(a, sync=False)
    return a


def launch(kernel, n_threads: int, *args) -> None:
    """Launch ``kernel`` on a 1-D grid of at least ``n_threads`` threads (blocks of
    :data:`THREADS`, or one smaller block: the simulator runs every thread of a block)."""
    n = max(1, int(n_threads))
    threads = min(THREADS, n)
    kernel[(n + threads - 1) // threads, threads](*[_device_arg(a) for a in args])


@cuda.jit(device=True, cache=True)
def rho(v, act):
    """:math:`\\rho(v)`: hard sigmoid ``clip(v, 0, 1)``, sigmoid, tanh or the shifted
    sigmoid ``1 / (1 + exp(-4 (v - 1/2)))`` (as ``eqprop.kernels._rho``)."""
    if act == ACT_HARD:
        return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)
    elif act == ACT_IDENTITY:
        return v
    elif act == ACT_SIGMOID:
        return 1.0 / (1.0 + math.exp(-v))
    elif act == ACT_SHIFTED:
        return 1.0 / (1.0 + math.exp(-4.0 * (v - 0.5)))
    return math.tanh(v)


@cuda.jit(device=True, cache=True)
def rhop(v, act):
    """:math:`\\rho'(v)`: 1 on [0, 1] else 0 (hard sigmoid), :math:`g\\rho(1-\\rho)`
    (sigmoids, gain 1 or 4), :math:`1 - \\tanh^2` (as ``eqprop.kernels._rhop``)."""
    if act == ACT_HARD:
        return 1.0 if (v >= 0.0 and v <= 1.0) else 0.0
    elif act == ACT_IDENTITY:
        return 1.0
    elif act == ACT_SIGMOID or act == ACT_SHIFTED:
        e = rho(v, act)
        return (1.0 if act == ACT_SIGMOID else 4.0) * e * (1.0 - e)
    t = math.tanh(v)
    return 1.0 - t * t


@cuda.jit(cache=True)
def activities_kernel(s, a, act):
    """``a[b, i] = rho(s[b, i])`` for all entries of the (batch, n_state) state."""
    k = cuda.grid(1)
    B, n = s.shape
    if k < B * n:
        b = k // n
        i = k - b * n
        a[b, i] = rho(s[b, i], act)


@cuda.jit(cache=True)
def layer_map_kernel(
    s, out, prev, nxt, bias, target, o, kind, act, use_bias, use_next, qb, nudge, eps
):
    """Columns ``o .. o + n`` of the map ``g(s)`` (one layer, all samples).

    ``prev`` (batch, n): ``a_{l-1} W_l`` (or the input drive ``x W_1 + b_1`` for the first
    layer, then ``use_bias`` is False); ``nxt`` (batch, n): ``a_{l+1} W_{l+1}^T`` when
    ``use_next``; ``bias`` (n,): ``b_l``; ``qb``: beta on the output layer, 0 elsewhere
    (``target`` is then not read).
    """
    k = cuda.grid(1)
    B, n = prev.shape
    if k >= B * n:
        return
    b = k // n
    i = k - b * n
    p = prev[b, i]
    if use_bias and use_next:
        p += bias[i] + nxt[b, i]
    elif use_bias:
        p += bias[i]
    elif use_next:
        p += nxt[b, i]
    v = s[b, o + i]
    q = target[b, i] - v if qb != 0.0 else 0.0
    if kind == KIND_HOPFIELD:
        if act == ACT_HARD:
            dF = v - p if (v >= 0.0 and v <= 1.0) else v
            if qb != 0.0:
                dF -= qb * q
            g = v - eps * dF
            g = 0.0 if g < 0.0 else (1.0 if g > 1.0 else g)
        else:
            dF = v - rhop(v, act) * p
            if qb != 0.0:
                dF -= qb * q
            g = v - eps * dF
    elif nudge == NUDGE_INSIDE:
        g = rho(p + qb * q, act) if qb != 0.0 else rho(p, act)
    else:
        g = rho(p, act)
        if qb != 0.0:
            g += qb * q
    out[b, o + i] = g


@cuda.jit(cache=True)
def residual_update_kernel(
    x,
    gx,
    lo,
    hi,
    has_bounds,
    damping,
    k,
    atol,
    rtol,
    limit,
    fixed,
    divergence_bound,
    active,
    res,
    rel,
    n_iter,
    conv,
    failed,
    fail_iter,
    u0,
    u1,
):
    """One iteration's bookkeeping and update of every running sample (one thread each).

    As ``solvers``' Picard driver: ``gx`` is projected onto ``[lo, hi]``;
    ``r = max_i |gx_i - x_i|`` (NaN if any entry is NaN) and ``xm = max_i |x_i|`` go to
    ``res[k, b]`` and ``rel[k, b] = r / max(xm, tiny)``; the sample FAILS when
    ``not r <= divergence_bound``, CONVERGES when ``r <= atol + rtol xm`` (not in
    fixed-steps mode, ``fixed`` False) and stops at ``k >= limit``; a sample still
    running takes ``x <- x + damping (gx - x)`` (``x <- gx`` at damping 1), projected
    again when ``damping > 1``, in columns ``u0 .. u1`` (all of them for Picard; the
    first group's first layer in a Gauss-Seidel sweep, :func:`block_update_kernel`
    the rest).
    """
    b = cuda.grid(1)
    B, n = x.shape
    if b >= B or not active[b]:
        return
    r = 0.0
    xm = 0.0
    bad = False
    for i in range(n):
        g = gx[b, i]
        if has_bounds:
            g = lo if g < lo else (hi if g > hi else g)
            gx[b, i] = g
        dv = float(abs(g - x[b, i]))  # in the state dtype, then float64 (as solvers)
        ax = float(abs(x[b, i]))
        if dv != dv or ax != ax:
            bad = True
        if dv > r:
            r = dv
        if ax > xm:
            xm = ax
    if bad:
        r = math.nan
    res[k, b] = r
    rel[k, b] = r / max(xm, _TINY)
    tol = atol + rtol * xm
    verdict = _RUNNING
    if not r <= divergence_bound:
        verdict = _FAILED
    elif (not fixed) and r <= tol:
        verdict = _CONVERGED
    elif k >= limit:
        verdict = _CONVERGED if r <= tol else _STOPPED
    if verdict != _RUNNING:
        if verdict == _FAILED:
            failed[b] = True
            fail_iter[b] = k
        else:
            conv[b] = verdict == _CONVERGED
        active[b] = False
        n_iter[b] = k
        return
    for i in range(u0, u1):
        x[b, i] = _damped(x[b, i], gx[b, i], lo, hi, has_bounds, damping)


@cuda.jit(device=True, cache=True)
def _damped(x, g, lo, hi, has_bounds, damping):
    """``x + damping (g - x)`` (``g`` at damping 1), projected onto ``[lo, hi]`` when
    ``damping > 1`` (over-relaxation can leave the box)."""
    if damping == 1.0:
        return g
    v = x + damping * (g - x)
    if has_bounds and damping > 1.0:
        v = lo if v < lo else (hi if v > hi else v)
    return v


@cuda.jit(cache=True)
def block_update_kernel(x, gx, a0, a1, lo, hi, has_bounds, damping, active, project):
    """The damped update of columns ``a0 .. a1`` of each running sample (one thread per
    sample), as ``solvers``' Gauss-Seidel driver: ``gx`` projected onto ``[lo, hi]``
    first when ``project`` (a group re-evaluated within the sweep), then
    ``x <- x + damping (gx - x)``."""
    b = cuda.grid(1)
    if b >= x.shape[0] or not active[b]:
        return
    for i in range(a0, a1):
        g = gx[b, i]
        if project and has_bounds:
            g = lo if g < lo else (hi if g > hi else g)
        x[b, i] = _damped(x[b, i], g, lo, hi, has_bounds, damping)


@cuda.jit(cache=True)
def graph_layer_kernel(s, u, g, out, o, act, hop, eps, beta, nudged, inside, has_box, lo, hi):
    r"""Columns ``o .. o + n`` of a graph network's map (one state layer, all samples), as
    ``eqprop.graph.conv_kernels._layer_update``: from the state ``v``, the layer's drive
    ``u`` (batch, n) and, on the nudged output layer, the cost gradient ``g = y - d``:
    Hopfield :math:`v - \epsilon\,(v - \rho'(v) u + \beta g)`, prototypical
    :math:`\rho(u - \beta g)` (nudge inside) or :math:`\rho(u) - \beta g` (outside);
    clipped onto the layer's box ``[lo, hi]`` when ``has_box`` (before an outside nudge)."""
    k = cuda.grid(1)
    B, n = u.shape
    if k >= B * n:
        return
    b = k // n
    i = k - b * n
    v = s[b, o + i]
    if hop:
        dF = v - rhop(v, act) * u[b, i]
        if nudged:
            dF += beta * g[b, i]
        y = v - eps * dF
        if has_box:
            y = lo if y < lo else (hi if y > hi else y)
    else:
        p = u[b, i]
        if nudged and inside:
            p -= beta * g[b, i]
        y = rho(p, act)
        if has_box:
            y = lo if y < lo else (hi if y > hi else y)
        if nudged and not inside:
            y -= beta * g[b, i]
    out[b, o + i] = y


@cuda.jit(cache=True)
def clip_kernel(x, lo, hi):
    """``x <- clip(x, lo, hi)`` entrywise (the projection of an initial state)."""
    k = cuda.grid(1)
    B, n = x.shape
    if k < B * n:
        b = k // n
        i = k - b * n
        v = x[b, i]
        x[b, i] = lo if v < lo else (hi if v > hi else v)
