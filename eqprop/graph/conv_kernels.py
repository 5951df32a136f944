"""Fast CPU path of graph networks with ``conv2d`` couplings: preallocated buffers,
BLAS for the products, Numba for the patch and pooling loops.

The NumPy reference (:mod:`eqprop.graph.conv`, :mod:`eqprop.graph.reference`) allocates
every intermediate; this module computes the same map, vector field and parameter
gradient of a :class:`~eqprop.graph.model.GraphNetwork` with dense and ``conv2d``
couplings for one batch size, **allocation-free per iteration** (no array buffer is
created after construction; only small view objects):

* each coupling is an *op* (:class:`ConvOp`, :class:`DenseOp`) owning its work buffers,
  with three methods on activities ``(batch, n)`` (any row stride, unit column stride)
  and drives ``(batch, n)`` (C-contiguous, accumulated into):
  ``forward_add(a_src, u_dst)``, ``feedback_add(a_dst, u_src, scale)`` (right after
  ``forward_add`` at the same ``a_src``: a max-pool's routing is the argmax found
  there) and ``weight_gradient(a_src, a_dst)`` (:math:`\\partial F/\\partial W`, batch
  mean, the reference's :func:`eqprop.graph.conv.weight_gradient`);
* a convolution is im2col + GEMM on *position-major* patches (batch innermost, see
  :mod:`eqprop.graph.conv_loops`): :func:`transpose_into` turns the source activity
  into ``(C_in*H*W, batch)``, :func:`im2col_posmajor` (Numba) gathers the patches into
  ``cols`` (C_in * kh * kw, H_o * W_o * batch) (transposed; at stride 1 each patch row
  of an output row is one run of ``W_o * batch`` values, copied by a loop LLVM
  vectorises), ``np.matmul(cols.T, W2.T, out=z)`` (BLAS) convolves the whole batch at
  every position at once, :func:`pool_rows_vector_add` (Numba) pools ``z`` (kept in
  the GEMM's row layout, no transpose) straight into the target's drive and records
  the argmax routing; the feedback is :func:`unpool_rows_vector` (Numba),
  ``np.matmul(W2.T, g.T, out=back)`` (BLAS), the scatter-add
  :func:`col2im_posmajor_add` (Numba) into a transposed buffer and
  :func:`add_transposed` into the source's drive; the weight gradient is
  ``np.matmul(g.T, cols.T)``. The public state layout ``(batch, n)`` is unchanged: the
  transposes are the ops' private buffers (P-conv's ``h1 -> h2``, float32: the gather
  0.94 -> 0.17 ms and the scatter-add 0.96 -> 0.15 ms against the sample-major loops
  on runs of ``W_o = 8``, the transposes 0.06 ms); :attr:`ConvOp.block_bytes` bounds
  the patch buffers at large batches (blocks of output rows);
* couplings from the clamped input are evaluated once per batch (:meth:`FastMap.set_input`)
  into a constant drive (the input's convolution, pooled, plus the biases), as the
  dense kernels cache ``x W_1``;
* :class:`FastMap` evaluates the map / vector field of
  :func:`eqprop.graph.reference.fixed_point_map` / ``vector_field`` (hopfield and
  prototypical kinds, nudges inside / outside / clamp, squared and cross-entropy costs
  on the output state, cross-entropy on a softmax readout); :meth:`FastMap.relax`
  iterates it for fixed steps, :meth:`FastMap.solve` runs ``solvers``' Picard or whole-layer
  Gauss-Seidel (red-black) iteration on it with the solvers' per-sample stopping and
  :class:`solvers.SolveResult`, and :meth:`FastMap.contrast` is the rules' combine step
  (:func:`eqprop.graph.gradient.contrast`) on the ops.

Equal to the reference to rounding (tested in float64 at 1e-12: stride, padding, odd
sizes, overlapping pooling windows, every pooling, both kinds). Real float32/float64.

**The GPU seam**: :data:`OPS` maps a coupling type to its op class. A CUDA
implementation is one more module with op classes of the same three methods on device
buffers (and a ``FastMap`` whose elementwise layer update is a device kernel), selected
by a backend argument; nothing in the model or the reference changes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numba import njit

import solvers
from eqprop.graph import kernels as GK
from eqprop.graph import reference as R
from eqprop.graph.conv import conv_output_hw
from eqprop.graph.conv_loops import (
    add_transposed,
    col2im_posmajor_add,
    im2col_posmajor,
    pool_rows_vector_add,
    transpose_into,
    unpool_rows_vector,
)
from eqprop.graph.gradient import GraphGradient, _ordered
from eqprop.graph.model import Coupling, GraphNetwork
from eqprop.graph.pool import pool_output_hw
from solvers._bookkeeping import map_verdicts, new_records, reserve_row
from solvers._common import build_result
from solvers._kernels import clip_value

# The Numba loops imported above belong to eqprop.graph.conv_loops (its __all__ lists them).
__all__ = ["OPS", "ConvOp", "DenseOp", "FastMap", "block_groups", "fast_mismatch"]


# ----------------------------------------------------------------------------- Numba
@njit(cache=True)
def _activate(s, out, act):
    """out = rho(s), element-wise (batch, n)."""
    B, n = s.shape
    for r in range(B):
        for i in range(n):
            out[r, i] = GK._rho(s[r, i], act)


_HARD = GK._chain.ACT_HARD


@njit(cache=True)
def _hard_map_update(s, c0, u, out, hop, eps, has_box, lo, hi):
    """:func:`_layer_update`'s map of a hard-sigmoid layer without a nudge: the same
    operations with the branches on the kind, the nudge and the activation code hoisted
    out of the loops, which then vectorise (P-conv's first hidden layer, batch 20,
    float32: 0.6 -> 0.02 ms)."""
    B, n = u.shape
    for r in range(B):
        if hop:
            for i in range(n):
                v = s[r, c0 + i]
                dF = v - u[r, i] if (v >= 0.0 and v <= 1.0) else v
                y = v - eps * dF
                if has_box:
                    y = min(max(y, lo), hi)
                out[r, c0 + i] = y
        else:
            for i in range(n):
                p = u[r, i]
                y = 0.0 if p < 0.0 else (1.0 if p > 1.0 else p)
                if has_box:
                    y = min(max(y, lo), hi)
                out[r, c0 + i] = y


@njit(cache=True)
def _layer_update(s, c0, u, g, out, act, hop, field, eps, beta, nudged, inside, has_box, lo, hi):
    """One layer of the map (``field`` False) or vector field (True) of
    :func:`eqprop.graph.reference.fixed_point_map` / ``vector_field``: its columns
    ``[c0, c0 + n)`` of ``out`` (batch, n_state) from those of the state ``s`` (both
    C-contiguous: whole arrays, so that the loops see a unit stride), its drive ``u``
    (batch, n) and cost gradient ``g`` (read when ``nudged``)."""
    B, n = u.shape
    if act == _HARD and not field and not nudged:
        _hard_map_update(s, c0, u, out, hop, eps, has_box, lo, hi)
        return
    for r in range(B):
        for i in range(n):
            v = s[r, c0 + i]
            if hop:
                dF = v - GK._rhop(v, act) * u[r, i]
                if nudged:
                    dF += beta * g[r, i]
                if field:
                    out[r, c0 + i] = -dF
                else:
                    y = v - eps * dF
                    if has_box:
                        y = min(max(y, lo), hi)
                    out[r, c0 + i] = y
            else:
                p = u[r, i]
                if nudged and inside:
                    p -= beta * g[r, i]
                y = GK._rho(p, act)
                if has_box:
                    y = min(max(y, lo), hi)
                if nudged and not inside:
                    y -= beta * g[r, i]
                out[r, c0 + i] = y - v if field else y


@njit(cache=True)
def _times_rhop(g, s, c0, act):
    """``g *= rho'(s[:, c0:c0 + n])`` (``g`` (batch, n); ``s`` the whole state)."""
    B, n = g.shape
    for r in range(B):
        for i in range(n):
            g[r, i] *= GK._rhop(s[r, c0 + i], act)


