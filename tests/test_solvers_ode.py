"""Tests of solvers.solve_steady_state (projected Euler, RK4, Dopri5)."""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from test_solvers_maps import (
    affine_field,
    contraction,
    linear_relax,
    sq_norm,
)

from solvers import RK4, Dopri5, Euler, Picard, SolverFailure, Status, solve_steady_state

N = 8


def spd(n, seed, lam_max=10.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    ev = np.linspace(0.5, lam_max, n)
    K = np.ascontiguousarray((Q * ev) @ Q.T)
    return K, rng.standard_normal(n)


ODE_METHODS = [Euler(dt=0.05), RK4(dt=0.2), Dopri5()]


@pytest.mark.parametrize("method", ODE_METHODS, ids=lambda m: type(m).__name__)
def test_linear_ode_steady_state(method):
    K, xs = spd(N, 0)
    x0 = np.random.default_rng(1).standard_normal((3, N))
    res = solve_steady_state(linear_relax, x0, (K, xs), method=method, atol=1e-10)
    assert res.status == Status.CONVERGED and res.success
    np.testing.assert_allclose(res.x, xs[None].repeat(3, 0), atol=1e-10)
    # the residual is |f(x)|_inf = |K (x - x*)|_inf
    k = res.n_iter
    np.testing.assert_array_less(res.residual[k, np.arange(3)], 1e-10 + 1e-300)
    assert res.n_rejected is not None and res.n_rejected.shape == (3,)


def test_matches_solve_ivp_and_fixed_point_of_same_problem():
    A, c = contraction(N, 0.8, seed=2)
    x0 = np.zeros((1, N))
    ours = solve_steady_state(affine_field, x0, (A, c), method=Dopri5(), atol=1e-10)
    sol = scipy.integrate.solve_ivp(
        lambda t, x: A @ x + c - x,
        (0, 200),
        np.zeros(N),
        method="RK45",
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(ours.x[0], sol.y[:, -1], atol=1e-8)
    np.testing.assert_allclose(ours.x[0], np.linalg.solve(np.eye(N) - A, c), atol=1e-9)


@pytest.mark.parametrize(("cls", "order"), [(Euler, 1), (RK4, 4)])
def test_trajectory_order_against_matrix_exponential(cls, order):
    # before the steady state the integrator follows x(t) = x* + e^{-Kt}(x0 - x*); halving
    # dt must divide the error at t = 1 by about 2**order
    K, xs = spd(N, 3, lam_max=4.0)
    x0 = np.ones((1, N))
    exact = xs + scipy.linalg.expm(-K * 1.0) @ (x0[0] - xs)
    errs = []
    for T in (20, 40):
        res = solve_steady_state(linear_relax, x0, (K, xs), method=cls(dt=1.0 / T), fixed_steps=T)
        errs.append(np.abs(res.x[0] - exact).max())
    ratio = errs[0] / errs[1]
    assert 0.75 * 2**order < ratio < 1.3 * 2**order, (errs, ratio)


@pytest.mark.parametrize("method", ODE_METHODS, ids=lambda m: type(m).__name__)
def test_box_constrained_steady_state_on_bound(method):
    # dx/dt = 0.5 x + c - x  in [-1, 1]: unconstrained steady state 2c, clipped on the box
    A = np.ascontiguousarray(0.5 * np.eye(N))
    c = np.linspace(-1.0, 1.0, N)
    res = solve_steady_state(
        affine_field, np.zeros((2, N)), (A, c), method=method, bounds=(-1.0, 1.0), atol=1e-10
    )
    want = np.clip(2 * c, -1, 1)
    assert np.sum(np.abs(want) == 1) >= 2
    assert res.converged.all()
    np.testing.assert_allclose(res.x, want[None].repeat(2, 0), atol=1e-9)


def test_hopfield_projected_euler_matches_picard_fixed_point():
    # s <- clip(s + dt (A s + c - s), 0, 1): its steady state is the projected fixed point
    A, c = contraction(N, 0.7, seed=4)
    c = 0.5 + c
    x0 = np.zeros((2, N))
    ode = solve_steady_state(
        affine_field, x0, (A, c), method=Euler(dt=0.5), bounds=(0.0, 1.0), atol=1e-11
    )
    from test_solvers_maps import affine

    from solvers import solve_fixed_point

    fp = solve_fixed_point(affine, x0, (A, c), method=Picard(), bounds=(0.0, 1.0), atol=1e-11)
    assert ode.converged.all() and fp.converged.all()
    np.testing.assert_allclose(ode.x, fp.x, atol=1e-9)
    assert ((ode.x == 0) | (ode.x == 1)).any()  # some unit saturated


def test_euler_fixed_steps_matches_recursion_and_observe():
    K, xs = spd(N, 5)
    x0 = np.zeros((2, N))
    dt = 0.01
    res = solve_steady_state(
        linear_relax,
        x0,
        (K, xs),
        method=Euler(dt=dt),
        fixed_steps=9,
        observe=sq_norm,
        record_every=4,
    )
    assert res.status == Status.FIXED_STEPS and (res.n_iter == 9).all()
    assert res.nfev == 10 and res.residual.shape == (10, 2)
    x = x0[0].copy()
    for _ in range(9):
        x = x - dt * K @ (x - xs)
    np.testing.assert_allclose(res.x[0], x, atol=1e-13)
    np.testing.assert_array_equal(res.observed_iter, [0, 4, 8, 9])
    np.testing.assert_allclose(res.observed[-1], 0.5 * (res.x**2).sum(1))
    rk = solve_steady_state(linear_relax, x0, (K, xs), method=RK4(dt=dt), fixed_steps=3)
    assert rk.nfev == 4 * 3 + 1


def test_dopri5_reports_rejected_steps_and_respects_step_tolerance():
    K, xs = spd(N, 6, lam_max=50.0)
    x0 = np.full((2, N), 3.0)
    loose = solve_steady_state(
        linear_relax, x0, (K, xs), method=Dopri5(dt0=1.0), atol=1e-9, max_iter=5000
    )
    assert loose.converged.all()
    assert (loose.n_rejected > 0).all()  # dt0 = 1 is far too large for lam = 50
    assert loose.nfev == 6 * loose.n_iter.max() + 1
    tight = solve_steady_state(
        linear_relax,
        x0,
        (K, xs),
        method=Dopri5(dt0=1.0, step_atol=1e-12, step_rtol=1e-12),
        atol=1e-9,
        max_iter=5000,
    )
    assert tight.converged.all() and tight.n_iter.max() > loose.n_iter.max()
    np.testing.assert_allclose(tight.x, loose.x, atol=1e-9)


@pytest.mark.parametrize("method", ODE_METHODS, ids=lambda m: type(m).__name__)
def test_divergence_and_nan_per_sample(method):
    # dx/dt = S x + c - x: sample 1 has S = 2 (unstable), others S = 0.5
    n = 4
    c = np.ones(n)
    S = np.full((3, n), 0.5)
    S[1] = 2.0
    from test_solvers_maps import per_sample_field

    res = solve_steady_state(
        per_sample_field,
        np.zeros((3, n)),
        (np.ascontiguousarray(S), c),
        method=method,
        atol=1e-9,
        divergence_bound=1e6,
        max_iter=100000,
    )
    np.testing.assert_array_equal(res.failed, [False, True, False])
    np.testing.assert_allclose(res.x[[0, 2]], 2.0, atol=1e-8)
    assert res.failure_iter[1] > 0 and res.status == Status.FAILED
    with pytest.raises(SolverFailure, match="sample 1 at iteration"):
        solve_steady_state(
            per_sample_field,
            np.zeros((3, n)),
            (np.ascontiguousarray(S), c),
            method=method,
            divergence_bound=1e6,
            raise_on_failure=True,
            max_iter=100000,
        )
    S2 = np.full((3, n), 0.5)
    S2[0, 1] = np.nan  # the field of sample 0 is NaN from the start
    res = solve_steady_state(per_sample_field, np.zeros((3, n)), (S2, c), method=method)
    assert res.failed.tolist() == [True, False, False] and res.failure_iter[0] == 0


def test_float32_in_float32_out_and_batch_equals_single():
    K, xs = spd(N, 7)
    K32, xs32 = K.astype(np.float32), xs.astype(np.float32)
    x0 = np.random.default_rng(8).standard_normal((4, N)).astype(np.float32)
    for method in ODE_METHODS:
        res = solve_steady_state(linear_relax, x0, (K32, xs32), method=method, atol=1e-4)
        assert res.x.dtype == np.float32 and res.converged.all()
        # |x - x*| <= |K (x - x*)| / lam_min = 1e-4 / 0.5
        np.testing.assert_allclose(res.x, xs[None].repeat(4, 0), atol=2.5e-4)
    x0 = x0.astype(np.float64) * np.arange(1, 5)[:, None]
    for method in ODE_METHODS:
        batch = solve_steady_state(linear_relax, x0, (K, xs), method=method, atol=1e-9)
        for b in range(4):
            one = solve_steady_state(linear_relax, x0[b : b + 1], (K, xs), method=method, atol=1e-9)
            # BLAS rounds a batch of 1 and of 4 differently; the stop may move by 1 step
            assert abs(one.n_iter[0] - batch.n_iter[b]) <= 1
            np.testing.assert_allclose(one.x[0], batch.x[b], atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": Picard()}, "Euler"),
        ({"atol": -1e-3}, "atol"),
        ({"max_iter": 0}, "max_iter"),
        ({"bounds": (np.ones(N), np.zeros(N))}, "lo <= hi"),
        ({"x0": np.zeros((2, N), dtype=np.int32)}, "integer"),
        ({"x0": np.zeros((2, 3, N))}, "2-D"),
    ],
)
def test_bad_inputs(kwargs, match):
    K, xs = spd(N, 0)
    x0 = kwargs.pop("x0", np.zeros((2, N)))
    with pytest.raises(ValueError, match=match):
        solve_steady_state(linear_relax, x0, (K, xs), **kwargs)


def test_ode_method_parameters_validated():
    for bad in (
        lambda: Euler(dt=0.0),
        lambda: RK4(dt=-1.0),
        lambda: Dopri5(step_atol=0.0, step_rtol=0.0),
        lambda: Dopri5(dt0=np.inf),
        lambda: Dopri5(safety=1.5),
    ):
        with pytest.raises(ValueError):
            bad()
