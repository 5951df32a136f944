"""solvers.Broyden (limited-memory "good" Broyden, #16) against independent routes.

* a dense NumPy implementation of Broyden's good method in inverse form (Sherman-Morrison
  update of the full matrix ``H``), written here from the formulas, on a linear map: the
  iterates must agree to rounding while no safeguard acts;
* numpy.linalg.solve for the fixed point of ``x = A x + c`` (real and complex);
* finite termination: for a linear map the unrestarted method reaches the solution within
  ``2 n`` steps (Gay 1979), where Picard needs hundreds at spectral radius 0.95;
* a projected (bounded) problem checked with the map itself in NumPy.
"""

import numba
import numpy as np
import pytest

from solvers import Broyden, Picard, Status, solve_fixed_point


@numba.njit(cache=True)
def affine(x, out, args):
    """out[b] = A x[b] + c (explicit loops: typed for real and complex states)."""
    A, c = args
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            s = c[i]
            for j in range(x.shape[1]):
                s += A[i, j] * x[b, j]
            out[b, i] = s


def contraction(n, radius, seed, complex_=False):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    if complex_:
        A = A + 1j * rng.standard_normal((n, n))
    A *= radius / np.abs(np.linalg.eigvals(A)).max()
    c = rng.standard_normal(n) + (1j * rng.standard_normal(n) if complex_ else 0)
    return A, c


def numpy_broyden(A, c, x0, steps, damping=1.0):
    """Dense good Broyden on F(x) = A x + c - x: x_{k+1} = x_k - H_k F_k, H_0 = -damping I."""
    n = x0.shape[0]
    H = -damping * np.eye(n, dtype=np.result_type(A, x0))
    x = x0.copy()
    F = A @ x + c - x
    xs = [x.copy()]
    x_new = x + damping * F  # no history: the damped Picard step
    for _ in range(steps):
        F_new = A @ x_new + c - x_new
        s, y = x_new - x, F_new - F
        Hy = H @ y
        H = H + np.outer(s - Hy, s.conj() @ H) / (s.conj() @ Hy)
        x, F = x_new, F_new
        xs.append(x.copy())
        x_new = x - H @ F
    return xs


UNGUARDED = dict(delay=0, growth=np.inf, window=10**6, regress=np.inf)


def test_iterates_match_a_dense_numpy_broyden():
    A, c = contraction(12, 0.9, seed=1)
    x0 = np.random.default_rng(2).standard_normal((1, 12))
    ref = numpy_broyden(A, c, x0[0], steps=8)
    for k in (2, 5, 8):
        res = solve_fixed_point(
            affine, x0, (A, c), method=Broyden(m=50, **UNGUARDED), fixed_steps=k, max_iter=k
        )
        np.testing.assert_allclose(res.x[0], ref[k], rtol=0, atol=1e-10)


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_linear_map_terminates_within_2n_steps(complex_):
    n = 10
    A, c = contraction(n, 0.95, seed=3, complex_=complex_)
    dt = np.complex128 if complex_ else np.float64
    x0 = np.zeros((2, n), dtype=dt)
    c2 = c.astype(dt)
    kw = dict(atol=1e-9, max_iter=3000)
    bro = solve_fixed_point(affine, x0, (A.astype(dt), c2), method=Broyden(m=50, **UNGUARDED), **kw)
    pic = solve_fixed_point(affine, x0, (A.astype(dt), c2), method=Picard(), **kw)
    assert bro.status == Status.CONVERGED and pic.status == Status.CONVERGED
    # 2 n Broyden steps after the first (plain) one; the check of the last state is free
    assert bro.n_iter.max() <= 2 * n + 1 < 100 <= pic.n_iter.min()
    exact = np.linalg.solve(np.eye(n) - A, c)
    np.testing.assert_allclose(bro.x, np.tile(exact, (2, 1)), atol=1e-7)
    assert bro.x.dtype == dt


def test_bounded_problem_ends_at_a_fixed_point_of_the_projected_map():
    A, c = contraction(20, 0.95, seed=4)
    x0 = np.zeros((3, 20))
    res = solve_fixed_point(
        affine, x0, (A, c), method=Broyden(), atol=1e-10, max_iter=2000, bounds=(-0.5, 0.5)
    )
    assert res.status == Status.CONVERGED
    g = np.clip(res.x @ A.T + c, -0.5, 0.5)
    assert np.abs(g - res.x).max() <= 1e-10
    assert np.abs(res.x).max() == 0.5  # the bounds are active
    np.testing.assert_array_equal(res.n_fallback, 0)
    np.testing.assert_array_equal(res.fallback_iter, -1)


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        (dict(m=0), "m"),
        (dict(damping=1.5), "damping"),
        (dict(denom_tol=1.0), "denom_tol"),
        (dict(growth=0.5), "growth"),
        (dict(window=0), "window"),
        (dict(progress=0.0), "progress"),
        (dict(regress=1.0), "regress"),
        (dict(delay=-1), "delay"),
    ],
)
def test_bad_parameters_are_refused_by_name(kw, word):
    with pytest.raises(ValueError, match=f"Broyden {word}"):
        Broyden(**kw)
