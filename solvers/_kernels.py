"""Small Numba kernels shared by the drivers (no function arguments, so they cache).

All work on one sample (row) of a C-contiguous (batch, n) array, so that the drivers
touch every row once per pass and allocate nothing inside their loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_TINY = np.finfo(np.float64).tiny


@njit(cache=True, inline="always")
def project_row(y, b, lo, hi):
    """Clip row ``b`` of ``y`` into ``[lo, hi]`` in place (NaN stays NaN)."""
    n = y.shape[1]
    for i in range(n):
        v = y[b, i]
        if v < lo[i]:
            y[b, i] = lo[i]
        elif v > hi[i]:
            y[b, i] = hi[i]


@njit(cache=True, inline="always")
def diff_max_row(gx, x, b):
    """``(max_i |gx[b,i] - x[b,i]|, max_i |x[b,i]|)``; NaN/inf propagate to the first."""
    n = x.shape[1]
    r = 0.0
    xm = 0.0
    bad = False
    for i in range(n):
        xv = x[b, i]
        d = abs(np.float64(gx[b, i]) - np.float64(xv))
        if d > r:
            r = d
        elif not d <= r:  # NaN
            bad = True
        a = abs(np.float64(xv))
        if a > xm:
            xm = a
    if bad or not np.isfinite(xm):
        r = np.nan
    return r, xm


@njit(cache=True, inline="always")
def field_max_row(fx, x, b, lo, hi, has_bounds):
    """Max-norm of the projected field of row ``b`` and ``max_i |x[b,i]|``.

    Components of ``f`` that push out of the box at an active bound count as 0.
    """
    n = x.shape[1]
    r = 0.0
    xm = 0.0
    bad = False
    for i in range(n):
        xv = x[b, i]
        fv = np.float64(fx[b, i])
        if has_bounds:
            if xv <= lo[i] and fv < 0:
                fv = 0.0
            elif xv >= hi[i] and fv > 0:
                fv = 0.0
        d = abs(fv)
        if d > r:
            r = d
        elif not d <= r:
            bad = True
        a = abs(np.float64(xv))
        if a > xm:
            xm = a
    if bad or not np.isfinite(xm):
        r = np.nan
    return r, xm


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

    ``L`` is scratch of shape at least (k, k). A pivot below ``pivot_tol`` times the
    largest diagonal entry of ``H`` flags the system as ill-conditioned.
    """
    dmax = 0.0
    for i in range(k):
        if H[i, i] > dmax:
            dmax = H[i, i]
    if not dmax > 0 or not np.isfinite(dmax):
        return False
    thr = pivot_tol * dmax
    for j in range(k):
        s = H[j, j]
        for p in range(j):
            s -= L[j, p] * L[j, p]
        if not s > thr or s <= 0:
            return False
        ljj = np.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, k):
            t = H[i, j]
            for p in range(j):
                t -= L[i, p] * L[j, p]
            L[i, j] = t / ljj
    for i in range(k):
        t = rhs[i]
        for p in range(i):
            t -= L[i, p] * y[p]
        y[i] = t / L[i, i]
    for i in range(k - 1, -1, -1):
        t = y[i]
        for p in range(i + 1, k):
            t -= L[p, i] * y[p]
        y[i] = t / L[i, i]
    return True
