"""Small Numba kernels shared by the drivers (no function arguments, so they cache).

They work on one sample (a contiguous 1-D row) so that the drivers touch every row once
per pass and allocate nothing inside their loops. The loops are written so that LLVM
vectorises them without fast-math on NaN handling:

* max-norms use the IEEE-754 fact that the bit patterns of non-negative floats, read as
  integers, order like the floats (and every NaN of cleared sign sorts above inf). An
  integer max reduction of ``bits(|v|)`` vectorises where a floating one (with its NaN
  semantics) does not, and NaN propagates by construction;
* dot products (Anderson only) may reassociate their sum (``fastmath={"reassoc"}``),
  which changes rounding only, never NaN/inf propagation.

Complex states (complex64/complex128): the norms take ``|v|`` (the modulus, a float of the
matching width, whose bit pattern orders as above), the dot product conjugates its first
argument (``a^H b``, accumulated in complex128) and the Cholesky factorisation is that of a
Hermitian matrix. The box projection has no meaning for complex numbers (the solvers refuse
bounds for complex states before calling a driver), so :func:`clip_row`, :func:`clip_value`,
:func:`active_set_signature` and the bounded branch of :func:`absmax_field` are generic
functions (``numba.extending.overload``) whose complex versions ignore ``lo``/``hi``; their
real versions are the functions used before complex support, unchanged, so real states
compile to the same loops.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_TINY = np.finfo(np.float64).tiny


def _is_complex(t) -> bool:
    """True for a Numba complex scalar type or an array of complex numbers."""
    return isinstance(getattr(t, "dtype", t), types.Complex)


@njit(cache=True)
def _clip_row_real(y, lo, hi):
    """Clip the 1-D row ``y`` into ``[lo, hi]`` in place (NaN stays NaN)."""
    for i in range(y.shape[0]):
        v = y[i]
        v = lo[i] if v < lo[i] else v
        y[i] = hi[i] if v > hi[i] else v


def clip_row(y, lo, hi):  # pragma: no cover - only called from compiled code
    """Clip the 1-D row ``y`` into ``[lo, hi]`` in place; a no-op for complex rows."""
    raise NotImplementedError("clip_row is only callable from Numba-compiled code")


@overload(clip_row)
def _clip_row_ov(y, lo, hi):
    if _is_complex(y):
        return lambda y, lo, hi: None
    return lambda y, lo, hi: _clip_row_real(y, lo, hi)


def clip_value(v, lo, hi):  # pragma: no cover - only called from compiled code
    """``v`` clipped into ``[lo, hi]`` (scalars); ``v`` itself when complex."""
    raise NotImplementedError("clip_value is only callable from Numba-compiled code")


@overload(clip_value)
def _clip_value_ov(v, lo, hi):
    if _is_complex(v):
        return lambda v, lo, hi: v

    def impl(v, lo, hi):
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        return v

    return impl


def active_set_signature(y, lo, hi):  # pragma: no cover - only called from compiled code
    """See :func:`_active_set_signature_real`; 0 for complex rows (no bounds)."""
    raise NotImplementedError("active_set_signature is only callable from compiled code")


@overload(active_set_signature)
def _active_set_signature_ov(y, lo, hi):
    if _is_complex(y):
        return lambda y, lo, hi: 0
    return lambda y, lo, hi: _active_set_signature_real(y, lo, hi)


@njit(cache=True)
def _active_set_signature_real(y, lo, hi):
    """Signature of the set of components of the 1-D row ``y`` at a bound (int64).

    ``sum_{i: y_i <= lo_i} (i + 1) + (n + 1) * sum_{i: y_i >= hi_i} (i + 1)``: equal sets
    give equal signatures; different sets almost always differ (a swap of components
    with equal index sums goes unnoticed, which only delays a restart).
    """
    n = y.shape[0]
    s_lo = 0
    s_hi = 0
    for i in range(n):
        v = y[i]
        s_lo += (i + 1) if v <= lo[i] else 0
        s_hi += (i + 1) if v >= hi[i] else 0
    return s_lo + (n + 1) * s_hi


@njit(cache=True)
def step_rows(dst, x, v, c, active, lo, hi, has_bounds):
    """``dst[b] = P(x[b] + c v[b])`` for the active rows ``b``; others left untouched.

    ``c`` is a scalar of the state dtype; ``P`` clips into ``[lo, hi]`` when
    ``has_bounds``. Correct with ``dst`` being ``x``, but then the loop's run-time alias
    check fails and it runs unvectorised (measured: Euler steps 1.5x slower), so in-place
    updates keep their own loop.
    """
    for b in range(x.shape[0]):
        if not active[b]:
            continue
        db = dst[b]
        xb = x[b]
        vb = v[b]
        for i in range(x.shape[1]):
            db[i] = xb[i] + c * vb[i]
        if has_bounds:
            clip_row(db, lo, hi)


@intrinsic
def _float_bits(typingctx, v):
    """Reinterpret a float32/float64 as int32/int64 (LLVM bitcast, free)."""
    if not isinstance(v, types.Float):
        return None
    it = types.int32 if v.bitwidth == 32 else types.int64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(it))

    return it(v), codegen


@intrinsic
def _bits_float(typingctx, bits, like):
    """Reinterpret integer ``bits`` (truncated to the width of ``like``) as ``like``'s type."""
    if not (isinstance(bits, types.Integer) and isinstance(like, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        ft = context.get_value_type(like)
        it = ir.IntType(like.bitwidth)
        v = args[0]
        if bits.bitwidth > like.bitwidth:
            v = builder.trunc(v, it)
        elif bits.bitwidth < like.bitwidth:
            v = builder.zext(v, it)
        return builder.bitcast(v, ft)

    return like(bits, like), codegen


@njit(cache=True)
def _norm_pair(rb, xb, like):
    """``(r, xm)`` as float64 from the bit-pattern maxima ``rb`` and ``xb``.

    ``r`` becomes NaN when ``xm`` is NaN (a NaN state makes the residual NaN too).
    """
    r = np.float64(_bits_float(rb, like))
    xm = np.float64(_bits_float(xb, like))
    # (``like`` is a float of the moduli's width: only its type is used)
    if not xm <= np.inf:
        r = np.nan
    return r, xm


@njit(cache=True)
def absmax_diff(g, x):
    """``(max_i |g_i - x_i|, max_i |x_i|)`` of 1-D rows, as float64; NaN if any is NaN.

    One pass: the magnitudes' bit patterns are reduced with an integer max (see the
    module docstring), so that the loop vectorises and NaN (which sorts above inf)
    propagates.
    """
    n = x.shape[0]
    rb = _float_bits(abs(g[0] - g[0]))  # zero of the right integer type
    xb = rb
    for i in range(n):
        rb = max(rb, _float_bits(abs(g[i] - x[i])))
        xb = max(xb, _float_bits(abs(x[i])))
    return _norm_pair(rb, xb, abs(x[0]))


@njit(cache=True)
def absmax(v):
    """``max_i |v_i|`` of a 1-D row as float64 (NaN if any entry is NaN); vectorised."""
    rb = _float_bits(abs(v[0] - v[0]))
    for i in range(v.shape[0]):
        rb = max(rb, _float_bits(abs(v[i])))
    return np.float64(_bits_float(rb, abs(v[0])))


def absmax_field(f, x, lo, hi, has_bounds):  # pragma: no cover - compiled code only
    """See :func:`_absmax_field_real`; for complex rows the bounds are ignored."""
    raise NotImplementedError("absmax_field is only callable from Numba-compiled code")


@overload(absmax_field)
def _absmax_field_ov(f, x, lo, hi, has_bounds):
    if _is_complex(x):

        def impl(f, x, lo, hi, has_bounds):
            rb = _float_bits(abs(f[0] - f[0]))
            xb = rb
            for i in range(x.shape[0]):
                rb = max(rb, _float_bits(abs(f[i])))
                xb = max(xb, _float_bits(abs(x[i])))
            return _norm_pair(rb, xb, abs(x[0]))

        return impl
    return lambda f, x, lo, hi, has_bounds: _absmax_field_real(f, x, lo, hi, has_bounds)


@njit(cache=True)
def _absmax_field_real(f, x, lo, hi, has_bounds):
    """Max-norm of the projected field of 1-D rows, and ``max_i |x_i|``, as float64.

    Components of ``f`` that push out of the box at an active bound count as 0.
    """
    n = x.shape[0]
    rb = _float_bits(abs(f[0] - f[0]))
    xb = rb
    if has_bounds:
        for i in range(n):
            fv = f[i]
            xv = x[i]
            out = ((xv <= lo[i]) & (fv < 0)) | ((xv >= hi[i]) & (fv > 0))
            fv = fv - fv if out else fv
            rb = max(rb, _float_bits(abs(fv)))
            xb = max(xb, _float_bits(abs(xv)))
    else:
        for i in range(n):
            rb = max(rb, _float_bits(abs(f[i])))
            xb = max(xb, _float_bits(abs(x[i])))
    return _norm_pair(rb, xb, x[0])


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot_real(a, b):
    """``sum_i a_i b_i`` of 1-D rows, accumulated in float64."""
    s = 0.0
    for i in range(a.shape[0]):
        s += np.float64(a[i]) * np.float64(b[i])
    return s


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot_complex(a, b):
    """``sum_i conj(a_i) b_i`` of 1-D complex rows, accumulated in complex128."""
    s = 0j
    for i in range(a.shape[0]):
        s += np.complex128(a[i]).conjugate() * np.complex128(b[i])
    return s


def dot(a, b):  # pragma: no cover - only called from compiled code
    """``a^H b`` of 1-D rows: float64 for real rows, complex128 for complex ones."""
    raise NotImplementedError("dot is only callable from Numba-compiled code")


@overload(dot)
def _dot_ov(a, b):
    if _is_complex(a):
        return lambda a, b: _dot_complex(a, b)
    return lambda a, b: _dot_real(a, b)


def acc_zeros(shape, like):  # pragma: no cover - only called from compiled code
    """Zeros of ``shape`` in the accumulation dtype of the state array ``like``.

    float64 for real states, complex128 for complex ones (Anderson's normal equations,
    Dopri5's error row).
    """
    raise NotImplementedError("acc_zeros is only callable from Numba-compiled code")


@overload(acc_zeros)
def _acc_zeros_ov(shape, like):
    if _is_complex(like):
        return lambda shape, like: np.zeros(shape, dtype=np.complex128)
    return lambda shape, like: np.zeros(shape)


@njit(cache=True)
def broyden_apply(U, V, c, damping, w, out, adjoint):
    """``out = H w`` (``adjoint``: ``H^H w``) for Broyden's ``H = -damping I + sum_j U_j V_j^H``.

    ``U``, ``V``: (m, n) histories of which the first ``c`` rows are used; ``w``, ``out``:
    (n,) rows of the accumulation dtype (float64 or complex128); ``damping`` real.
    """
    n = w.shape[0]
    for i in range(n):
        out[i] = -damping * w[i]
    for j in range(c):
        a = V[j] if adjoint else U[j]
        t = dot(U[j], w) if adjoint else dot(V[j], w)
        for i in range(n):
            out[i] += t * a[i]


@njit(cache=True)
def grow_rows(a, rows):
    """Return a copy of 2-D ``a`` with ``rows`` rows, new rows filled with NaN."""
    out = np.full((rows, a.shape[1]), np.nan)
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def grow_vec(a, rows):
    """Return a copy of 1-D int64 ``a`` with ``rows`` entries, new ones -1."""
    out = np.full(rows, -1, dtype=np.int64)
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def cholesky_solve(H, rhs, k, L, y, pivot_tol):
    """Solve ``H[:k,:k] y = rhs[:k]`` by Cholesky into ``y``; False if a pivot is tiny.

    ``H`` symmetric (float64) or Hermitian (complex128, ``H = L L^H``; its diagonal is
    read as real). ``L`` is scratch of shape at least (k, k). A pivot below ``pivot_tol``
    times the largest diagonal entry of ``H`` flags the system as ill-conditioned. On real
    arrays ``.real`` and ``.conjugate()`` are the identity, so the real factorisation is
    the plain one.
    """
    dmax = 0.0
    for i in range(k):
        if H[i, i].real > dmax:
            dmax = H[i, i].real
    if not dmax > 0 or not np.isfinite(dmax):
        return False
    thr = pivot_tol * dmax
    for j in range(k):
        s = H[j, j].real
        for p in range(j):
            s -= (L[j, p] * L[j, p].conjugate()).real
        if not s > thr or s <= 0:
            return False
        ljj = np.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, k):
            t = H[i, j]
            for p in range(j):
                t -= L[i, p] * L[j, p].conjugate()
            L[i, j] = t / ljj
    for i in range(k):
        t = rhs[i]
        for p in range(i):
            t -= L[i, p] * y[p]
        y[i] = t / L[i, i]
    for i in range(k - 1, -1, -1):
        t = y[i]
        for p in range(i + 1, k):
            t -= L[p, i].conjugate() * y[p]
        y[i] = t / L[i, i]
    return True


@njit(cache=True)
def fill_nan(a):
    """Fill the 2-D array ``a`` with NaN (before a callback writes it: unwritten is NaN)."""
    for b in range(a.shape[0]):
        ab = a[b]
        for i in range(a.shape[1]):
            ab[i] = np.nan


@njit(cache=True)
def fill_nan_cols(a, start, stop):
    """Fill columns ``[start, stop)`` of the 2-D array ``a`` with NaN."""
    for b in range(a.shape[0]):
        ab = a[b]
        for i in range(start, stop):
            ab[i] = np.nan


@njit(cache=True)
def all_nan(a):
    """True when every entry of the 2-D array ``a`` is NaN (stops at the first that is not)."""
    for b in range(a.shape[0]):
        ab = a[b]
        for i in range(a.shape[1]):
            if ab[i] == ab[i]:
                return False
    return True
