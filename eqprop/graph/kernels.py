"""Numba map and vector field of a dense :class:`~eqprop.graph.model.GraphNetwork`.

The general (unfused) path for :mod:`solvers`: the same equations as
:mod:`eqprop.graph.reference` (its docstring), read from named records instead of
integer layouts:

* ``layers``: a :class:`LayerTable`, arrays with one entry per state layer (offset,
  size, activation code, has_box, lo, hi); :func:`_layer` reads entry ``i`` as a
  :class:`LayerRecord`;
* ``couplings``: a :class:`CouplingTable`, arrays with one entry per coupling between two
  state layers (src/dst offset and size, ``feedback_scale``, ``uses_B``) and every
  coupling's ``W`` (and ``B``) flat in one ``weights`` array at ``w_start`` (``b_start``);
  :func:`_coupling` reads entry ``k`` as a :class:`CouplingRecord` whose ``W``, ``B`` are
  views (couplings from the input are folded into the constant ``drive``); ``uses_B``
  selects ``a_dst @ B`` over ``feedback_scale * a_dst @ W.T``;
* ``readout``: a :class:`CouplingTable` of the couplings into the softmax readout
  (``dst_*`` unused), with ``readout_bias``; empty when there is no readout;
* ``spec``: a :class:`Spec` ``(kind, cost, nudge, out_offset, out_size)``;
* ``convs``: a tuple of :class:`ConvRecord`, one per ``conv2d`` coupling between two
  state layers (those from the input are in ``drive``), each with its own work buffers;
  ``()`` when there is none (then no convolution code is compiled into the map). A
  record's convolution is im2col + GEMM, the loops of :mod:`eqprop.graph.conv_loops`
  (shared with :mod:`eqprop.graph.conv_kernels`) around two BLAS products ``np.dot``
  (the module docstring of :mod:`eqprop.graph.conv_kernels` says why this form is fast).
  ``geom = (C_in, H, W, kh, kw, stride, padding, H_o, W_o)``, ``pgeom = (C_out, H_o,
  W_o, pool_size, pool_step, H_p, W_p)`` (``pool_size = 1``: no pooling), ``W2`` the
  ``(C_out, C_in*kh*kw)`` view of ``W``, ``B2`` that of the feedback kernel (``W``
  when tied or scaled, ``B`` when free or random: the feedback's transposed convolution
  is ``B2.T @ g``, its max-pool routing that of ``W``'s forward convolution); buffers
  ``cols`` and ``back`` (K, M), ``z`` and ``g`` (M, C_out), ``index`` (batch, n_dst)
  int64 (the max-pool routing), ``M = batch * H_o * W_o``, ``K = C_in * kh * kw``. Real
  and complex dtypes (complex: average pooling or none; a max pool needs an order and
  :func:`eqprop.graph.conv.check` refuses it on a complex network).

**One compiled driver for every dense topology.** The Numba type of ``args`` depends
only on the dtype and the number of conv couplings (arrays and records of arrays, no
tuple whose length is the number of layers or dense couplings; ``convs`` is a tuple), so
:mod:`solvers` compiles its driver and these kernels once per dtype (and number of conv
couplings) and process, and caches them on disk, not once per network topology
(``benchmarks/bench_graph_compile.py``; ``docs/networks.rst``). The parameters are
copied into ``weights`` by :func:`make_args`, once per phase.

``args = (layers, couplings, readout, readout_bias, drive, target, sc, work, spec,
convs)``
with ``drive`` (batch, n_state) the input's contribution plus the biases (constant in a
phase), ``target`` (batch, n_out), ``sc = [beta, eps]`` (``nudge="clamp"``: the output
set to ``target``, beta 0) and ``work`` from
:func:`make_args`. All kernels ``@njit(cache=True)``, no fastmath, allocation-free per call.

Dtypes: float32/float64, and complex64/complex128 for a complex network (holomorphic EP,
:mod:`eqprop.graph.holomorphic`): every array of ``args`` is then complex, ``beta`` may be
complex, and the activations are the holomorphic ones (sigmoid, shifted sigmoid, tanh,
identity; :class:`~eqprop.graph.model.GraphNetwork` refuses a hard sigmoid or a box with a
complex dtype). The few operations that need an order (the hard sigmoid, the box, the max
shift of the softmax) are generic functions (``numba.extending.overload``): for real
states they are the code used before, for complex ones the hard sigmoid gives NaN
(unreachable), the box is the identity and the softmax is unshifted,
``softmax(z)_k = exp(z_k) / sum_j exp(z_j)`` (as
:mod:`eqprop.graph.reference` does for complex logits).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import overload

import solvers
from eqprop import kernels as _chain
from eqprop.graph import reference as R
from eqprop.graph.conv_loops import (
    col2im_add,
    im2col_into,
    mean_pool_rows_add,
    pool_rows_add,
    unpool_rows,
)
from eqprop.graph.model import ACTIVATIONS, GraphNetwork
from eqprop.graph.reference import _batch

__all__ = [
    "ConvRecord",
    "CouplingRecord",
    "CouplingTable",
    "LayerRecord",
    "LayerTable",
    "Spec",
    "fixed_point_block",
    "fixed_point_map",
    "input_drive",
    "make_args",
    "observe_energy",
    "solve_phase",
    "vector_field",
]

LayerRecord = namedtuple("LayerRecord", ["offset", "size", "activation", "has_box", "lo", "hi"])
CouplingRecord = namedtuple(
    "CouplingRecord",
    ["src_offset", "src_size", "dst_offset", "dst_size", "W", "B", "feedback_scale", "uses_B"],
)
#: The state layers as one record of arrays, one entry per layer (``lo``, ``hi`` in the
#: state's dtype, the others int64 / bool): its Numba type does not depend on the number
#: of layers, so one compiled driver serves every topology.
LayerTable = namedtuple("LayerTable", ["offset", "size", "activation", "has_box", "lo", "hi"])
#: Couplings as one record of arrays, one entry per coupling, their ``W`` (and ``B``)
#: stored flat in ``weights`` from ``w_start`` (``b_start``) in C order.
CouplingTable = namedtuple(
    "CouplingTable",
    [
        "src_offset",
        "src_size",
        "dst_offset",
        "dst_size",
        "w_start",
        "b_start",
        "feedback_scale",
        "uses_B",
        "weights",
    ],
)
Spec = namedtuple("Spec", ["kind", "cost", "nudge", "out_offset", "out_size"])
ConvRecord = namedtuple(
    "ConvRecord",
    [
        "src_offset",
        "src_size",
        "dst_offset",
        "dst_size",
        "W2",
        "B2",
        "feedback_scale",
        "geom",
        "pgeom",
        "is_max",
        "cols",
        "z",
        "g",
        "back",
        "index",
    ],
)

# activation codes: those of eqprop.kernels, plus identity
ACT_IDENTITY = 4
_ACT_CODE = {
    "hardsigmoid": _chain.ACT_HARD,
    "sigmoid": _chain.ACT_SIGMOID,
    "tanh": _chain.ACT_TANH,
    "shifted-sigmoid": _chain.ACT_SHIFTED,
    "identity": ACT_IDENTITY,
}
assert set(_ACT_CODE) == set(ACTIVATIONS)
KIND_HOPFIELD, KIND_PROTO = 0, 1
COST_SQUARED, COST_CE_STATE, COST_CE_READOUT = 0, 1, 2
NUDGE_INSIDE, NUDGE_OUTSIDE, NUDGE_CLAMP = 0, 1, 2
MODE_MAP, MODE_FIELD = 0, 1


def _rho(v, act):  # pragma: no cover - only called from compiled code
    """rho(v) by activation code; generic over real and complex scalars."""
    raise NotImplementedError("_rho is only callable from Numba-compiled code")


def _rhop(v, act):  # pragma: no cover - only called from compiled code
    """rho'(v) by activation code; generic over real and complex scalars."""
    raise NotImplementedError("_rhop is only callable from Numba-compiled code")


