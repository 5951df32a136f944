"""Complex states (complex128, complex64) in solvers.solve_fixed_point / solve_steady_state.

Independent routes: numpy.linalg.solve for the linear fixed point ``x = A x + c`` (A, c
complex, A non-normal with spectral radius < 1) and a plain NumPy iteration of the
holomorphic map ``x -> tanh(A x + c)``. The maps below are written with explicit loops so
that they type-check for every state dtype; all of them take ``args = (A, c)`` with A 2-D
and c 1-D of the state dtype, so the drivers compile once per dtype.
"""

import dataclasses

import numba
import numpy as np
import pytest

from solvers import (
    RK4,
    Anderson,
    Dopri5,
    Euler,
    GaussSeidel,
    Picard,
    Status,
    solve_fixed_point,
    solve_steady_state,
)
from solvers._validate import check_args

N = 8
GROUPS = (((0, 3), (6, 8)), ((3, 6),))
FP_METHODS = [Picard(), Picard(damping=0.7), Anderson(m=5), GaussSeidel(groups=GROUPS)]
SS_METHODS = [Euler(dt=0.5), RK4(dt=0.5), Dopri5()]


@numba.njit(cache=True)
def c_affine(x, out, args):
    """out[b] = A x[b] + c."""
    A, c = args
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            s = c[i]
            for j in range(x.shape[1]):
                s += A[i, j] * x[b, j]
            out[b, i] = s


@numba.njit(cache=True)
def c_tanh(x, out, args):
    """out[b] = tanh(A x[b] + c) (holomorphic in x)."""
    c_affine(x, out, args)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = np.tanh(out[b, i])


@numba.njit(cache=True)
def c_tanh_field(x, out, args):
    """dx/dt = tanh(A x + c) - x."""
    c_tanh(x, out, args)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] -= x[b, i]