@njit(cache=True)
def _damped_update(x, gx, active, a0, a1, damping, plain, clip_first, clip_again, lo, hi):
    """Columns ``[a0, a1)`` of the running samples: :math:`x \\leftarrow P(x + \\delta
    (v - x))` with ``v`` the map's value (projected first when ``clip_first``: a block's
    fresh value), ``P`` applied again when ``clip_again`` (over-relaxation); ``plain``:
    ``x <- v`` exactly (undamped Picard). ``damping`` in the state's dtype, as the
    solvers' driver computes it."""
    for b in range(x.shape[0]):
        if not active[b]:
            continue
        for i in range(a0, a1):
            v = gx[b, i]
            if clip_first:
                v = clip_value(v, lo[i], hi[i])
            if not plain:
                v = x[b, i] + damping * (v - x[b, i])
                if clip_again:
                    v = clip_value(v, lo[i], hi[i])
            x[b, i] = v


# ----------------------------------------------------------------------------- ops
class DenseOp:
    """A dense coupling on preallocated buffers (BLAS through ``np.matmul(out=)``)."""

    is_max = False  # no routing: its feedback never needs the forward product

    def __init__(self, c: Coupling, batch: int, n_src: int, n_dst: int, dtype: np.dtype):
        self.c = c
        self.tmp_f = np.empty((batch, n_dst), dtype=dtype)
        self.tmp_b = np.empty((batch, n_src), dtype=dtype)
        self.gW = np.empty((n_src, n_dst), dtype=dtype)
        self.gB = np.empty((n_dst, n_src), dtype=dtype) if c.feedback == "free" else None

    def forward_add(self, a_src: np.ndarray, u_dst: np.ndarray) -> None:
        np.matmul(a_src, self.c.W, out=self.tmp_f)
        np.add(u_dst, self.tmp_f, out=u_dst)

    def feedback_add(self, a_dst: np.ndarray, u_src: np.ndarray, scale: float) -> None:
        c = self.c
        if c.feedback in ("free", "random"):
            assert c.B is not None
            np.matmul(a_dst, c.B, out=self.tmp_b)
        else:
            np.matmul(a_dst, c.W.T, out=self.tmp_b)
        if scale != 1.0:
            np.multiply(self.tmp_b, scale, out=self.tmp_b)
        np.add(u_src, self.tmp_b, out=u_src)

    def weight_gradient(self, a_src: np.ndarray, a_dst: np.ndarray) -> np.ndarray:
        """:math:`-a_{src}^\\top a_{dst}/\\mathrm{batch}` (a buffer of the op: copy it)."""
        np.matmul(a_src.T, a_dst, out=self.gW)
        np.multiply(self.gW, -1.0 / a_src.shape[0], out=self.gW)
        return self.gW

    def feedback_gradient(self, a_src: np.ndarray, a_dst: np.ndarray) -> np.ndarray | None:
        if self.gB is None:
            return None
        np.matmul(a_dst.T, a_src, out=self.gB)
        np.multiply(self.gB, -1.0 / a_src.shape[0], out=self.gB)
        return self.gB