def _box(y, lo, hi):  # pragma: no cover - only called from compiled code
    """``min(max(y, lo), hi)``; the identity for complex ``y`` (no boxes then)."""
    raise NotImplementedError("_box is only callable from Numba-compiled code")


def _in_unit(v):  # pragma: no cover - only called from compiled code
    """``0 <= v <= 1`` (the hard sigmoid's linear piece); False for complex ``v``."""
    raise NotImplementedError("_in_unit is only callable from Numba-compiled code")


@overload(_rho)
def _rho_ov(v, act):
    if isinstance(v, types.Complex):

        def impl_c(v, act):
            if act == ACT_IDENTITY:
                return v
            if act == _chain.ACT_SIGMOID:
                return 1.0 / (1.0 + np.exp(-v))
            if act == _chain.ACT_SHIFTED:
                return 1.0 / (1.0 + np.exp(-4.0 * (v - 0.5)))
            if act == _chain.ACT_TANH:
                return np.tanh(v)
            return v * np.nan  # hard sigmoid: not holomorphic (refused by GraphNetwork)

        return impl_c

    def impl(v, act):
        if act == ACT_IDENTITY:
            return v
        return _chain._rho(v, act)

    return impl


@overload(_rhop)
def _rhop_ov(v, act):
    if isinstance(v, types.Complex):

        def impl_c(v, act):
            if act == ACT_IDENTITY:
                return v - v + 1.0
            if act == _chain.ACT_SIGMOID or act == _chain.ACT_SHIFTED:
                e = _rho(v, act)
                return (1.0 if act == _chain.ACT_SIGMOID else 4.0) * e * (1.0 - e)
            if act == _chain.ACT_TANH:
                t = np.tanh(v)
                return 1.0 - t * t
            return v * np.nan  # hard sigmoid: not holomorphic (refused by GraphNetwork)

        return impl_c

    def impl(v, act):
        if act == ACT_IDENTITY:
            return 1.0
        return _chain._rhop(v, act)

    return impl


