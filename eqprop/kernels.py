"""Numba kernels of the layered networks (energies, primitive functions, maps, gradients).

Everything here works on batched states and reads the network from three arrays:

``theta``
    all parameters, flat, C-contiguous, the network's dtype: ``W_1 .. W_L, b_1 .. b_L``
    (``W_l`` row-major ``(sizes[l-1], sizes[l])``).
``lay``
    int64 description built by :func:`make_layout`:
    ``[kind, activation, cost, nudge, L, nS, n_state, n_out | sizes[0..L] |
    woff[1..L] | boff[1..L] | soff[0..nS]]`` with codes kind 0 = hopfield,
    1 = prototypical; activation 0 = hardsigmoid, 1 = sigmoid, 2 = tanh,
    3 = shifted-sigmoid (``1 / (1 + exp(-4 (s - 1/2)))``); cost 0 = squared,
    1 = cross-entropy; nudge 0 = inside, 1 = outside, 2 = output clamped to the target.
    ``nS`` is the number of layers in the state (``L``, or ``L - 1`` with a cross-entropy readout).
``sc``
    scalars in the network's dtype: ``[beta, eps]``.

The solver-facing functions (:func:`fixed_point_map`, :func:`vector_field`,
:func:`fixed_point_block`, :func:`observe_energy`) take
``args = (theta, lay, drive, target, sc, work)`` where ``drive = x W_1 + b_1`` is the
input's contribution, computed once per phase (:func:`input_drive`), ``target`` the
``(batch, n_out)`` targets and ``work`` a scratch buffer from :func:`make_work`; they
allocate nothing per call. All kernels are ``@njit(cache=True)`` without fastmath and are
compiled once per dtype; matrix products go through ``np.dot`` (BLAS) on C-contiguous
blocks.

Smooth activations (sigmoid, shifted sigmoid, tanh) are evaluated once per unit and
step, together with their derivative (:math:`\\rho' = g\\,\\rho(1-\\rho)` for the
sigmoids, :math:`1-\\rho^2` for tanh, from the cached value), in row loops
(:func:`rho_row`, :func:`rho_drho_row`). In float32 these loops use the float32
exponential :func:`_exp32` / :func:`_expm1_32` below, written so that LLVM vectorises
them (no libm call; Numba's SVML route is not available with this llvmlite); in float64
they call ``np.exp`` / ``np.tanh`` as before. The hard sigmoid never goes through them.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from solvers._bookkeeping import map_verdicts, new_records, reserve_row
from solvers._kernels import clip_value

HDR = 8
KIND_HOPFIELD, KIND_PROTO = 0, 1
ACT_HARD, ACT_SIGMOID, ACT_TANH, ACT_SHIFTED = 0, 1, 2, 3
COST_SQUARED, COST_CE = 0, 1
NUDGE_INSIDE, NUDGE_OUTSIDE, NUDGE_CLAMP = 0, 1, 2
MODE_MAP, MODE_FIELD, MODE_GRAD = 0, 1, 2


def make_layout(kind, act, cost, nudge, sizes, woff, boff, soff) -> np.ndarray:
    """Build the int64 ``lay`` array (see module docstring)."""
    L = len(sizes) - 1
    nS = len(soff) - 1
    head = [kind, act, cost, nudge, L, nS, soff[-1], sizes[-1]]
    return np.array(head + list(sizes) + list(woff) + list(boff) + list(soff), dtype=np.int64)


@njit(cache=True)
def _size(lay, l):
    return lay[HDR + l]


@njit(cache=True)
def _woff(lay, l):
    return lay[HDR + lay[4] + 1 + l - 1]


@njit(cache=True)
def _boff(lay, l):
    return lay[HDR + 2 * lay[4] + 1 + l - 1]


@njit(cache=True)
def _soff(lay, l):
    """Column offset of state layer l (1-based); l = nS + 1 gives n_state."""
    return lay[HDR + 3 * lay[4] + 1 + l - 1]


@njit(cache=True)
def _W(theta, lay, l):
    n_in = _size(lay, l - 1)
    n_out = _size(lay, l)
    o = _woff(lay, l)
    return theta[o : o + n_in * n_out].reshape((n_in, n_out))


@njit(cache=True)
def _b(theta, lay, l):
    o = _boff(lay, l)
    return theta[o : o + _size(lay, l)]


@njit(cache=True)
def _block(buf, base, B, n):
    """Contiguous (B, n) view of buf[base : base + B*n]."""
    return buf[base : base + B * n].reshape((B, n))


def make_work(lay: np.ndarray, batch: int, dtype) -> np.ndarray:
    """Scratch buffer for the solver-facing kernels.

    Layout (``B = batch``, ``nmax`` the largest non-input layer): activities ``A``
    (``B n_state``), inputs ``P`` (``B n_state``), three ``B nmax`` temporaries, and the
    derivatives ``rho'(s)`` of a smooth Hopfield network (``B n_state``, see
    :func:`_dact_block`).
    """
    L, n_state = int(lay[4]), int(lay[6])
    nmax = int(max(lay[HDR + 1 : HDR + L + 1]))  # largest non-input layer
    return np.empty(batch * (3 * n_state + 3 * nmax), dtype=dtype)


@njit(cache=True)
def _dact_block(work, B, n_state, nmax):
    """The ``rho'(s)`` region of ``work`` (last ``B n_state`` entries, see make_work)."""
    base = B * (2 * n_state + 3 * nmax)
    return work[base : base + B * n_state]


# --------------------------------------------------------------------------- activations
@njit(cache=True)
def _act_into(src, dst, act):
    """dst = rho(src) elementwise (2-D, same shape)."""
    B, n = src.shape
    if act != ACT_HARD:
        for b in range(B):
            rho_row(src[b], dst[b], act)
        return
    for b in range(B):
        for i in range(n):
            dst[b, i] = _rho(src[b, i], act)


