"""Numba maps shared by the solver tests (module-level, so each compiles once per run).

Most use ``args = (A, c)`` with A 2-D and c 1-D, so the solver drivers compile for one
args type per dtype.
"""

import numba
import numpy as np


@numba.njit(cache=True)
def affine(x, out, args):
    """out = x @ A.T + c (the map x -> A x + c of each sample)."""
    A, c = args
    out[:] = np.dot(x, A.T)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] += c[i]


@numba.njit(cache=True)
def affine_block(x, out, args, start, stop):
    A, c = args
    for b in range(x.shape[0]):
        for i in range(start, stop):
            s = c[i]
            for j in range(x.shape[1]):
                s += A[i, j] * x[b, j]
            out[b, i] = s


@numba.njit(cache=True)
def affine_field(x, out, args):
    """dx/dt = A x + c - x (steady state = fixed point of x -> A x + c)."""
    A, c = args
    out[:] = np.dot(x, A.T)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] += c[i] - x[b, i]


@numba.njit(cache=True)
def linear_relax(x, out, args):
    """dx/dt = -K (x - x*), with args = (K, x*)."""
    K, xs = args
    d = x - xs
    out[:] = -np.dot(d, K.T)


@numba.njit(cache=True)
def per_sample_scale(x, out, args):
    """out[b, i] = S[b, i] * x[b, i] + c[i]: per-sample contraction or expansion."""
    S, c = args
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = S[b, i] * x[b, i] + c[i]


@numba.njit(cache=True)
def log_of_scale(x, out, args):
    """out = 0.5 x + c + log(S): NaN where S < 0, otherwise a contraction."""
    S, c = args
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = 0.5 * x[b, i] + c[i] + np.log(S[b, i])


@numba.njit(cache=True)
def cosine(x, out, args):
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = np.cos(x[b, i])


@numba.njit(cache=True)
def sq_norm(x, args):
    """Observe: 0.5 |x|^2 per sample."""
    out = np.empty(x.shape[0])
    for b in range(x.shape[0]):
        s = 0.0
        for i in range(x.shape[1]):
            s += x[b, i] * x[b, i]
        out[b] = 0.5 * s
    return out


def contraction(n, rho, seed, dtype=np.float64):
    """Symmetric A with spectral radius rho (eigenvalues in [-rho, rho]), and c."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    ev = rng.uniform(-rho, rho, n)
    ev[0] = rho
    A = (Q * ev) @ Q.T
    c = rng.standard_normal(n)
    return np.ascontiguousarray(A, dtype=dtype), c.astype(dtype)


@numba.njit(cache=True)
def per_sample_field(x, out, args):
    """dx/dt = S x + c - x per sample (unstable where S > 1)."""
    S, c = args
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = S[b, i] * x[b, i] + c[i] - x[b, i]