@overload(_box)
def _box_ov(y, lo, hi):
    if isinstance(y, types.Complex):
        return lambda y, lo, hi: y
    return lambda y, lo, hi: min(max(y, lo), hi)


@overload(_in_unit)
def _in_unit_ov(v):
    if isinstance(v, types.Complex):
        return lambda v: False
    return lambda v: v >= 0.0 and v <= 1.0


def _softmax_error(Z, target):  # pragma: no cover - only called from compiled code
    """Z <- softmax(Z) - target, row-wise (max-shifted for real Z, unshifted for complex)."""
    raise NotImplementedError("_softmax_error is only callable from Numba-compiled code")


@overload(_softmax_error)
def _softmax_error_ov(Z, target):
    if isinstance(Z.dtype, types.Complex):

        def impl_c(Z, target):
            B, n = Z.shape
            for r in range(B):
                tot = Z[r, 0] - Z[r, 0]
                for k in range(n):
                    Z[r, k] = np.exp(Z[r, k])
                    tot += Z[r, k]
                for k in range(n):
                    Z[r, k] = Z[r, k] / tot - target[r, k]

        return impl_c
    return lambda Z, target: _softmax_error_real(Z, target)


@njit(cache=True)
def _block(buf, offset, B, n):
    """Contiguous (B, n) block of a layer-blocked buffer (block of the layer at column
    ``offset`` starts at ``B * offset``)."""
    return buf[B * offset : B * (offset + n)].reshape((B, n))


@njit(cache=True)
def _softmax_error_real(Z, target):
    """Z <- softmax(Z) - target, row-wise, numerically stable."""
    B, n = Z.shape
    for r in range(B):
        m = -np.inf
        for k in range(n):
            if Z[r, k] > m:
                m = Z[r, k]
        tot = 0.0
        for k in range(n):
            Z[r, k] = np.exp(Z[r, k] - m)
            tot += Z[r, k]
        for k in range(n):
            Z[r, k] = Z[r, k] / tot - target[r, k]


def _conv_drives(convs, A, U, B, lo, hi):  # pragma: no cover - only called from compiled code
    """Add every conv record's forward drive into its target's and feedback drive into its
    source's columns of ``U`` (B, n), from the layer-blocked activities ``A``; only the
    drives of layers inside the columns ``[lo, hi)`` (a max pool's feedback still
    computes the forward convolution: its argmax routing)."""
    raise NotImplementedError("_conv_drives is only callable from Numba-compiled code")


def _pool_add(z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp):  # pragma: no cover
    """:func:`eqprop.graph.conv_loops.pool_rows_add` for real ``z``; for complex ``z`` the
    average pool only, :func:`eqprop.graph.conv_loops.mean_pool_rows_add` (a max pool
    needs an order: :func:`eqprop.graph.conv.check` refuses it on complex networks, so
    ``is_max`` is False there)."""
    raise NotImplementedError("_pool_add is only callable from Numba-compiled code")


@overload(_pool_add)
def _pool_add_ov(z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp):
    if isinstance(z.dtype, types.Complex):
        return lambda z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp: mean_pool_rows_add(
            z, out, O, Ho, Wo, size, step, Hp, Wp, Ho * Wo, 1
        )
    return lambda z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp: pool_rows_add(
        z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp
    )


@overload(_conv_drives)
def _conv_drives_ov(convs, A, U, B, lo, hi):
    if isinstance(convs, types.BaseTuple) and len(convs.types) == 0:
        return lambda convs, A, U, B, lo, hi: None

    def impl(convs, A, U, B, lo, hi):
        for cv in convs:
            C, H, Wd, kh, kw, st, pad, Ho, Wo = cv.geom
            O, _, _, size, step, Hp, Wp = cv.pgeom
            fwd = _overlaps(cv.dst_offset, cv.dst_size, lo, hi)
            back = _overlaps(cv.src_offset, cv.src_size, lo, hi)
            if not (fwd or back):
                continue
            a_src = _block(A, cv.src_offset, B, cv.src_size)
            a_dst = _block(A, cv.dst_offset, B, cv.dst_size)
            u_src = U[:, cv.src_offset : cv.src_offset + cv.src_size]
            u_dst = U[:, cv.dst_offset : cv.dst_offset + cv.dst_size]
            if fwd or cv.is_max:
                im2col_into(a_src, cv.cols, C, H, Wd, kh, kw, st, pad, Ho, Wo)
                np.dot(cv.cols.T, cv.W2.T, cv.z)
                _pool_add(cv.z, u_dst, cv.index, cv.is_max, O, Ho, Wo, size, step, Hp, Wp)
            if back:
                unpool_rows(a_dst, cv.index, cv.g, cv.is_max, O, Ho, Wo, size, step, Hp, Wp)
                np.dot(cv.B2.T, cv.g.T, cv.back)
                col2im_add(cv.back, u_src, C, H, Wd, kh, kw, st, pad, Ho, Wo, cv.feedback_scale)

    return impl