@njit(cache=True)
def _rho(v, act):
    """rho(v): clip(v, 0, 1), 1/(1+exp(-v)), tanh(v) or 1/(1+exp(-4(v-1/2)))."""
    if act == ACT_HARD:
        return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)
    elif act == ACT_SIGMOID:
        return 1.0 / (1.0 + np.exp(-v))
    elif act == ACT_SHIFTED:
        return 1.0 / (1.0 + np.exp(-4.0 * (v - 0.5)))
    return np.tanh(v)


@njit(cache=True)
def _rhop(v, act):
    """rho'(v); hardsigmoid: 1 on the closed interval [0, 1], else 0."""
    if act == ACT_HARD:
        return 1.0 if (v >= 0.0 and v <= 1.0) else 0.0
    elif act == ACT_SIGMOID or act == ACT_SHIFTED:
        e = _rho(v, act)
        return (1.0 if act == ACT_SIGMOID else 4.0) * e * (1.0 - e)
    t = np.tanh(v)
    return 1.0 - t * t


# --------------------------------------------------------------------------- float32 exp
# Vectorisable float32 exponential: x = n ln2 + r with n = round(x / ln2) and
# |r| <= ln2/2 (Cody-Waite: ln2 split into a 9-bit head, so n * head is exact, and a
# tail), exp(r) by its Taylor polynomial of degree 7 (truncation < 6e-9 relative, below
# half an ulp), 2**n written into the exponent bits. Measured against float64 ``np.exp``
# on 2e6 points of [-87, 87]: at most 1.2 ulp. All constants are float32 so that no
# operation is promoted to float64, and there is no libm call: LLVM vectorises loops
# over these functions (8 lanes of AVX2 here). Arguments are clamped to [-87, 87], so that
# exp and 1 / (1 + exp) stay normal numbers: a subnormal result costs a microcode assist
# (measured: a row of saturated shifted-sigmoid units took 8 ns per unit instead of 0.5);
# below the clamp a sigmoid returns 1.6e-38 instead of a smaller number. NaN is handled
# by the callers (they return NaN for NaN).
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_F4 = np.float32(4.0)
_LOG2E = np.float32(1.0 / np.log(2.0))
_LN2_HI = np.float32(0.693359375)  # 355/512: n * _LN2_HI is exact for |n| < 2**15
_LN2_LO = np.float32(np.log(2.0) - 0.693359375)
_ROUND = np.float32(1.5 * 2.0**23)  # (t + _ROUND) - _ROUND rounds t to an integer
_XMIN = np.float32(-87.0)  # n >= -126: 2**n normal
_XMAX = np.float32(87.0)  # 1 / (1 + exp(87)) = 1.6e-38 is still a normal float32
_C2, _C3, _C4, _C5, _C6, _C7 = (np.float32(1.0 / f) for f in (2, 6, 24, 120, 720, 5040))


@intrinsic
def _pow2i_f32(typingctx, n):
    """``2**n`` (float32) for an integer-valued float32 ``n`` in [-126, 127]: the biased
    exponent ``n + 127`` shifted into the exponent field."""
    if n != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        k = builder.fptosi(args[0], i32)
        k = builder.add(k, ir.Constant(i32, 127))
        k = builder.shl(k, ir.Constant(i32, 23))
        return builder.bitcast(k, ir.FloatType())

    return types.float32(types.float32), codegen


@njit(cache=True, error_model="numpy")
def _reduce32(x):
    """``(n, r)`` with ``x = n ln2 + r``, ``|r| <= ln2/2`` after clamping x to [-87, 87]."""
    if not x > _XMIN:  # also NaN (the callers restore NaN)
        x = _XMIN
    if x > _XMAX:
        x = _XMAX
    n = (x * _LOG2E + _ROUND) - _ROUND
    r = (x - n * _LN2_HI) - n * _LN2_LO
    return n, r


@njit(cache=True, error_model="numpy")
def _exp32(x):
    """float32 ``exp(x)`` (at most 1.2 ulp from the rounded exact value on [-87, 87])."""
    n, r = _reduce32(x)
    p = _F1 + r * (_F1 + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * (_C6 + r * _C7))))))
    return p * _pow2i_f32(n)


@njit(cache=True, error_model="numpy")
def _exp32_plus(y, c):
    """float32 ``exp(y + c)`` for a constant ``c``, without rounding ``y + c``: the
    reduction is ``r = ((y - n ln2_hi) + c) - n ln2_lo``, so the error stays a few ulp
    however large ``|y|`` is (rounding ``y + c`` first would add ``|y + c|`` ulp).
    The shifted sigmoid's ``exp(-4 (v - 1/2)) = exp(-4 v + 2)`` (``-4 v`` is exact)."""
    if not y > _XMIN - c:  # also NaN (the callers restore NaN)
        y = _XMIN - c
    if y > _XMAX - c:
        y = _XMAX - c
    n = ((y + c) * _LOG2E + _ROUND) - _ROUND
    r = ((y - n * _LN2_HI) + c) - n * _LN2_LO
    p = _F1 + r * (_F1 + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * (_C6 + r * _C7))))))
    return p * _pow2i_f32(n)


@njit(cache=True, error_model="numpy")
def _expm1_32(x):
    """float32 ``exp(x) - 1``, accurate in relative terms for ``x >= 0`` (also near 0):
    ``2**n expm1(r) + (2**n - 1)``, both terms of one sign, ``expm1(r)`` by its Taylor
    polynomial of degree 7 (truncation < 2e-8 relative)."""
    n, r = _reduce32(x)
    q = r * (_F1 + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * (_C6 + r * _C7))))))
    sc = _pow2i_f32(n)
    return sc * q + (sc - _F1)