def complex_contraction(n, rho, seed, dtype=np.complex128):
    """Non-normal complex A with spectral norm rho, complex c."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    A *= rho / np.linalg.norm(A, 2)
    c = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    return A.astype(dtype), c.astype(dtype)


def x0_for(batch, n, seed, dtype=np.complex128):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, n)) + 1j * rng.standard_normal((batch, n))).astype(dtype)


def numpy_tanh_fixed_point(A, c, x0, iters=3000):
    """Reference: Picard iteration of x -> tanh(A x + c) in NumPy (complex128)."""
    x = x0.astype(np.complex128)
    for _ in range(iters):
        x = np.tanh(x @ A.T.astype(np.complex128) + c.astype(np.complex128))
    return x


@pytest.mark.parametrize("method", FP_METHODS, ids=lambda m: m.describe())
def test_complex_linear_fixed_point_matches_numpy_solve(method):
    A, c = complex_contraction(N, 0.8, seed=1)
    x0 = x0_for(3, N, seed=2)
    res = solve_fixed_point(c_affine, x0, (A, c), method=method, atol=1e-13, max_iter=3000)
    assert res.status == Status.CONVERGED
    assert res.x.dtype == np.complex128
    exact = np.linalg.solve(np.eye(N) - A, c)
    np.testing.assert_allclose(res.x, np.tile(exact, (3, 1)), atol=1e-11, rtol=0)
    # the residual is the modulus max-norm of g(x) - x (not of its real part)
    r0 = np.abs(x0 @ A.T + c - x0).max(axis=1)
    np.testing.assert_allclose(res.residual[0], r0, rtol=1e-12)
    assert not np.allclose(r0, np.abs((x0 @ A.T + c - x0).real).max(axis=1))


@pytest.mark.parametrize("method", FP_METHODS, ids=lambda m: m.describe())
def test_complex_holomorphic_fixed_point_matches_numpy_iteration(method):
    A, c = complex_contraction(N, 0.6, seed=3)
    c = 0.3 * c
    x0 = x0_for(2, N, seed=4)
    res = solve_fixed_point(c_tanh, x0, (A, c), method=method, atol=1e-13, max_iter=3000)
    assert res.status == Status.CONVERGED
    ref = numpy_tanh_fixed_point(A, c, x0)
    assert np.abs(ref.imag).max() > 0.05  # a genuinely complex fixed point
    np.testing.assert_allclose(res.x, ref, atol=1e-11, rtol=0)


def test_complex_anderson_solves_a_linear_map_in_few_iterations():
    # Anderson with m >= n on a linear map is a Krylov method: it converges within about
    # n + 1 iterations where Picard needs hundreds at spectral norm 0.97. Normal equations
    # without the conjugate transpose (dF^T dF) lose that.
    A, c = complex_contraction(6, 0.97, seed=5)
    x0 = x0_for(2, 6, seed=6)
    kw = dict(atol=1e-10, max_iter=2000)
    acc = solve_fixed_point(c_affine, x0, (A, c), method=Anderson(m=8, delay=0), **kw)
    pic = solve_fixed_point(c_affine, x0, (A, c), method=Picard(), **kw)
    assert acc.status == Status.CONVERGED and pic.status == Status.CONVERGED
    assert acc.n_iter.max() <= 12 < 100 <= pic.n_iter.min()
    exact = np.linalg.solve(np.eye(6) - A, c)
    np.testing.assert_allclose(acc.x, np.tile(exact, (2, 1)), atol=1e-8)


@pytest.mark.parametrize("method", SS_METHODS, ids=lambda m: m.describe())
def test_complex_steady_state_matches_numpy_iteration(method):
    A, c = complex_contraction(N, 0.6, seed=3)
    c = 0.3 * c
    x0 = x0_for(2, N, seed=4)
    res = solve_steady_state(c_tanh_field, x0, (A, c), method=method, atol=1e-12, max_iter=5000)
    assert res.status == Status.CONVERGED
    assert res.x.dtype == np.complex128
    np.testing.assert_allclose(res.x, numpy_tanh_fixed_point(A, c, x0), atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", [Picard(), Anderson(m=5)], ids=lambda m: m.describe())
def test_complex64_fixed_point_keeps_dtype_and_matches(method):
    A, c = complex_contraction(N, 0.6, seed=7, dtype=np.complex64)
    c = (0.3 * c).astype(np.complex64)
    x0 = x0_for(2, N, seed=8, dtype=np.complex64)
    res = solve_fixed_point(c_tanh, x0, (A, c), method=method, atol=1e-5, max_iter=500)
    assert res.status == Status.CONVERGED
    assert res.x.dtype == np.complex64
    ref = numpy_tanh_fixed_point(A.astype(np.complex128), c.astype(np.complex128), x0)
    np.testing.assert_allclose(res.x, ref, atol=1e-4, rtol=0)


def test_bounds_are_refused_for_complex_states():
    A, c = complex_contraction(N, 0.5, seed=1)
    x0 = x0_for(1, N, seed=2)
    with pytest.raises(ValueError, match="bounds are not defined for complex states"):
        solve_fixed_point(c_affine, x0, (A, c), bounds=(-1.0, 1.0))
    with pytest.raises(ValueError, match="bounds are not defined for complex states"):
        solve_steady_state(c_tanh_field, x0, (A, c), bounds=(0.0, None))


def test_a_method_not_declared_for_complex_states_is_refused_by_name():
    @dataclasses.dataclass(frozen=True)
    class RealOnlyPicard(Picard):
        complex_states = False  # type: ignore[misc]

    A, c = complex_contraction(N, 0.5, seed=1)
    x0 = x0_for(1, N, seed=2)
    with pytest.raises(ValueError, match=r"Picard\(damping=1\) is not defined for complex"):
        solve_fixed_point(c_affine, x0, (A, c), method=RealOnlyPicard())
    # the same method on a real state runs
    Ar, cr = A.real.copy(), c.real.copy()
    res = solve_fixed_point(c_affine, x0.real.copy(), (Ar, cr), method=RealOnlyPicard())
    assert res.x.dtype == np.float64


def test_args_dtypes_for_complex_states():
    a64 = np.ones(3)
    a32 = np.ones(3, dtype=np.float32)
    c128 = np.ones(3, dtype=np.complex128)
    c64 = np.ones(3, dtype=np.complex64)
    # real weights of the matching precision act on complex states
    assert check_args((a64, c128), np.dtype(np.complex128))[0].dtype == np.float64
    assert check_args((a32, c64), np.dtype(np.complex64))[0].dtype == np.float32
    for bad, state in ((a32, np.complex128), (c64, np.complex128), (c128, np.float64)):
        with pytest.raises(ValueError, match=r"args\[0\] has dtype"):
            check_args((bad,), np.dtype(state))


def test_complex_x0_must_be_finite_and_of_a_supported_dtype():
    A, c = complex_contraction(N, 0.5, seed=1)
    x0 = x0_for(1, N, seed=2)
    x0[0, 3] = complex(np.nan, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        solve_fixed_point(c_affine, x0, (A, c))
    with pytest.raises(ValueError, match="complex64 or complex128"):
        solve_fixed_point(c_affine, x0_for(1, N, 2).astype(np.clongdouble), (A, c))