@njit(cache=True)
def _layer(t, i):
    """The :class:`LayerRecord` of entry ``i`` of a :class:`LayerTable`."""
    return LayerRecord(t.offset[i], t.size[i], t.activation[i], t.has_box[i], t.lo[i], t.hi[i])


@njit(cache=True)
def _coupling(t, k):
    """The :class:`CouplingRecord` of entry ``k`` of a :class:`CouplingTable`: ``W``
    (and ``B``) are views of ``weights`` (``B`` aliases ``W``'s entries when unused)."""
    ns, nd = t.src_size[k], t.dst_size[k]
    w0, b0 = t.w_start[k], t.b_start[k]
    W = t.weights[w0 : w0 + ns * nd].reshape((ns, nd))
    Bm = t.weights[b0 : b0 + nd * ns].reshape((nd, ns))
    return CouplingRecord(
        t.src_offset[k], ns, t.dst_offset[k], nd, W, Bm, t.feedback_scale[k], t.uses_B[k]
    )


@njit(cache=True)
def _readout_logits(Z, Tz, A, readout, rbias):
    """Logits of the softmax readout into ``Z`` (B, m): its bias plus every readout
    coupling's ``a_src W`` (``A`` the layer-blocked activities, ``Tz`` (B, m) scratch)."""
    B, m = Z.shape
    for r in range(B):
        for j in range(m):
            Z[r, j] = rbias[j]
    for k in range(readout.src_offset.shape[0]):
        c = _coupling(readout, k)
        np.dot(_block(A, c.src_offset, B, c.src_size), c.W, Tz)
        for r in range(B):
            for j in range(m):
                Z[r, j] += Tz[r, j]


@njit(cache=True)
def _overlaps(offset, size, lo, hi):
    """Whether the columns ``[offset, offset + size)`` meet ``[lo, hi)``."""
    return offset < hi and offset + size > lo