@njit(cache=True, error_model="numpy")
def _sigmoid32(v):
    """float32 ``1 / (1 + exp(-v))``; NaN for NaN (within 2.5 ulp)."""
    y = _F1 / (_F1 + _exp32(-v))
    return y if v == v else v


@njit(cache=True, error_model="numpy")
def _shifted32(v):
    """float32 ``1 / (1 + exp(-4 (v - 1/2)))``; NaN for NaN (within 4 ulp)."""
    y = _F1 / (_F1 + _exp32_plus(-_F4 * v, _F2))
    return y if v == v else v


@njit(cache=True, error_model="numpy")
def _tanh32(v):
    """float32 ``tanh(v) = sign(v) e / (e + 2)``, ``e = expm1(2|v|)``; NaN for NaN."""
    e = _expm1_32(_F2 * abs(v))
    t = e / (e + _F2)
    t = t if v >= 0 else -t
    return t if v == v else v


# ----------------------------------------------------------------- smooth activation rows
@njit(cache=True, error_model="numpy")
def _rho_row_f32(src, dst, act):
    n = src.shape[0]
    if act == ACT_SIGMOID:
        for i in range(n):
            dst[i] = _sigmoid32(src[i])
    elif act == ACT_SHIFTED:
        for i in range(n):
            dst[i] = _shifted32(src[i])
    else:
        for i in range(n):
            dst[i] = _tanh32(src[i])


@njit(cache=True, error_model="numpy")
def _rho_drho_row_f32(src, a, da, act):
    n = src.shape[0]
    if act == ACT_SIGMOID:
        for i in range(n):
            y = _sigmoid32(src[i])
            a[i] = y
            da[i] = y * (_F1 - y)
    elif act == ACT_SHIFTED:
        for i in range(n):
            y = _shifted32(src[i])
            a[i] = y
            da[i] = _F4 * y * (_F1 - y)
    else:
        for i in range(n):
            t = _tanh32(src[i])
            a[i] = t
            da[i] = _F1 - t * t


@njit(cache=True)
def _rho_row_f64(src, dst, act):
    for i in range(src.shape[0]):
        dst[i] = _rho(src[i], act)


@njit(cache=True)
def _rho_drho_row_f64(src, a, da, act):
    """The arithmetic of :func:`_rho` / :func:`_rhop`, rho evaluated once."""
    n = src.shape[0]
    if act == ACT_TANH:
        for i in range(n):
            t = np.tanh(src[i])
            a[i] = t
            da[i] = 1.0 - t * t
    else:
        g = 1.0 if act == ACT_SIGMOID else 4.0
        for i in range(n):
            e = _rho(src[i], act)
            a[i] = e
            da[i] = g * e * (1.0 - e)


def rho_row(src, dst, act):  # pragma: no cover - the Python stub of a Numba overload
    """``dst[i] = rho(src[i])`` for a smooth activation (1-D arrays, same length).

    Numba-only (called from kernels). float32: :func:`_sigmoid32` / :func:`_tanh32`
    (vectorised, within 4 ulp of the exact value); float64: ``np.exp`` / ``np.tanh``
    with the arithmetic of :func:`_rho`.
    """
    raise NotImplementedError("rho_row is only callable from Numba kernels")


def rho_drho_row(src, a, da, act):  # pragma: no cover - the Python stub of a Numba overload
    """``a = rho(src)``, ``da = rho'(src)`` from that value, smooth activations (1-D).

    :math:`\\rho' = \\rho(1-\\rho)` (sigmoid), :math:`4\\rho(1-\\rho)` (shifted sigmoid),
    :math:`1 - \\rho^2` (tanh). Numba-only; dtypes as :func:`rho_row`.
    """
    raise NotImplementedError("rho_drho_row is only callable from Numba kernels")


@overload(rho_row)
def _rho_row_impl(src, dst, act):
    if src.dtype == types.float32:
        return lambda src, dst, act: _rho_row_f32(src, dst, act)
    return lambda src, dst, act: _rho_row_f64(src, dst, act)


@overload(rho_drho_row)
def _rho_drho_row_impl(src, a, da, act):
    if src.dtype == types.float32:
        return lambda src, a, da, act: _rho_drho_row_f32(src, a, da, act)
    return lambda src, a, da, act: _rho_drho_row_f64(src, a, da, act)


@njit(cache=True)
def activate(s, act):
    """Elementwise rho(s) of a 2-D array (new array)."""
    out = np.empty_like(s)
    _act_into(s, out, act)
    return out