class ConvOp:
    """A ``conv2d`` coupling on preallocated buffers: im2col + GEMM (module docstring),
    position-major and blocked over output rows.

    The positions ``M = batch * H_o * W_o`` are ordered position-major, ``m = (i*W_o +
    j)*batch + b`` (:mod:`eqprop.graph.conv_loops`): the source activity is transposed
    to ``(C_in*H*W, batch)`` (``aT``), so that at stride 1 a patch row of one output row
    is one run of ``W_o * batch`` values. The patches are built for ``rows`` output rows
    at a time (a block of ``rows * W_o * batch`` positions, at most :attr:`block_bytes`
    of patches, at least one output row), each block's product taken right after its
    gather (forward) or before its scatter (feedback), so that the patch block is read
    from the cache the gather wrote it to rather than from memory.

    Buffers (``K = C_in * kh * kw``): ``cols`` and ``back`` (K * block positions),
    ``z`` and ``g`` (M, C_out), ``aT`` and ``outT`` (C_in*H*W, batch), ``index``
    (batch, n_dst) int64, ``pooled`` (batch, n_dst), ``gW`` and ``gW_block`` (C_out,
    K).
    """

    block_bytes = 1 << 23
    """Most bytes of one patch block (at least one output row is taken). It bounds the
    memory of ``cols`` and ``back`` at large batches (Laborieux et al.'s first
    128-channel layer at batch 128 would need 2 x 600 MB whole); at P-conv's and the
    Laborieux-style 28x28 net's sizes (4-4.5 MB of float32 patches) it is one block.
    Smaller blocks, to keep a block in the 2 MB L2 cache between its gather and its
    product, measured no faster (P-conv ``h1 -> h2``, float32: map 3.1-3.3 ms at 0.5, 1
    and 2 MB blocks against 2.9-3.1 ms whole): the product of a block of 1-2 output
    rows runs below the rate of the whole one."""

    def __init__(self, c: Coupling, batch: int, n_src: int, n_dst: int, dtype: np.dtype):
        spec = c.conv
        self.c = c
        O, C, kh, kw = c.W.shape
        H, W = spec.input_hw
        Ho, Wo = conv_output_hw((H, W), (kh, kw), spec.stride, spec.padding)
        if spec.pool is None:
            size, step, Hp, Wp = 1, 1, Ho, Wo
        else:
            size, step = spec.pool_size, spec.pool_step
            Hp, Wp = pool_output_hw((Ho, Wo), size, step)
        self.is_max = spec.pool == "max"
        self.geom = (C, H, W, kh, kw, spec.stride, spec.padding, Ho, Wo)
        self.pgeom = (O, Ho, Wo, size, step, Hp, Wp, 1, batch)  # position-major rows
        self.shape2 = (O, C * kh * kw)
        M, K = batch * Ho * Wo, C * kh * kw
        self.patch_shape = (K, M)  # of the whole patch matrix (the products' operands)
        per_row = K * Wo * batch * np.dtype(dtype).itemsize
        self.rows = max(1, min(Ho, self.block_bytes // per_row))
        self.blocks = [(i0, min(Ho, i0 + self.rows)) for i0 in range(0, Ho, self.rows)]
        n_block = K * self.rows * Wo * batch
        self._cols = np.empty(n_block, dtype=dtype)  # patches of one block (im2col_posmajor)
        self._back = np.empty(n_block, dtype=dtype)
        # per block: (i0, i1, patch view (K, m), rows [r0, r1) of z and g)
        self.block_views = []
        for i0, i1 in self.blocks:
            m = (i1 - i0) * Wo * batch
            cols = self._cols[: K * m].reshape(K, m)
            back = self._back[: K * m].reshape(K, m)
            self.block_views.append((i0, i1, cols, back, i0 * Wo * batch, i1 * Wo * batch))
        self.cols = self.block_views[0][2]
        self.back = self.block_views[0][3]
        self.z = np.empty((M, O), dtype=dtype)
        self.g = np.empty((M, O), dtype=dtype)
        self.aT = np.empty((n_src, batch), dtype=dtype)
        self.outT = np.empty((n_src, batch), dtype=dtype)
        self.index = np.zeros((batch, n_dst), dtype=np.int64)
        self.pooled = np.empty((batch, n_dst), dtype=dtype)
        self.gW = np.empty(c.W.shape, dtype=dtype)
        self.gW_block = np.empty(self.shape2, dtype=dtype)
        self.pool_scratch = (np.empty(O, dtype=dtype), np.empty(O, dtype=np.int64))
        self.flops_forward = 2 * M * K * O  # each of the three products

    @property
    def W2(self) -> np.ndarray:
        """``W`` as the (C_out, K) GEMM operand (a view: sees in-place updates)."""
        return self.c.W.reshape(self.shape2)

    def _convolve(self, a_src: np.ndarray) -> None:
        """``z`` = the convolution of ``a_src`` at every position (position-major),
        block by block: gather, then the block's product."""
        transpose_into(a_src, self.aT)
        W2T = self.W2.T
        for i0, i1, cols, _, r0, r1 in self.block_views:
            im2col_posmajor(self.aT, cols, *self.geom, i0, i1)
            np.matmul(cols.T, W2T, out=self.z[r0:r1])

    def forward_add(self, a_src: np.ndarray, u_dst: np.ndarray) -> None:
        self._convolve(a_src)
        pool_rows_vector_add(
            self.z, u_dst, self.index, self.is_max, *self.pgeom, *self.pool_scratch
        )

    def feedback_add(self, a_dst: np.ndarray, u_src: np.ndarray, scale: float) -> None:
        unpool_rows_vector(a_dst, self.index, self.g, self.is_max, *self.pgeom)
        self.outT[...] = 0.0
        W2T = self.W2.T
        for i0, i1, _, back, r0, r1 in self.block_views:
            np.matmul(W2T, self.g[r0:r1].T, out=back)
            col2im_posmajor_add(back, self.outT, *self.geom, i0, i1, scale)
        add_transposed(u_src, self.outT)

    def weight_gradient(self, a_src: np.ndarray, a_dst: np.ndarray) -> np.ndarray:
        """:math:`\\partial F/\\partial W` (C_out, C_in, kh, kw), batch mean (a buffer of
        the op: copy it): :math:`-\\sum_m g_m\\, \\mathrm{cols}_m^\\top / \\mathrm{batch}`
        summed block by block."""
        if self.is_max:  # the routing at a_src
            self._convolve(a_src)
            pool_rows_vector_add(
                self.z, self.pooled, self.index, True, *self.pgeom, *self.pool_scratch
            )
        else:
            transpose_into(a_src, self.aT)
        unpool_rows_vector(a_dst, self.index, self.g, self.is_max, *self.pgeom)
        g2 = self.gW.reshape(self.shape2)
        g2[...] = 0.0
        gathered = self.is_max and len(self.block_views) == 1  # cols hold a_src's patches
        for i0, i1, cols, _, r0, r1 in self.block_views:
            if not gathered:
                im2col_posmajor(self.aT, cols, *self.geom, i0, i1)
            np.matmul(self.g[r0:r1].T, cols.T, out=self.gW_block)
            np.add(g2, self.gW_block, out=g2)
        np.multiply(g2, -1.0 / a_src.shape[0], out=g2)
        return self.gW

    def feedback_gradient(self, a_src: np.ndarray, a_dst: np.ndarray) -> None:
        return None


OPS: dict[str, Any] = {"dense": DenseOp, "conv2d": ConvOp}
"""Op class per coupling type (the seam where a GPU module plugs in its own)."""


# ----------------------------------------------------------------------------- the map
def fast_mismatch(net: GraphNetwork) -> str | None:
    """Why :class:`FastMap` cannot run ``net`` (one line), or None when it can: it needs a
    ``conv2d`` coupling (dense-only graphs have their own fast paths), real float32 /
    float64 states, tied or scaled conv feedback, and a softmax readout (if any) fed by
    dense couplings from state layers."""
    if not any(c.type == "conv2d" for c in net.couplings):
        return "it has no conv2d coupling"
    if net.dtype.kind == "c":
        return f"its dtype {net.dtype.name} is complex (the fast conv path runs real states)"
    why = _readout_mismatch(net)
    if why is not None:
        return why
    for c in net.couplings:
        if c.type == "conv2d" and c.feedback not in ("tied", "scaled"):
            return f"coupling {c.name!r} has {c.feedback} feedback (the fast conv ops tie it)"
    return None


def _readout_mismatch(net: GraphNetwork) -> str | None:
    out = net.output_layer
    if out.role != "readout":
        return None
    for c in net.couplings:
        if c.target == out.name and (c.type != "dense" or c.source not in net.offsets):
            return (
                f"coupling {c.name!r} into the readout is not a dense coupling from a state "
                "layer (the fast conv path's readout takes those)"
            )
    return None


def block_groups(net: GraphNetwork, groups) -> tuple[tuple[str, ...], ...] | str:
    """``solvers.GaussSeidel`` groups of ``(start, stop)`` column ranges of ``net``'s
    state as groups of layer names, or why they are not (one line): :class:`FastMap`
    evaluates whole layers, so every range must be one state layer's columns."""
    by_cols = {tuple(net.offsets[la.name]): la.name for la in net.state_layers}
    named = []
    for grp in groups:
        names = []
        for r in grp:
            name = by_cols.get((int(r[0]), int(r[1])))
            if name is None:
                return (
                    f"the Gauss-Seidel range {tuple(r)} is not one layer's columns (the fast "
                    "map evaluates whole layers)"
                )
            names.append(name)
        named.append(tuple(names))
    return tuple(named)


class FastMap:
    """Map, vector field, relaxation and parameter gradient of ``net`` for batches of
    ``batch`` samples, on buffers allocated here once.

    Parameters
    ----------
    net : GraphNetwork
        Real float32/float64; dense and ``conv2d`` couplings; an ``output`` layer in
        the state, or a softmax ``readout`` fed by dense couplings from state layers
        (cross-entropy on its logits :math:`z = b + \\sum_c a_{src} W_c`; its error
        :math:`\\beta (\\mathrm{softmax}(z) - d) W_c^\\top` nudges the source layers,
        times :math:`\\rho'` for the hopfield kind, as the reference). Parameters are
        read from ``net`` at every call (in-place updates are seen; replacing ``c.W`` by
        an array of another shape is not).
    batch : int

    Notes
    -----
    Call :meth:`set_input` once per batch (the input couplings' drive is cached), then
    :meth:`map` / :meth:`field` / :meth:`relax` any number of times.
    """

    def __init__(self, net: GraphNetwork, batch: int):
        dt = GK._real_dtype(net)
        if dt.kind == "c":
            raise ValueError(
                f"the fast conv path runs real float32/float64 states; this network is "
                f"{dt.name}: use eqprop.graph.reference (or the graph kernels, dense "
                "couplings only) for complex states"
            )
        why = _readout_mismatch(net)
        if why is not None:
            raise ValueError(why)
        if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        self.net, self.batch, self.dtype = net, int(batch), dt
        B = self.batch
        off = net.offsets
        self.off = off
        self.U = {la.name: np.zeros((B, la.size), dtype=dt) for la in net.state_layers}
        self.drive = {la.name: np.zeros((B, la.size), dtype=dt) for la in net.state_layers}
        # activities, C-contiguous (the Numba patch loops vectorise on contiguous rows)
        self.A = {la.name: np.empty((B, la.size), dtype=dt) for la in net.state_layers}
        out = net.output_layer
        self.readout = out.role == "readout"
        self.readout_cs = [c for c in net.couplings if self.readout and c.target == out.name]
        if self.readout:  # dC/ds lands on the readout's sources
            self.G = {
                c.source: np.zeros((B, off[c.source][1] - off[c.source][0]), dtype=dt)
                for c in self.readout_cs
            }
            self.Z = np.zeros((B, out.size), dtype=dt)
            self.Tz = np.zeros((B, out.size), dtype=dt)
        else:
            self.out_cols = off[out.name]
            self.G = {out.name: np.zeros((B, out.size), dtype=dt)}
        self.zero_g = np.zeros((B, 1), dtype=dt)
        self.buffers = (np.zeros((B, net.n_state), dtype=dt), np.zeros((B, net.n_state), dtype=dt))
        self.input_ops: list[tuple[Coupling, Any]] = []
        self.inner_ops: list[tuple[Coupling, Any, float]] = []
        for c in net.couplings:
            if c in self.readout_cs:
                continue
            src, dst = net.layer(c.source), net.layer(c.target)
            op = OPS[c.type](c, B, src.size, dst.size, dt)
            if src.role == "input":
                self.input_ops.append((c, op))
            else:
                self.inner_ops.append((c, op, c.gamma if c.feedback == "scaled" else 1.0))
        self.layers = [
            (
                la.name,
                off[la.name],
                GK._ACT_CODE[la.activation],
                la.box is not None,
                0.0 if la.box is None else la.box[0],
                1.0 if la.box is None else la.box[1],
            )
            for la in net.state_layers
        ]
        self.x: np.ndarray | None = None
        self.last_residual = np.full(self.batch, np.nan)

    # ------------------------------------------------------------------ per batch
    def set_input(self, x: np.ndarray) -> None:
        """Cache the constant drive of a batch: biases plus every coupling from the input
        (its convolution and pooling, or ``x W``), once for all phases of the batch."""
        net = self.net
        x = R._batch(net, x, net.n_in, "x", self.batch)
        for la in net.state_layers:
            d = self.drive[la.name]
            d[...] = 0.0
            if la.bias is not None:
                d += la.bias_vector()
        for c, op in self.input_ops:
            op.forward_add(x, self.drive[c.target])
        self.x = x

    def _activities(self, s: np.ndarray) -> dict[str, np.ndarray]:
        assert self.x is not None, "call set_input first"
        acts = {self.net.input_layer.name: self.x}
        for name, (a, b), act, *_ in self.layers:
            if self.net.kind == "hopfield":
                _activate(s[:, a:b], self.A[name], act)
            else:
                np.copyto(self.A[name], s[:, a:b])
            acts[name] = self.A[name]
        return acts

    def _drives(self, acts: dict[str, np.ndarray], block, routed) -> None:
        """Drives ``U`` of the layers in ``block`` (None: all); ``routed``: indices of the
        max-pool ops whose routing (``index``) is that of the current source activity
        (their feedback then skips the forward convolution), updated here."""
        for name, u in self.U.items():
            if block is None or name in block:
                np.copyto(u, self.drive[name])
        for k, (c, op, scale) in enumerate(self.inner_ops):
            fwd = block is None or c.target in block
            back = block is None or c.source in block
            if fwd or (back and op.is_max and k not in routed):
                op.forward_add(acts[c.source], self.U[c.target])  # (a drive not read: harmless)
                routed.add(k)
            if back:
                op.feedback_add(acts[c.target], self.U[c.source], scale)

    def _logits(self, acts) -> np.ndarray:
        """The readout's logits into ``Z``: its bias plus every readout coupling's
        ``a_src W``."""
        Z = self.Z
        bias = self.net.output_layer.bias
        if bias is None:
            Z[...] = 0.0
        else:
            Z[...] = bias
        for c in self.readout_cs:
            np.matmul(acts[c.source], c.W, out=self.Tz)
            np.add(Z, self.Tz, out=Z)
        return Z

    def _cost_gradient(self, s: np.ndarray, d: np.ndarray, acts) -> None:
        """:math:`\\partial C/\\partial s` into the buffers ``G`` (by nudged layer)."""
        if not self.readout:
            (G,) = self.G.values()
            a, b = self.out_cols
            if self.net.cost == "squared":
                np.subtract(s[:, a:b], d, out=G)
            else:
                np.copyto(G, s[:, a:b])
                GK._softmax_error_real(G, d)  # real: the fast conv path refuses complex states
            return
        Z = self._logits(acts)
        GK._softmax_error_real(Z, d)  # softmax(z) - d
        for c in self.readout_cs:
            np.matmul(Z, c.W.T, out=self.G[c.source])
        if self.net.kind == "hopfield":  # the chain rule through rho of the sources
            for name, (a, _b), act, *_ in self.layers:
                if name in self.G:
                    _times_rhop(self.G[name], s, a, act)

    def _checked(self, s, beta, d, nudge) -> np.ndarray | None:
        """The checks of one evaluation: ``nudge``, targets, the shape and dtype of ``s``;
        returns ``d`` validated (None when not given)."""
        net = self.net
        R._nudge(net, nudge, d, beta)
        if d is None:
            if beta != 0:
                raise ValueError("targets d are needed when beta != 0")
        else:
            d = R._batch(net, d, net.n_out, "d", self.batch)
        if s.shape != (self.batch, net.n_state) or s.dtype != self.dtype:
            raise ValueError(
                f"s must be a ({self.batch}, {net.n_state}) {self.dtype.name} array, got "
                f"{s.shape} {s.dtype}"
            )
        return d

    def _evaluate(self, s, out, beta, d, eps, nudge, field) -> np.ndarray:
        d = self._checked(s, beta, d, nudge)
        return self._evaluate_block(s, out, beta, d, eps, nudge, field, None, set())

    def _evaluate_block(self, s, out, beta, d, eps, nudge, field, block, routed) -> np.ndarray:
        """The map / field of the layers in ``block`` (a set of names; None: all) into
        their columns of ``out`` (the others are not written); inputs checked by the
        caller (:meth:`_checked`); ``routed`` as in :meth:`_drives`."""
        net = self.net
        acts = self._activities(s)
        self._drives(acts, block, routed)
        nudged = beta != 0
        out_name = net.output_layer.name
        has_out = block is None or out_name in block
        if nudged and (block is None or any(n in block for n in self.G)):
            self._cost_gradient(s, d, acts)
        hop = net.kind == "hopfield"
        inside = nudge != "outside"
        for name, (a, _b), act, has_box, lo, hi in self.layers:
            if block is not None and name not in block:
                continue
            here = nudged and name in self.G
            _layer_update(
                s,
                a,
                self.U[name],
                self.G[name] if here else self.zero_g,
                out,
                act,
                hop,
                field,
                eps,
                beta,
                here,
                inside,
                has_box,
                lo,
                hi,
            )
        if nudge == "clamp" and has_out:
            a, b = self.out_cols
            if field:
                np.subtract(d, s[:, a:b], out=out[:, a:b])
                np.divide(out[:, a:b], eps, out=out[:, a:b])
            else:
                out[:, a:b] = d
        return out

    # ------------------------------------------------------------------ public
    def map(self, s, out=None, *, beta=0.0, d=None, eps=0.5, nudge="inside") -> np.ndarray:
        """:math:`g(s)` into ``out`` (allocated if None), as
        :func:`eqprop.graph.reference.fixed_point_map`."""
        out = np.empty_like(s) if out is None else out
        return self._evaluate(s, out, beta, d, eps, nudge, False)

    def field(self, s, out=None, *, beta=0.0, d=None, eps=0.5, nudge="inside") -> np.ndarray:
        """:math:`ds/dt` into ``out``, as :func:`eqprop.graph.reference.vector_field`."""
        out = np.empty_like(s) if out is None else out
        return self._evaluate(s, out, beta, d, eps, nudge, True)

    def relax(
        self,
        s0: np.ndarray | None,
        steps: int,
        *,
        beta: float = 0.0,
        d: np.ndarray | None = None,
        eps: float = 0.5,
        nudge: str = "inside",
        damping: float = 1.0,
        atol: float | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, int, float]:
        """Iterate :math:`s \\leftarrow s + \\delta\\,(P(g(s)) - s)` (``damping`` δ; 1: the
        plain map) from ``s0`` (None: zeros) for ``steps`` iterations, or until
        :math:`\\max|P(g(s)) - s| \\le` ``atol``.

        ``bounds`` ``(lo, hi)``: :math:`P` clips the map's value onto it (and the damped
        state again when ``damping > 1``), as ``solvers.Picard`` does with its
        ``bounds``; None: :math:`P` is the identity (the map's own per-layer boxes
        still apply). ``s0`` is used as given (not projected).

        Returns ``(s, iterations, residual)``: ``s`` is one of the map's two state
        buffers (copy it to keep it past the next call), ``residual`` the last
        :math:`\\max|P(g(s)) - s|` over the batch (computed only when ``atol`` is given;
        else NaN). :attr:`last_residual` (batch,) holds that residual per sample for the
        last iteration (always computed: for a fixed-steps run it is the residual of the
        state before the last update, the report of ``method="fused"``).
        """
        cur, nxt = self.buffers
        if s0 is None:
            cur[...] = 0.0
        else:
            np.copyto(cur, s0)
        res = float("nan")
        it = 0
        steps = int(steps)
        self.last_residual = np.full(self.batch, np.nan)
        for step in range(1, steps + 1):
            it = step
            self._evaluate(cur, nxt, beta, d, eps, nudge, False)
            if bounds is not None:
                np.clip(nxt, bounds[0], bounds[1], out=nxt)
            need = atol is not None or step == steps
            if damping != 1.0:
                nxt -= cur
                if need:
                    self.last_residual = np.max(np.abs(nxt), axis=1)
                nxt *= damping
                nxt += cur
                if bounds is not None and damping > 1.0:
                    np.clip(nxt, bounds[0], bounds[1], out=nxt)
            elif need:
                cur -= nxt  # cur is overwritten next: use it for the residual
                self.last_residual = np.max(np.abs(cur), axis=1)
            if need:
                res = float(np.max(self.last_residual))
            cur, nxt = nxt, cur
            if atol is not None and res <= atol:
                break
        return cur, it, res

    def solve(
        self,
        s0: np.ndarray,
        method: Any,
        *,
        beta: float = 0.0,
        d: np.ndarray | None = None,
        eps: float = 0.5,
        nudge: str = "inside",
        atol: float = 1e-6,
        rtol: float = 0.0,
        max_iter: int = 1000,
        fixed_steps: int | None = None,
        bounds: tuple[float, float] | None = None,
        divergence_bound: float = 1e8,
        raise_on_failure: bool = False,
    ):
        """``solvers.solve_fixed_point(g, s0, method=method, ...)`` of this map, with the
        solvers' semantics and result, on the fast kernels.

        ``method`` is ``solvers.Picard`` (damped, :math:`x_{k+1} = P((1 - \\delta) x_k +
        \\delta P(g(x_k)))`) or ``solvers.GaussSeidel`` whose ranges are whole layers
        (:func:`block_groups`; red-black parity sweeps group the odd and the even
        layers): group by group, :math:`x_S \\leftarrow P((1 - \\delta) x_S + \\delta
        P(g(x)_S))`, the first group from the full map (whose residual is recorded), the
        others from the block map of their layers (only the couplings into or out of
        them; a max pool's routing at an unchanged source is reused). As in
        ``solvers``: sample ``b`` converged at iteration ``k`` when :math:`r_k = \\max_i
        |P(g(x_k))_i - x_{k,i}| \\le` ``atol + rtol * max_i |x_{k,i}|`` and then
        stops (its state frozen at :math:`x_k`); with ``fixed_steps`` every sample runs
        that many updates and ``converged`` reports the final residual; a non-finite
        residual or one above ``divergence_bound`` (the solvers' default) stops the
        sample as failed, never converged (``raise_on_failure``: SolverFailure).
        ``bounds``: scalars ``(lo, hi)`` (the network's common box), None: none.

        Returns
        -------
        solvers.SolveResult
            ``x`` (a new array), per-sample ``converged``, ``n_iter``, ``failed``,
            ``failure_iter``; ``residual`` / ``residual_rel`` (n_iter_max + 1, batch),
            NaN after a sample stopped; ``nfev`` full-map and ``nfev_block`` block-map
            evaluations (one per layer range, as ``solvers`` counts ``g_block`` calls);
            no energy (``observed`` None).
        """
        if isinstance(method, solvers.GaussSeidel):
            if method.last_group_independent:
                raise ValueError(
                    "the fast conv map does not reuse the last group's block values "
                    "(GaussSeidel(last_group_independent=True)); pass False"
                )
            named = block_groups(self.net, method.groups)
            if isinstance(named, str):
                raise ValueError(named)
            method.check_partition(self.net.n_state)
            groups = [({n for n in grp}, [self.off[n] for n in grp]) for grp in named]
        elif isinstance(method, solvers.Picard):
            groups = None
        else:
            raise ValueError(
                f"the fast conv map runs solvers.Picard or solvers.GaussSeidel, got {method!r}"
            )
        d = self._checked(s0, beta, d, nudge)
        if fixed_steps is not None and (isinstance(fixed_steps, bool) or fixed_steps < 1):
            raise ValueError(f"fixed_steps must be None or an integer >= 1, got {fixed_steps!r}")
        if isinstance(max_iter, bool) or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        dt, B, n = self.dtype, self.batch, self.net.n_state
        x = np.array(s0, dtype=dt, order="C", copy=True)
        if not np.isfinite(x).all():
            raise ValueError("s0 contains NaN or infinite values")
        has_bounds = bounds is not None
        lo = np.full(n, -np.inf if bounds is None else bounds[0], dtype=dt)
        hi = np.full(n, np.inf if bounds is None else bounds[1], dtype=dt)
        if has_bounds:
            np.clip(x, lo, hi, out=x)
        gx = self.buffers[0]
        limit = int(fixed_steps) if fixed_steps is not None else int(max_iter)
        fs = -1 if fixed_steps is None else limit
        control = (float(atol), float(rtol), limit, fs, float(divergence_bound))
        res, rel, _, _, n_iter, conv, failed, fail_iter, active = new_records(B, limit, False)
        damping = float(method.damping)
        damp_t = dt.type(damping)
        again = has_bounds and damping > 1.0
        nfev = nfev_block = 0
        k = 0
        t0 = time.perf_counter()
        while True:
            routed: set[int] = set()
            self._evaluate_block(x, gx, beta, d, eps, nudge, False, None, routed)
            nfev += 1
            res, rel = reserve_row(res, rel, k, limit)
            records = (n_iter, conv, failed, fail_iter)
            if map_verdicts(x, gx, active, k, res, rel, control, has_bounds, lo, hi, *records) == 0:
                break
            if groups is None:
                _damped_update(x, gx, active, 0, n, damp_t, damping == 1.0, False, again, lo, hi)
            else:
                for q, (names, cols) in enumerate(groups):
                    if q > 0:
                        self._evaluate_block(x, gx, beta, d, eps, nudge, False, names, routed)
                        nfev_block += len(cols)
                    for a, b in cols:
                        _damped_update(
                            x, gx, active, a, b, damp_t, False, q > 0 and has_bounds, again, lo, hi
                        )
                    for j, (c, _, _) in enumerate(self.inner_ops):
                        if c.source in names:  # its routing is that of the old source
                            routed.discard(j)
            k += 1
        wall = time.perf_counter() - t0
        out = (
            res[: k + 1].copy(),
            rel[: k + 1].copy(),
            np.zeros((0, B)),
            np.zeros(0, dtype=np.int64),
            n_iter,
            conv,
            failed,
            fail_iter,
            nfev,
            nfev_block,
            x,
            np.zeros(B, dtype=np.int64),  # n_fallback, fallback_iter: Anderson's only
            np.full(B, -1, dtype=np.int64),
        )
        return build_result(
            out=out,
            fixed_steps=fixed_steps,
            do_observe=False,
            wall_time=wall,
            method=f"{method.describe()} on the conv fast map",
            raise_on_failure=raise_on_failure,
            extras=("n_fallback", "fallback_iter"),
        )

    def contrast(self, states, betas, coeffs, d=None) -> GraphGradient:
        """:math:`\\sum_k c_k\\,\\partial F/\\partial\\theta(s_k)`, batch mean, by parameter
        name: :func:`eqprop.graph.gradient.contrast` (the rules' combine step) on the fast
        ops (``d``: the targets, read by a readout's terms, which depend on
        :math:`\\beta_k`; with the output in the state the terms do not). Same terms in
        the same order as the reference (equal to rounding: the products' summation
        order). A :class:`~eqprop.graph.gradient.GraphGradient`."""
        if not (len(states) == len(betas) == len(coeffs)) or len(states) == 0:
            raise ValueError("states, betas and coeffs must be non-empty and of equal length")
        total: dict[str, np.ndarray] = {}
        for s, b, c in zip(states, betas, coeffs, strict=True):
            s = np.ascontiguousarray(s, dtype=self.dtype)
            for name, g in self.parameter_gradient(s, d, float(b)).items():
                term = self.dtype.type(c) * g
                total[name] = term if name not in total else total[name] + term
        return _ordered(self.net, total)

    def parameter_gradient(self, s: np.ndarray, d=None, beta: float = 0.0) -> dict[str, np.ndarray]:
        """:math:`\\partial F/\\partial\\theta(s, \\beta)` by parameter name, batch mean, as
        :func:`eqprop.graph.reference.parameter_gradient` (new arrays). ``d`` and
        ``beta`` matter only with a readout: its couplings and bias get
        :math:`\\beta\\,\\partial C/\\partial\\theta` (zero at ``beta = 0``)."""
        acts = self._activities(s)
        grads: dict[str, np.ndarray] = {}
        for c, op in self.input_ops:
            grads[f"{c.name}.W"] = op.weight_gradient(acts[c.source], acts[c.target]).copy()
        for c, op, _ in self.inner_ops:
            grads[f"{c.name}.W"] = op.weight_gradient(acts[c.source], acts[c.target]).copy()
            gB = op.feedback_gradient(acts[c.source], acts[c.target])
            if gB is not None:
                grads[f"{c.name}.B"] = gB.copy()
        err = None
        if self.readout:
            if d is None:
                if beta != 0:
                    raise ValueError("targets d are needed when beta != 0")
                d = np.zeros((self.batch, self.net.n_out), dtype=self.dtype)
            d = R._batch(self.net, d, self.net.n_out, "d", self.batch)
            Z = self._logits(acts)
            GK._softmax_error_real(Z, d)
            err = self.dtype.type(beta) * Z
            for c in self.readout_cs:
                grads[f"{c.name}.W"] = acts[c.source].T @ err / self.batch
        grads.update(R.bias_gradients(self.net, acts, err))
        return grads