@njit(cache=True)
def _evaluate(s, out, args, mode, lo, hi):
    """The map (``mode`` MODE_MAP) or vector field (MODE_FIELD) of ``args`` at ``s`` into
    ``out``, for the layers whose columns meet ``[lo, hi)``."""
    layers, couplings, readout, rbias, drive, target, sc, work, spec, convs = args
    B, n = s.shape
    beta, eps = sc[0], sc[1]
    hop = spec.kind == KIND_HOPFIELD
    A = work[0 : B * n]  # activities, layer-blocked
    U = work[B * n : 2 * B * n].reshape((B, n))  # drives, row-major
    G = work[2 * B * n : 3 * B * n].reshape((B, n))  # dC/ds, row-major
    T = work[3 * B * n :]  # temporaries
    for li in range(layers.offset.shape[0]):
        lr = _layer(layers, li)
        Al = _block(A, lr.offset, B, lr.size)
        for r in range(B):
            for i in range(lr.size):
                v = s[r, lr.offset + i]
                Al[r, i] = _rho(v, lr.activation) if hop else v
    for r in range(B):
        for j in range(n):
            U[r, j] = drive[r, j]
    for k in range(couplings.src_offset.shape[0]):
        c = _coupling(couplings, k)
        Asrc = _block(A, c.src_offset, B, c.src_size)
        Adst = _block(A, c.dst_offset, B, c.dst_size)
        if _overlaps(c.dst_offset, c.dst_size, lo, hi):
            Tf = T[0 : B * c.dst_size].reshape((B, c.dst_size))
            np.dot(Asrc, c.W, Tf)
            for r in range(B):
                for j in range(c.dst_size):
                    U[r, c.dst_offset + j] += Tf[r, j]
        if _overlaps(c.src_offset, c.src_size, lo, hi):
            Tb = T[0 : B * c.src_size].reshape((B, c.src_size))
            if c.uses_B:
                np.dot(Adst, c.B, Tb)
            else:
                np.dot(Adst, c.W.T, Tb)
            kf = c.feedback_scale
            for r in range(B):
                for i in range(c.src_size):
                    U[r, c.src_offset + i] += kf * Tb[r, i]
    _conv_drives(convs, A, U, B, lo, hi)
    nudged = beta != 0.0
    if nudged:
        for r in range(B):
            for j in range(n):
                G[r, j] = 0.0
        o, m = spec.out_offset, spec.out_size
        if spec.cost == COST_SQUARED:
            for r in range(B):
                for j in range(m):
                    G[r, o + j] = s[r, o + j] - target[r, j]
        elif spec.cost == COST_CE_STATE:
            Z = T[0 : B * m].reshape((B, m))
            for r in range(B):
                for j in range(m):
                    Z[r, j] = s[r, o + j]
            _softmax_error(Z, target)
            for r in range(B):
                for j in range(m):
                    G[r, o + j] = Z[r, j]
        else:
            Z = T[0 : B * m].reshape((B, m))
            _readout_logits(Z, T[B * m : 2 * B * m].reshape((B, m)), A, readout, rbias)
            _softmax_error(Z, target)
            for k in range(readout.src_offset.shape[0]):
                c = _coupling(readout, k)
                Tb = T[2 * B * m : 2 * B * m + B * c.src_size].reshape((B, c.src_size))
                np.dot(Z, c.W.T, Tb)
                for r in range(B):
                    for i in range(c.src_size):
                        G[r, c.src_offset + i] += Tb[r, i]
            if hop:  # chain rule through rho of the readout's sources
                for k in range(readout.src_offset.shape[0]):
                    c = _coupling(readout, k)
                    act = layers.activation[0]
                    for li in range(layers.offset.shape[0]):
                        if layers.offset[li] == c.src_offset:
                            act = layers.activation[li]
                    for r in range(B):
                        for i in range(c.src_size):
                            j = c.src_offset + i
                            G[r, j] *= _rhop(s[r, j], act)
    inside = spec.nudge == NUDGE_INSIDE
    for li in range(layers.offset.shape[0]):
        lr = _layer(layers, li)
        o, m, act = lr.offset, lr.size, lr.activation
        if not _overlaps(o, m, lo, hi):
            continue
        for r in range(B):
            sr = s[r, o : o + m]
            ur = U[r, o : o + m]
            gr = G[r, o : o + m]
            orow = out[r, o : o + m]
            if hop and act == _chain.ACT_HARD and mode == MODE_MAP:
                # the common case, branch-free in its activation: rho' = 1 on [0, 1]
                for i in range(m):
                    v = sr[i]
                    dF = v - ur[i] if _in_unit(v) else v
                    if nudged:
                        dF += beta * gr[i]
                    y = v - eps * dF
                    if lr.has_box:
                        y = _box(y, lr.lo, lr.hi)
                    orow[i] = y
            elif hop:
                for i in range(m):
                    v = sr[i]
                    dF = v - _rhop(v, act) * ur[i]
                    if nudged:
                        dF += beta * gr[i]
                    if mode == MODE_FIELD:
                        orow[i] = -dF
                    else:
                        y = v - eps * dF
                        if lr.has_box:
                            y = _box(y, lr.lo, lr.hi)
                        orow[i] = y
            else:
                for i in range(m):
                    p = ur[i]
                    if nudged and inside:
                        p -= beta * gr[i]
                    y = _rho(p, act)
                    if lr.has_box:
                        y = _box(y, lr.lo, lr.hi)
                    if nudged and not inside:
                        y -= beta * gr[i]
                    orow[i] = y - sr[i] if mode == MODE_FIELD else y
    if spec.nudge == NUDGE_CLAMP and _overlaps(spec.out_offset, spec.out_size, lo, hi):
        o, m = spec.out_offset, spec.out_size  # output clamped to the target (CHL)
        for r in range(B):
            for j in range(m):
                if mode == MODE_MAP:
                    out[r, o + j] = target[r, j]
                else:
                    out[r, o + j] = (target[r, j] - s[r, o + j]) / eps


@njit(cache=True)
def fixed_point_map(s, out, args):
    """``g(s)``: projected Euler step (hopfield) or :math:`\\sigma(u - \\beta\\,\\partial
    C/\\partial s)` (prototypical); ``args`` from :func:`make_args`."""
    _evaluate(s, out, args, MODE_MAP, 0, s.shape[1])


@njit(cache=True)
def fixed_point_block(s, out, args, start, stop):
    """Columns ``[start, stop)`` of :func:`fixed_point_map` (the ``g_block`` of
    ``solvers.GaussSeidel``; the groups of :mod:`eqprop.phases` are whole layers): only
    the couplings into or out of those layers are evaluated, so one red-black sweep
    costs about one map evaluation plus the block's share."""
    _evaluate(s, out, args, MODE_MAP, start, stop)


@njit(cache=True)
def vector_field(s, out, args):
    """``ds/dt``: :math:`-(s - \\rho'(s) u + \\beta\\,\\partial C/\\partial s)` (hopfield) or
    ``g(s) - s`` (prototypical)."""
    _evaluate(s, out, args, MODE_FIELD, 0, s.shape[1])