def input_drive(theta: np.ndarray, lay: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x @ W_1 + b_1``, shape (batch, sizes[1]): constant within a phase.

    A NumPy (BLAS) product on purpose: for this large product NumPy's BLAS is faster than
    the one Numba links to.
    """
    n0, n1 = int(lay[HDR]), int(lay[HDR + 1])
    wo, bo = int(lay[HDR + lay[4] + 1]), int(lay[HDR + 2 * lay[4] + 1])
    W1 = theta[wo : wo + n0 * n1].reshape(n0, n1)
    out = np.dot(x, W1)
    out += theta[bo : bo + n1]
    return out


# --------------------------------------------------------------------------- core
@njit(cache=True)
def _activities(s, lay, A, B, D, want_d):
    """Write a_l = rho(s_l) (hopfield) or s_l (prototypical) into per-layer blocks of A.

    With ``want_d`` and a smooth Hopfield network, also rho'(s_l) into the same blocks of
    ``D`` (from the value just computed: one exponential per unit); ``D`` is not touched
    otherwise (hard sigmoid: its derivative is a comparison, done where it is used).
    """
    kind, act, nS = lay[0], lay[1], lay[5]
    for l in range(1, nS + 1):
        o, n = _soff(lay, l), _size(lay, l)
        Al = _block(A, B * o, B, n)
        Dl = _block(D, B * o, B, n)
        for r in range(B):
            sr = s[r, o : o + n]
            ar = Al[r]
            if kind == KIND_PROTO:
                for i in range(n):
                    ar[i] = sr[i]
            elif act == ACT_HARD:
                for i in range(n):
                    ar[i] = min(max(sr[i], 0.0), 1.0)
            elif want_d:
                rho_drho_row(sr, ar, Dl[r], act)
            else:
                rho_row(sr, ar, act)


@njit(cache=True)
def _readout(theta, lay, A, B, Z):
    """Z (B, n_out) <- softmax(a_{nS} W_L + b_L), row-wise, numerically stable."""
    L, nS = lay[4], lay[5]
    Atop = _block(A, B * _soff(lay, nS), B, _size(lay, nS))
    np.dot(Atop, _W(theta, lay, L), Z)
    bL = _b(theta, lay, L)
    n = Z.shape[1]
    for r in range(B):
        m = -np.inf
        for k in range(n):
            Z[r, k] += bL[k]
            if Z[r, k] > m:
                m = Z[r, k]
        tot = 0.0
        for k in range(n):
            Z[r, k] = np.exp(Z[r, k] - m)
            tot += Z[r, k]
        for k in range(n):
            Z[r, k] /= tot


@njit(cache=True)
def _hop_assemble(s, out, Pl, Ql, Dl, qb, o, lo, hi, act, eps, mode):
    """Hopfield columns o+lo .. o+hi: dF = s - rho'(s) P - qb Q, written per ``mode``.

    ``qb`` is beta on the nudged layer and 0 elsewhere (``Ql`` is then not read). In
    ``MODE_MAP`` with the hard sigmoid the step is projected onto [0, 1] here (the
    solvers project again, which changes nothing), so that one pass does it all.
    Smooth activations read rho'(s) from ``Dl`` (the layer's block of the cached
    derivatives, :func:`_activities`); the hard sigmoid computes it in place.
    """
    B = s.shape[0]
    m = hi - lo
    for r in range(B):
        sr = s[r, o + lo : o + hi]
        orow = out[r, o + lo : o + hi]
        pr = Pl[r, lo:hi]
        qr = Ql[r, lo:hi] if qb != 0.0 else pr
        if act == ACT_HARD and mode == MODE_MAP:
            if qb != 0.0:
                for i in range(m):
                    v = sr[i]
                    dF = (v - pr[i] if (v >= 0.0 and v <= 1.0) else v) - qb * qr[i]
                    orow[i] = min(max(v - eps * dF, 0.0), 1.0)
            else:
                for i in range(m):
                    v = sr[i]
                    dF = v - pr[i] if (v >= 0.0 and v <= 1.0) else v
                    orow[i] = min(max(v - eps * dF, 0.0), 1.0)
            continue
        if act != ACT_HARD:
            _hop_assemble_smooth(sr, orow, pr, qr, Dl[r, lo:hi], qb, eps, mode)
            continue
        for i in range(m):
            v = sr[i]
            dF = v - _rhop(v, act) * pr[i]
            if qb != 0.0:
                dF -= qb * qr[i]
            if mode == MODE_MAP:
                orow[i] = v - eps * dF
            elif mode == MODE_FIELD:
                orow[i] = -dF
            else:
                orow[i] = dF


@njit(cache=True)
def _hop_assemble_smooth(sr, orow, pr, qr, dr, qb, eps, mode):
    """One row of :func:`_hop_assemble` with the cached rho'(s) ``dr``: one loop per case,
    branch-free inside, so that it vectorises."""
    m = sr.shape[0]
    if qb != 0.0:
        if mode == MODE_MAP:
            for i in range(m):
                orow[i] = sr[i] - eps * ((sr[i] - dr[i] * pr[i]) - qb * qr[i])
        elif mode == MODE_FIELD:
            for i in range(m):
                orow[i] = -((sr[i] - dr[i] * pr[i]) - qb * qr[i])
        else:
            for i in range(m):
                orow[i] = (sr[i] - dr[i] * pr[i]) - qb * qr[i]
    elif mode == MODE_MAP:
        for i in range(m):
            orow[i] = sr[i] - eps * (sr[i] - dr[i] * pr[i])
    elif mode == MODE_FIELD:
        for i in range(m):
            orow[i] = -(sr[i] - dr[i] * pr[i])
    else:
        for i in range(m):
            orow[i] = sr[i] - dr[i] * pr[i]


@njit(cache=True)
def _proto_assemble(s, out, Pl, o, lo, hi, act, mode):
    """Prototypical columns: sigma(P) (map), sigma(P) - s (field), -P (grad)."""
    B = s.shape[0]
    for r in range(B):
        sr = s[r, o + lo : o + hi]
        orow = out[r, o + lo : o + hi]
        pr = Pl[r, lo:hi]
        m = hi - lo
        if mode == MODE_GRAD:
            for i in range(m):
                orow[i] = -pr[i]
        elif act == ACT_HARD:
            for i in range(m):
                orow[i] = min(max(pr[i], 0.0), 1.0)
        else:
            rho_row(pr, orow, act)
        if mode == MODE_FIELD:
            for i in range(m):
                orow[i] -= sr[i]


@njit(cache=True)
def evaluate(s, out, theta, lay, drive, target, sc, work, start, stop, mode):
    """Evaluate the dynamics on the columns [start, stop) of ``out`` (all rows).

    Let :math:`a = \\rho(s)` (hopfield) or :math:`a = s` (prototypical), :math:`a_0 = x`,
    :math:`P_l = a_{l-1}W_l + b_l + a_{l+1}W_{l+1}^\\top` (the last term only when layer
    l+1 is in the energy) and :math:`Q_l = -\\partial C/\\partial s_l` (squared:
    :math:`d - s_L` on the output layer; cross-entropy: :math:`\\rho'(s)\\odot(d-o)W_L^\\top`
    on the top state layer, without :math:`\\rho'` for prototypical).

    ``mode`` 0, fixed-point map: hopfield :math:`s - \\epsilon\\,\\partial F/\\partial s`
    (with the hard sigmoid already projected onto [0, 1]; other activations
    unbounded); prototypical :math:`\\sigma(P + \\beta Q)` (nudge inside) or
    :math:`\\sigma(P) + \\beta Q` (outside).
    ``mode`` 1, vector field: hopfield :math:`-\\partial F/\\partial s`, prototypical
    map minus state. ``mode`` 2: :math:`\\partial F/\\partial s`. Allocation-free: all
    temporaries live in ``work``.
    """
    B = s.shape[0]
    kind, act, cost, nudge = lay[0], lay[1], lay[2], lay[3]
    L, nS, n_state = lay[4], lay[5], lay[6]
    beta = sc[0]
    eps = sc[1]
    nmax = 0
    for l in range(1, L + 1):
        if _size(lay, l) > nmax:
            nmax = _size(lay, l)
    A = work[0 : B * n_state]
    P = work[B * n_state : 2 * B * n_state]
    base_t = 2 * B * n_state
    D = _dact_block(work, B, n_state, nmax)
    smooth_hop = kind == KIND_HOPFIELD and act != ACT_HARD
    _activities(s, lay, A, B, D, smooth_hop)
    for l in range(1, nS + 1):
        o, n = _soff(lay, l), _size(lay, l)
        if o + n <= start or o >= stop:
            continue
        Pl = _block(P, B * o, B, n)
        fb = l < nS
        T1 = _block(work, base_t, B, n)
        if fb:
            Anext = _block(A, B * _soff(lay, l + 1), B, _size(lay, l + 1))
            np.dot(Anext, _W(theta, lay, l + 1).T, T1)
        if l == 1:
            for r in range(B):
                pr = Pl[r]
                dr = drive[r]
                if fb:
                    tr = T1[r]
                    for i in range(n):
                        pr[i] = dr[i] + tr[i]
                else:
                    for i in range(n):
                        pr[i] = dr[i]
        else:
            Aprev = _block(A, B * _soff(lay, l - 1), B, _size(lay, l - 1))
            np.dot(Aprev, _W(theta, lay, l), Pl)
            bl = _b(theta, lay, l)
            for r in range(B):
                pr = Pl[r]
                if fb:
                    tr = T1[r]
                    for i in range(n):
                        pr[i] += bl[i] + tr[i]
                else:
                    for i in range(n):
                        pr[i] += bl[i]
    # nudge on the top state layer: Q = -dC/ds
    otop, ntop = _soff(lay, nS), _size(lay, nS)
    Q = _block(work, base_t + B * nmax, B, ntop)
    use_q = beta != 0.0 and nudge != NUDGE_CLAMP and otop < stop and otop + ntop > start
    if use_q:
        if cost == COST_SQUARED:
            for r in range(B):
                for i in range(ntop):
                    Q[r, i] = target[r, i] - s[r, otop + i]
        else:
            nout = _size(lay, L)
            Z = _block(work, base_t + 2 * B * nmax, B, nout)
            _readout(theta, lay, A, B, Z)
            for r in range(B):
                for k in range(nout):
                    Z[r, k] = target[r, k] - Z[r, k]
            np.dot(Z, _W(theta, lay, L).T, Q)
            if smooth_hop:
                Dtop = _block(D, B * otop, B, ntop)
                for r in range(B):
                    for i in range(ntop):
                        Q[r, i] *= Dtop[r, i]
            elif kind == KIND_HOPFIELD:
                for r in range(B):
                    for i in range(ntop):
                        Q[r, i] *= _rhop(s[r, otop + i], act)
        if kind == KIND_PROTO and (nudge == NUDGE_INSIDE or mode == MODE_GRAD):
            Ptop = _block(P, B * otop, B, ntop)
            for r in range(B):
                for i in range(ntop):
                    Ptop[r, i] += beta * Q[r, i]
    # assemble
    for l in range(1, nS + 1):
        o, n = _soff(lay, l), _size(lay, l)
        lo = max(start, o) - o
        hi = min(stop, o + n) - o
        if hi <= lo:
            continue
        Pl = _block(P, B * o, B, n)
        q_here = use_q and l == nS
        if kind == KIND_HOPFIELD:
            Dl = _block(D, B * o, B, n)
            _hop_assemble(s, out, Pl, Q, Dl, beta if q_here else 0.0, o, lo, hi, act, eps, mode)
            continue
        _proto_assemble(s, out, Pl, o, lo, hi, act, mode)
        # prototypical, nudge outside the activation: g += beta Q
        if q_here and nudge == NUDGE_OUTSIDE and mode != MODE_GRAD:
            c = beta
        else:
            continue
        for r in range(B):
            orow = out[r, o + lo : o + hi]
            qr = Q[r, lo:hi]
            for i in range(hi - lo):
                orow[i] += c * qr[i]
    # output clamped to the target (squared cost; CHL-style phases): the map returns d,
    # the vector field (d - s)/eps (one Euler step of size eps lands on d)
    if nudge == NUDGE_CLAMP and mode != MODE_GRAD:
        lo = max(start, otop) - otop
        hi = min(stop, otop + ntop) - otop
        inv_eps = 1.0 / eps
        for r in range(B):
            for i in range(lo, hi):
                if mode == MODE_MAP:
                    out[r, otop + i] = target[r, i]
                else:
                    out[r, otop + i] = (target[r, i] - s[r, otop + i]) * inv_eps


@njit(cache=True)
def total_energy(s, theta, lay, drive, target, sc, work):
    """Per-sample :math:`F = E + \\beta C` (hopfield) or :math:`-\\Phi + \\beta C`.

    :math:`E = \\tfrac12\\sum s^2 - \\sum_l a_l\\cdot(a_{l-1}W_l + b_l)` (with
    :math:`a_0 W_1 + b_1` = ``drive``); :math:`\\Phi = \\sum_l s_l\\cdot(s_{l-1}W_l + b_l)`.
    Returns a new (batch,) array in the state's dtype.
    """
    B = s.shape[0]
    kind = lay[0]
    L, nS, n_state = lay[4], lay[5], lay[6]
    beta = sc[0]
    nmax = 0
    for l in range(1, L + 1):
        if _size(lay, l) > nmax:
            nmax = _size(lay, l)
    A = work[0 : B * n_state]
    P = work[B * n_state : 2 * B * n_state]
    _activities(s, lay, A, B, A, False)
    res = np.zeros(B, dtype=s.dtype)
    if kind == KIND_HOPFIELD:
        for r in range(B):
            acc = 0.0
            for j in range(n_state):
                acc += 0.5 * s[r, j] * s[r, j]
            res[r] = acc
    for l in range(1, nS + 1):
        o, n = _soff(lay, l), _size(lay, l)
        Al = _block(A, B * o, B, n)
        Pl = _block(P, B * o, B, n)
        if l == 1:
            for r in range(B):
                for i in range(n):
                    Pl[r, i] = drive[r, i]
        else:
            Aprev = _block(A, B * _soff(lay, l - 1), B, _size(lay, l - 1))
            np.dot(Aprev, _W(theta, lay, l), Pl)
            bl = _b(theta, lay, l)
            for r in range(B):
                for i in range(n):
                    Pl[r, i] += bl[i]
        for r in range(B):
            acc = 0.0
            for i in range(n):
                acc += Al[r, i] * Pl[r, i]
            res[r] -= acc
    if beta != 0.0:
        res += beta * _cost(s, theta, lay, target, A, work, B, nmax)
    return res


@njit(cache=True)
def _cost(s, theta, lay, target, A, work, B, nmax):
    L, nS, n_state = lay[4], lay[5], lay[6]
    c = np.zeros(B, dtype=s.dtype)
    if lay[2] == COST_SQUARED:
        otop, ntop = _soff(lay, nS), _size(lay, nS)
        for r in range(B):
            acc = 0.0
            for i in range(ntop):
                e = s[r, otop + i] - target[r, i]
                acc += 0.5 * e * e
            c[r] = acc
    else:
        nout = _size(lay, L)
        Z = _block(work, 2 * B * n_state + 2 * B * nmax, B, nout)
        Atop = _block(A, B * _soff(lay, nS), B, _size(lay, nS))
        np.dot(Atop, _W(theta, lay, L), Z)
        bL = _b(theta, lay, L)
        for r in range(B):
            m = -np.inf
            for k in range(nout):
                Z[r, k] += bL[k]
                if Z[r, k] > m:
                    m = Z[r, k]
            tot = 0.0
            for k in range(nout):
                tot += np.exp(Z[r, k] - m)
            lse = m + np.log(tot)
            acc = 0.0
            for k in range(nout):
                acc -= target[r, k] * (Z[r, k] - lse)
            c[r] = acc
    return c


@njit(cache=True)
def cost_value(s, theta, lay, target, work):
    """Per-sample cost C (squared error on the output state, or softmax cross-entropy)."""
    B = s.shape[0]
    L, n_state = lay[4], lay[6]
    nmax = 0
    for l in range(1, L + 1):
        if _size(lay, l) > nmax:
            nmax = _size(lay, l)
    A = work[0 : B * n_state]
    _activities(s, lay, A, B, A, False)
    return _cost(s, theta, lay, target, A, work, B, nmax)


# --------------------------------------------------------------------------- solver-facing
@njit(cache=True)
def fixed_point_map(s, out, args):
    """``g(s)``: one synchronous step (projected Euler for hopfield; sigma(dPhi/ds) for
    prototypical). ``args = (theta, lay, drive, target, sc, work)``."""
    theta, lay, drive, target, sc, work = args
    evaluate(s, out, theta, lay, drive, target, sc, work, 0, s.shape[1], MODE_MAP)


@njit(cache=True)
def fixed_point_block(s, out, args, start, stop):
    """Columns [start, stop) of :func:`fixed_point_map` (for Gauss-Seidel sweeps)."""
    theta, lay, drive, target, sc, work = args
    evaluate(s, out, theta, lay, drive, target, sc, work, start, stop, MODE_MAP)


@njit(cache=True)
def vector_field(s, out, args):
    """``f(s) = ds/dt``: :math:`-\\partial F/\\partial s` (hopfield), ``g(s) - s``
    (prototypical)."""
    theta, lay, drive, target, sc, work = args
    evaluate(s, out, theta, lay, drive, target, sc, work, 0, s.shape[1], MODE_FIELD)


@njit(cache=True)
def observe_energy(s, args):
    """Per-sample total function F along a trajectory (for ``observe``)."""
    theta, lay, drive, target, sc, work = args
    return total_energy(s, theta, lay, drive, target, sc, work)


# --------------------------------------------------------------------------- fused path
@njit(cache=True)
def fused_fixed_steps(s, n_steps, theta, lay, drive, target, sc, work, lo, hi, use_bounds, damping):
    """Run ``n_steps`` synchronous updates ``s <- proj((1 - a) s + a g(s))`` in place.

    The fused path, ``a = damping``: the same iteration as ``solve_fixed_point(
    fixed_point_map, s, args, method=Picard(damping=a), fixed_steps=n_steps,
    bounds=(lo, hi))`` without residual bookkeeping; kept as a clearly separate fast path
    (``Dynamics(method="fused")``). ``a = 1`` is the plain map.
    The arrays are those of ``args = (theta, lay, drive, target, sc, work)``, passed
    separately because Numba dispatches arrays much faster than a tuple of arrays.
    Returns the size of the last update of each sample, ``max_i |s_n - s_{n-1}|``, NaN
    when a state entry is not finite.
    """
    B, n = s.shape
    res = np.zeros(B, dtype=np.float64)
    if n_steps < 1:
        return res
    if use_bounds:  # like the solvers: project the initial state
        _project_rows(s, lo, hi)
    # ping-pong between two buffers: an in-place update (out is s) is correct but makes
    # LLVM's runtime alias check fall back to scalar (unvectorised) loops
    cur = s
    nxt = np.empty_like(s)
    for _ in range(n_steps):
        evaluate(cur, nxt, theta, lay, drive, target, sc, work, 0, n, MODE_MAP)
        if damping != 1.0:
            _damp_into(cur, nxt, damping, use_bounds and damping > 1.0, lo, hi)
        cur, nxt = nxt, cur
    return _finish_steps(s, cur, nxt, n_steps, lo, hi, use_bounds)


@njit(cache=True, inline="always")
def _project_rows(s, lo, hi):
    """``s <- clip(s, lo, hi)`` in place (the fused paths' projection of the start)."""
    for r in range(s.shape[0]):
        sr = s[r]
        for i in range(s.shape[1]):
            sr[i] = min(max(sr[i], lo), hi)


@njit(cache=True, inline="always")
def _damp_into(cur, nxt, damping, clip, lo, hi):
    """``nxt <- (1 - a) cur + a nxt`` (``a = damping``), projected when ``clip``
    (over-relaxation may leave the box): the damped update of the fused paths."""
    keep = 1.0 - damping
    for r in range(cur.shape[0]):
        cr = cur[r]
        nr = nxt[r]
        for i in range(cur.shape[1]):
            v = keep * cr[i] + damping * nr[i]
            nr[i] = min(max(v, lo), hi) if clip else v


@njit(cache=True, inline="always")
def _finish_steps(s, cur, nxt, n_run, lo, hi, use_bounds):
    """End of the fused paths after ``n_run`` updates: ``cur`` holds :math:`s_n`, ``nxt``
    :math:`s_{n-1}`. Projects :math:`s_n` (the map of a bounded hard-sigmoid Hopfield
    network projects by itself; this only guards other bounded maps), copies it into
    ``s`` when it sits in the scratch buffer (odd ``n_run``) and returns the size of the
    last update per sample, :math:`\\max_i |s_n - s_{n-1}|` (float64, NaN for a
    non-finite state)."""
    B, n = s.shape
    res = np.zeros(B, dtype=np.float64)
    for r in range(B):
        cr = cur[r]
        pr = nxt[r]
        if use_bounds:
            for i in range(n):
                cr[i] = min(max(cr[i], lo), hi)
        m = 0.0
        for i in range(n):
            dv = abs(cr[i] - pr[i])
            if dv > m:
                m = dv
            elif dv != dv:  # NaN
                m = np.nan
                break
        res[r] = m
    if n_run % 2 == 1:  # the final state is in the scratch buffer
        for r in range(B):
            sr = s[r]
            cr = cur[r]
            for i in range(n):
                sr[i] = cr[i]
    return res


@njit(cache=True, inline="always")
def _damped_block_update(s, gx, ranges, active, beta_t, clip_map, clip_step, lo, hi):
    """One group's update of a red-black sweep, the solvers' Gauss-Seidel step: on the
    columns ``ranges`` of every active sample, :math:`x \\leftarrow x + a (v - x)` with
    :math:`v` the map's value (projected first when ``clip_map``: a later group's block
    values, which the residual check did not project) and the result projected when
    ``clip_step`` (over-relaxation)."""
    for rr in range(ranges.shape[0]):
        a0 = ranges[rr, 0]
        a1 = ranges[rr, 1]
        for b in range(s.shape[0]):
            if not active[b]:
                continue
            xb = s[b]
            gb = gx[b]
            for i in range(a0, a1):
                v = gb[i]
                if clip_map:
                    v = clip_value(v, lo[i], hi[i])
                v = xb[i] + beta_t * (v - xb[i])
                if clip_step:
                    v = clip_value(v, lo[i], hi[i])
                xb[i] = v


@njit(cache=True)
def fused_gauss_seidel_parity(
    s, theta, lay, drive, target, sc, work, first, second, lo, hi, has_bounds, damping, stop
):
    """Red-black block Gauss-Seidel sweeps of :func:`fixed_point_map` in place, to tolerance.

    The iteration of ``solvers.solve_fixed_point(fixed_point_map, s, args,
    method=GaussSeidel(groups=(first, second), damping=a, last_group_independent=True),
    g_block=fixed_point_block, bounds=(lo, hi), ...)`` without its generic driver: the
    same block evaluations in the same order, the same damped updates
    :math:`x_S \\leftarrow P((1 - a) x_S + a\\,P(g(x))_S)` and the same per-sample
    stopping (:func:`solvers._bookkeeping.map_verdicts`), so the states, residuals and
    verdicts are those of the reference bit for bit (``tests/test_fused_gauss_seidel.py``).
    What it saves is the driver's generality: the first-class function calls, the
    buffers of the other methods and the per-call dispatch of a 26-argument driver.

    Valid only where the map's values on the ``second`` group do not depend on that
    group's own entries (:func:`eqprop.phases.parity_map_ignores_own_layers`): iteration
    ``k >= 1`` evaluates only the ``first`` group's layers at :math:`x_k` and reuses the
    ``second`` group's values computed in sweep ``k - 1`` at the current first group.

    Parameters
    ----------
    s : ndarray (batch, n_state), the network's dtype
        Initial states, already projected onto ``[lo, hi]``; overwritten by the result.
    theta, lay, drive, target, sc, work
        ``args`` of :func:`fixed_point_map`.
    first, second : int64 ndarray (n_ranges, 2)
        ``[start, stop)`` column ranges of the two groups (e.g. layers 1, 3 and layer 2).
    lo, hi : ndarray (n_state,), the state dtype
        The box (infinite without one).
    has_bounds : bool
        Whether to project onto it (the hard sigmoid's [0, 1]; prototypical maps have
        none).
    damping : float
        ``a`` in (0, 2).
    stop : tuple
        ``(atol, rtol, limit, fixed_steps, divergence_bound)`` as
        :func:`solvers._bookkeeping.map_verdicts` takes them (``fixed_steps`` -1 for a
        solve to tolerance; ``limit`` the iteration cap).

    Returns
    -------
    tuple
        ``(res, rel, n_iter, conv, failed, fail_iter, nfev, nfev_block)``: the residual
        rows ``0 .. k`` (float64, (k + 1, batch), NaN once a sample stopped), the
        per-sample records of the solvers and the map / block evaluation counts.
    """
    B, n = s.shape
    limit = stop[2]
    gx = np.empty_like(s)
    res, rel, _, _, n_iter, conv, failed, fail_iter, active = new_records(B, limit, False)
    tmp = np.empty(1, dtype=s.dtype)
    tmp[0] = damping
    beta_t = tmp[0]  # the damping in the state dtype, as the driver uses it
    over = has_bounds and damping > 1.0
    nfev = 0
    nfev_block = 0
    k = 0
    while True:
        if k == 0:
            evaluate(s, gx, theta, lay, drive, target, sc, work, 0, n, MODE_MAP)
            nfev += 1
        else:
            for rr in range(first.shape[0]):
                a, b = first[rr, 0], first[rr, 1]
                evaluate(s, gx, theta, lay, drive, target, sc, work, a, b, MODE_MAP)
                nfev_block += 1
        res, rel = reserve_row(res, rel, k, limit)
        n_active = map_verdicts(
            s, gx, active, k, res, rel, stop, has_bounds, lo, hi, n_iter, conv, failed, fail_iter
        )
        if n_active == 0:
            break
        _damped_block_update(s, gx, first, active, beta_t, False, over, lo, hi)
        for rr in range(second.shape[0]):
            a, b = second[rr, 0], second[rr, 1]
            evaluate(s, gx, theta, lay, drive, target, sc, work, a, b, MODE_MAP)
            nfev_block += 1
        _damped_block_update(s, gx, second, active, beta_t, has_bounds, over, lo, hi)
        k += 1
    rows = k + 1
    return res[:rows].copy(), rel[:rows].copy(), n_iter, conv, failed, fail_iter, nfev, nfev_block


@njit(cache=True)
def fused_tolerance_steps(
    s, max_steps, theta, lay, drive, target, sc, work, lo, hi, use_bounds, damping, atol, rtol
):
    """The updates of :func:`fused_fixed_steps`, stopped once the whole batch converged.

    Runs ``s <- proj((1 - a) s + a g(s))`` (``a = damping``) in place, exactly the
    iterates of :func:`fused_fixed_steps`, and stops after the first update ``n`` at which
    every sample ``b`` meets

    .. math:: \\max_i |s_{n,b,i} - s_{n-1,b,i}| / a \\le
              \\text{atol} + \\text{rtol} \\max_i |s_{n,b,i}|,

    or after ``max_steps`` updates. Every sample keeps stepping until the last one
    converges (no per-sample freezing), so the final state is that of
    ``fused_fixed_steps(s, n, ...)``, to the bit. The test reads the update before the
    final projection of :func:`fused_fixed_steps` (which a map that projects by itself,
    the hard-sigmoid Hopfield network's, leaves unchanged).

    Parameters
    ----------
    s : numpy.ndarray, shape (batch, n), float32 or float64
        Initial state, overwritten with the final one.
    max_steps : int
        Cap on the number of updates (>= 1).
    atol, rtol : float
        The tolerance (float64 arithmetic).

    Other arguments as :func:`fused_fixed_steps`.

    Returns
    -------
    res : numpy.ndarray of float64, shape (batch,)
        The size of the last update of each sample, ``max_i |s_n - s_{n-1}|`` (after the
        final projection, as :func:`fused_fixed_steps`), NaN for a non-finite state.
    n_run : int
        Updates run, ``1 <= n_run <= max_steps``.
    """
    B, n = s.shape
    res = np.zeros(B, dtype=np.float64)
    if max_steps < 1:
        return res, 0
    if use_bounds:
        _project_rows(s, lo, hi)
    cur = s
    nxt = np.empty_like(s)
    n_run = 0
    for _ in range(max_steps):
        evaluate(cur, nxt, theta, lay, drive, target, sc, work, 0, n, MODE_MAP)
        n_run += 1
        if damping != 1.0:
            _damp_into(cur, nxt, damping, use_bounds and damping > 1.0, lo, hi)
        # whether every sample meets the tolerance after this update
        done = True
        for r in range(B):
            cr = cur[r]
            nr = nxt[r]
            m = 0.0
            xm = 0.0
            for i in range(n):
                dv = abs(nr[i] - cr[i])
                if dv > m:
                    m = dv
                elif dv != dv:  # NaN
                    m = np.inf
                    break
                a = abs(nr[i])
                if a > xm:
                    xm = a
            # a non-finite update (m = inf) never meets the tolerance, even an infinite one
            if not (m < np.inf and m / damping <= atol + rtol * xm):
                done = False
                break
        cur, nxt = nxt, cur
        if done:
            break
    return _finish_steps(s, cur, nxt, n_run, lo, hi, use_bounds), n_run