@njit(cache=True)
def _logsumexp_cost(Z, target, r):
    """:math:`-\\sum_k d_k z_k + (\\sum_k d_k)\\,\\mathrm{logsumexp}(z)` of row ``r``
    (max-shifted; real dtypes)."""
    m = Z.shape[1]
    zmax = Z[r, 0]
    for k in range(m):
        if Z[r, k] > zmax:
            zmax = Z[r, k]
    tot = Z[r, 0] - Z[r, 0]
    dsum = tot
    dz = tot
    for k in range(m):
        tot += np.exp(Z[r, k] - zmax)
        dsum += target[r, k]
        dz += target[r, k] * Z[r, k]
    return dsum * (zmax + np.log(tot)) - dz


@njit(cache=True)
def _energy(s, layers, couplings, readout, rbias, drive, target, sc, work, spec):
    B, n = s.shape
    beta = sc[0]
    hop = spec.kind == KIND_HOPFIELD
    A = work[0 : B * n]  # activities, layer-blocked (as _evaluate)
    T = work[3 * B * n :]
    F = np.zeros(B, dtype=s.dtype)
    for li in range(layers.offset.shape[0]):
        lr = _layer(layers, li)
        Al = _block(A, lr.offset, B, lr.size)
        for r in range(B):
            acc = F[r] - F[r]
            for i in range(lr.size):
                v = s[r, lr.offset + i]
                a = _rho(v, lr.activation) if hop else v
                Al[r, i] = a
                if hop:
                    acc += 0.5 * v * v
                acc -= drive[r, lr.offset + i] * a  # biases and couplings from the input
            F[r] += acc
    for k in range(couplings.src_offset.shape[0]):
        c = _coupling(couplings, k)
        Asrc = _block(A, c.src_offset, B, c.src_size)
        Adst = _block(A, c.dst_offset, B, c.dst_size)
        Tf = T[0 : B * c.dst_size].reshape((B, c.dst_size))
        np.dot(Asrc, c.W, Tf)
        for r in range(B):
            acc = F[r] - F[r]
            for j in range(c.dst_size):
                acc += Tf[r, j] * Adst[r, j]
            F[r] -= acc
    if beta != 0.0:
        o, m = spec.out_offset, spec.out_size
        Z = T[0 : B * m].reshape((B, m))
        if spec.cost == COST_CE_READOUT:
            _readout_logits(Z, T[B * m : 2 * B * m].reshape((B, m)), A, readout, rbias)
        else:
            for r in range(B):
                for j in range(m):
                    Z[r, j] = s[r, o + j]
        for r in range(B):
            if spec.cost == COST_SQUARED:
                acc = F[r] - F[r]
                for j in range(m):
                    e = Z[r, j] - target[r, j]
                    acc += 0.5 * e * e
            else:
                acc = _logsumexp_cost(Z, target, r)
            F[r] += beta * acc
    return F


@njit(cache=True)
def observe_energy(s, args):
    """Per-sample total function :math:`F = E + \\beta C` (hopfield) or :math:`-\\Phi +
    \\beta C` (prototypical) of a tied network at ``s``, a new (batch,) array in the state's
    dtype, for the solvers' ``observe`` (``Dynamics.record_energy``). The terms of
    :func:`eqprop.graph.reference.energy`: :math:`\\tfrac12\\|s\\|^2` (hopfield),
    :math:`-` ``drive`` :math:`\\cdot a` (biases and couplings from the input), :math:`-\\langle
    a_{src} W_c, a_{dst}\\rangle` per coupling between state layers, :math:`\\beta C`.
    Meaningful for tied couplings only (the phases refuse the others). Real dtypes (the
    solvers record real values; the phases refuse a complex network's record_energy).
    Dense couplings only: the phases refuse record_energy on a network with conv
    couplings between state layers (``convs`` non-empty)."""
    layers, couplings, readout, rbias, drive, target, sc, work, spec, _convs = args
    return _energy(s, layers, couplings, readout, rbias, drive, target, sc, work, spec)


# ----------------------------------------------------------------------------- builders
_KERNEL_DTYPES = tuple(np.dtype(t) for t in ("float32", "float64", "complex64", "complex128"))


def _real_dtype(net: GraphNetwork) -> np.dtype:
    """The network's dtype, checked to be one the kernels compile for (the solvers')."""
    if net.dtype not in _KERNEL_DTYPES:
        raise ValueError(
            f"the Numba graph kernels run float32/float64 or complex64/complex128 (the "
            f"solvers' dtypes); this network is {net.dtype.name}"
        )
    return net.dtype


def input_drive(net: GraphNetwork, x: np.ndarray) -> np.ndarray:
    """Constant part of the drive, (batch, n_state): biases plus every coupling from the
    input (NumPy/BLAS products, once per phase: ``x W`` for a dense coupling, the pooled
    convolution of :func:`eqprop.graph.conv.forward_drive` for a ``conv2d`` one)."""
    dt = _real_dtype(net)
    x = _batch(net, x, net.n_in, "x", None)
    off = net.offsets
    drive = np.zeros((x.shape[0], net.n_state), dtype=dt)
    for layer in net.state_layers:
        if layer.bias is not None:
            a, b = off[layer.name]
            drive[:, a:b] += layer.bias_vector()
    for c in net.couplings:
        if c.source == net.input_layer.name and c.target in off:
            a, b = off[c.target]
            drive[:, a:b] += R.coupling_module(c).forward_drive(c, x)
    return drive


def _coupling_table(net: GraphNetwork, couplings) -> CouplingTable:
    """The :class:`CouplingTable` of dense ``couplings`` (their ``W``/``B`` copied into one
    flat array in the state's dtype)."""
    dt, off = net.dtype, net.offsets
    ints: dict[str, list[int]] = {k: [] for k in CouplingTable._fields[:6]}
    scale, uses, parts, start = [], [], [], 0
    for c in couplings:
        uses_B = c.feedback in ("free", "random")
        n_src, n_dst = net.layer(c.source).size, net.layer(c.target).size
        ints["src_offset"].append(off[c.source][0])
        ints["src_size"].append(n_src)
        ints["dst_offset"].append(off[c.target][0] if c.target in off else 0)
        ints["dst_size"].append(n_dst)
        ints["w_start"].append(start)
        parts.append(np.ravel(c.W))
        ints["b_start"].append(start + c.W.size if uses_B else start)
        start += c.W.size
        if uses_B:
            parts.append(np.ravel(c.B))
            start += c.B.size
        scale.append(c.gamma if c.feedback == "scaled" else 1.0)
        uses.append(uses_B)
    return CouplingTable(
        **{k: np.array(v, dtype=np.int64) for k, v in ints.items()},
        feedback_scale=np.array(scale, dtype=dt),  # the state's dtype: no float64 in float32
        uses_B=np.array(uses, dtype=np.bool_),
        weights=np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), dtype=dt),
    )


def _conv_records(net: GraphNetwork, batch: int) -> tuple:
    """One :class:`ConvRecord` (with fresh work buffers for ``batch`` samples) per
    ``conv2d`` coupling between two state layers; ``()`` when there is none."""
    from eqprop.graph.conv import conv_output_hw
    from eqprop.graph.conv import feedback_kernel as conv_feedback_kernel
    from eqprop.graph.pool import pool_output_hw

    dt = net.dtype
    off = net.offsets
    recs = []
    for c in net.couplings:
        if c.type != "conv2d" or c.source not in off:
            continue
        spec = c.conv
        O, C, kh, kw = c.W.shape
        H, Wd = spec.input_hw
        Ho, Wo = conv_output_hw((H, Wd), (kh, kw), spec.stride, spec.padding)
        if spec.pool is None:
            size, step, Hp, Wp = 1, 1, Ho, Wo
        else:
            size, step = spec.pool_size, spec.pool_step
            Hp, Wp = pool_output_hw((Ho, Wo), size, step)
        M, Kc = batch * Ho * Wo, C * kh * kw
        n_dst = net.layer(c.target).size
        recs.append(
            ConvRecord(
                off[c.source][0],
                off[c.source][1] - off[c.source][0],
                off[c.target][0],
                n_dst,
                np.ascontiguousarray(c.W).reshape(O, Kc),
                np.ascontiguousarray(conv_feedback_kernel(c)).reshape(O, Kc),
                dt.type(c.gamma) if c.feedback == "scaled" else dt.type(1.0),
                tuple(int(v) for v in (C, H, Wd, kh, kw, spec.stride, spec.padding, Ho, Wo)),
                tuple(int(v) for v in (O, Ho, Wo, size, step, Hp, Wp)),
                spec.pool == "max",
                np.empty((Kc, M), dtype=dt),
                np.empty((M, O), dtype=dt),
                np.empty((M, O), dtype=dt),
                np.empty((Kc, M), dtype=dt),
                np.zeros((batch, n_dst), dtype=np.int64),
            )
        )
    return tuple(recs)


def _records(net: GraphNetwork):
    """``(layers, couplings, readout)`` of ``args``: a :class:`LayerTable` of the state
    layers and :class:`CouplingTable` of the couplings between state layers and of those
    into a readout (couplings from the input are folded into the constant ``drive``)."""
    dt = net.dtype
    off = net.offsets
    state = net.state_layers
    layers = LayerTable(
        np.array([off[la.name][0] for la in state], dtype=np.int64),
        np.array([la.size for la in state], dtype=np.int64),
        np.array([_ACT_CODE[la.activation] for la in state], dtype=np.int64),
        np.array([la.box is not None for la in state], dtype=np.bool_),
        np.array([0.0 if la.box is None else la.box[0] for la in state], dtype=dt),
        np.array([0.0 if la.box is None else la.box[1] for la in state], dtype=dt),
    )
    # couplings from the input are in the drive; conv couplings are ConvRecords
    dense = [c for c in net.couplings if c.source in off and c.type == "dense"]
    inner = [c for c in dense if c.target in off]
    readout = [c for c in dense if c.target not in off]
    return layers, _coupling_table(net, inner), _coupling_table(net, readout)


def make_args(
    net: GraphNetwork,
    x: np.ndarray,
    *,
    beta: complex = 0.0,
    d: np.ndarray | None = None,
    eps: float = 0.5,
    nudge: str = "inside",
    drive: np.ndarray | None = None,
) -> tuple:
    """The ``args`` tuple of :func:`fixed_point_map` / :func:`vector_field` for a phase.

    ``beta`` may be complex (with nonzero imaginary part) only for a complex network
    (:func:`eqprop.graph.holomorphic.as_complex`); ValueError otherwise. ``drive``:
    :func:`input_drive` of ``x`` when already computed (the phases of one training step
    share it); ``x`` is then not read.
    """
    dt = _real_dtype(net)
    if dt.kind != "c" and np.iscomplexobj(beta):
        if np.imag(beta) != 0:
            raise ValueError(
                f"beta {beta!r} is complex but the network's dtype is {dt.name}: complex "
                "nudges need a complex network (eqprop.graph.holomorphic.as_complex, which "
                "also refuses non-holomorphic activations such as the hard sigmoid)"
            )
        beta = float(np.real(beta))
    R._nudge(net, nudge, d, beta)
    if drive is None:
        drive = input_drive(net, x)
    batch = drive.shape[0]
    if d is None:
        if beta != 0:
            raise ValueError("targets d are needed when beta != 0")
        target = np.zeros((batch, net.n_out), dtype=dt)
    else:
        target = _batch(net, d, net.n_out, "d", batch)
    layers, couplings, readout = _records(net)
    out = net.output_layer
    if out.role == "readout":
        cost, o = COST_CE_READOUT, 0
        rbias = np.zeros(out.size, dtype=dt) if out.bias is None else np.array(out.bias)
    else:
        cost = COST_SQUARED if net.cost == "squared" else COST_CE_STATE
        o = net.offsets[out.name][0]
        rbias = np.zeros(1, dtype=dt)
    spec = Spec(
        KIND_HOPFIELD if net.kind == "hopfield" else KIND_PROTO,
        cost,
        {"inside": NUDGE_INSIDE, "outside": NUDGE_OUTSIDE, "clamp": NUDGE_CLAMP}[nudge],
        o,
        out.size,
    )
    nmax = max([net.n_out] + [la.size for la in net.layers])
    work = np.empty(3 * batch * net.n_state + 3 * batch * nmax, dtype=dt)
    sc = np.array([beta, eps], dtype=dt)
    convs = _conv_records(net, batch)
    return (layers, couplings, readout, rbias, drive, target, sc, work, spec, convs)


def common_box(net: GraphNetwork) -> tuple[float, float] | None:
    """The box shared by every state layer, or None (then the map projects per layer and
    the solvers get no bounds)."""
    boxes = {la.box for la in net.state_layers}
    if len(boxes) == 1:
        return next(iter(boxes))
    return None


def solve_phase(
    net: GraphNetwork,
    x: np.ndarray,
    *,
    beta: float = 0.0,
    d: np.ndarray | None = None,
    s0: np.ndarray | None = None,
    eps: float = 0.5,
    nudge: str = "inside",
    method: Any = None,
    **solver_options: Any,
):
    """Relax a phase of a graph network with :mod:`solvers` (a fixed-point method:
    ``solve_fixed_point`` on :func:`fixed_point_map`; an ODE method: ``solve_steady_state``
    on :func:`vector_field`). ``solver_options`` go to the solver (``fixed_steps``,
    ``atol``, ``max_iter``, ...). Returns the ``solvers.SolveResult``.
    """
    args = make_args(net, x, beta=beta, d=d, eps=eps, nudge=nudge)
    s = net.zero_state(args[4].shape[0]) if s0 is None else np.array(s0, dtype=net.dtype)
    method = solvers.Picard() if method is None else method
    fp = isinstance(method, solvers.Picard | solvers.Anderson)
    box = common_box(net)
    if fp:
        return solvers.solve_fixed_point(
            fixed_point_map, s, args, method=method, bounds=box, **solver_options
        )
    if any(la.box is not None for la in net.state_layers) and box is None:
        raise ValueError(
            "an ODE method projects onto one box for the whole state; this network's layers "
            "have different boxes: use a fixed-point method (Picard, Anderson)"
        )
    return solvers.solve_steady_state(
        vector_field, s, args, method=method, bounds=box, **solver_options
    )
