"""Tests of solvers.solve_fixed_point against independent routes (numpy, scipy, analytic)."""

import numba
import numpy as np
import pytest
import scipy.optimize
from test_solvers_maps import (
    affine,
    affine_block,
    contraction,
    cosine,
    log_of_scale,
    per_sample_scale,
    sq_norm,
)

from solvers import (
    Anderson,
    GaussSeidel,
    Picard,
    SolverFailure,
    Status,
    solve_fixed_point,
)

N = 12
GS_GROUPS = (((0, 5), (9, 12)), ((5, 9),))
METHODS = [
    Picard(),
    Picard(damping=0.7),
    Anderson(m=5),
    GaussSeidel(groups=GS_GROUPS),
]


def exact(A, c):
    return np.linalg.solve(np.eye(A.shape[0]) - A, c)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.describe())
def test_linear_contraction_matches_numpy_solve(method):
    A, c = contraction(N, 0.8, seed=1)
    x0 = np.random.default_rng(2).standard_normal((4, N))
    res = solve_fixed_point(affine, x0, (A, c), method=method, atol=1e-13, max_iter=5000)
    assert res.status == Status.CONVERGED and res.success
    np.testing.assert_allclose(res.x, np.tile(exact(A, c), (4, 1)), atol=1e-10, rtol=0)
    assert res.x.dtype == np.float64
    assert res.residual.shape == (res.n_iter.max() + 1, 4)
    assert np.all(res.residual[res.n_iter, np.arange(4)] <= 1e-13)


def test_gauss_seidel_with_block_map_matches_full_map():
    A, c = contraction(N, 0.8, seed=3)
    x0 = np.zeros((3, N))
    m = GaussSeidel(groups=GS_GROUPS)
    full = solve_fixed_point(affine, x0, (A, c), method=m, atol=1e-12)
    blk = solve_fixed_point(affine, x0, (A, c), method=m, atol=1e-12, g_block=affine_block)
    np.testing.assert_allclose(blk.x, exact(A, c)[None].repeat(3, 0), atol=1e-10)
    # the same iteration: identical iteration counts, close residual traces
    np.testing.assert_array_equal(full.n_iter, blk.n_iter)
    np.testing.assert_allclose(full.residual, blk.residual, rtol=1e-8, atol=1e-14)
    assert blk.nfev_block == blk.n_iter.max() and full.nfev_block == 0
    assert full.nfev == 2 * full.n_iter.max() + 1 and blk.nfev == blk.n_iter.max() + 1


@pytest.mark.parametrize("method", [Picard(), Anderson()], ids=str)
def test_cosine_fixed_point(method):
    res = solve_fixed_point(cosine, np.zeros((2, 3)), method=method, atol=1e-14)
    np.testing.assert_allclose(res.x, 0.7390851332151607, atol=1e-13, rtol=0)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.describe())
def test_box_constrained_fixed_point_on_bound(method):
    # x = 0.5 x + c with c = (1, -1, 0.2, ...) has unconstrained solution 2c; the box
    # [-1, 1] clips it: the projected fixed point is clip(2c, -1, 1) (diagonal map).
    n = N
    A = np.ascontiguousarray(0.5 * np.eye(n))
    c = np.linspace(-1.0, 1.0, n)
    res = solve_fixed_point(
        affine, np.zeros((2, n)), (A, c), method=method, bounds=(-1.0, 1.0), atol=1e-12
    )
    want = np.clip(2 * c, -1, 1)
    assert np.sum(np.abs(want) == 1) >= 4  # several components sit on a bound
    np.testing.assert_allclose(res.x, want[None].repeat(2, 0), atol=1e-10)
    assert res.x.min() >= -1 and res.x.max() <= 1


def test_bounds_arrays_and_projection_of_x0():
    A, c = contraction(N, 0.5, seed=4)
    lo = np.full(N, -0.1)
    hi = np.full(N, 0.1)
    x0 = np.full((1, N), 5.0)
    res = solve_fixed_point(
        affine, x0, (A, c), method=Anderson(), bounds=(lo, hi), atol=1e-12, max_iter=2000
    )
    assert res.converged.all()
    x = res.x[0]
    assert np.all((x >= lo) & (x <= hi))
    # projected fixed point: x = clip(A x + c)
    np.testing.assert_allclose(x, np.clip(A @ x + c, lo, hi), atol=1e-11)


@pytest.mark.parametrize("solver", ["anderson", "newton_krylov"])
def test_matches_scipy(solver):
    A, c = contraction(N, 0.9, seed=5)
    x0 = np.zeros((1, N))
    ours = solve_fixed_point(affine, x0, (A, c), method=Anderson(), atol=1e-11, max_iter=3000)

    def F(x):
        return A @ x + c - x

    ref = getattr(scipy.optimize, solver)(F, np.zeros(N), f_tol=1e-11)
    np.testing.assert_allclose(ours.x[0], ref, atol=1e-8)
    np.testing.assert_allclose(ours.x[0], exact(A, c), atol=1e-10)


def test_anderson_needs_three_times_fewer_iterations_than_picard():
    A, c = contraction(40, 0.95, seed=6)
    x0 = np.zeros((2, 40))
    pic = solve_fixed_point(affine, x0, (A, c), atol=1e-10, max_iter=5000)
    aa = solve_fixed_point(affine, x0, (A, c), method=Anderson(m=5), atol=1e-10)
    assert pic.converged.all() and aa.converged.all()
    assert 3 * aa.n_iter.max() <= pic.n_iter.min(), (aa.n_iter, pic.n_iter)
    # both stop at residual 1e-10 of a slowly contracting map: agree to ~4e-9
    np.testing.assert_allclose(aa.x, pic.x, atol=1e-7)


def test_divergence_and_nan_reported_per_sample_and_raised():
    n = 6
    c = np.ones(n)
    S = np.full((3, n), 0.5)
    S[1] = 2.0  # sample 1 expands: x_k = 2^k - 1 -> residual grows like 2^k
    S = np.ascontiguousarray(S)
    for method in (Picard(), Anderson(), GaussSeidel(groups=(((0, 3),), ((3, 6),)))):
        res = solve_fixed_point(
            per_sample_scale,
            np.zeros((3, n)),
            (S, c),
            method=method,
            atol=1e-10,
            divergence_bound=1e6,
        )
        assert res.status == Status.FAILED and not res.success
        np.testing.assert_array_equal(res.failed, [False, True, False])
        np.testing.assert_array_equal(res.converged, [True, False, True])
        np.testing.assert_allclose(res.x[[0, 2]], 2.0, atol=1e-9)
        assert res.failure_iter[1] > 0 and res.failure_iter[0] == -1
        assert res.residual[res.failure_iter[1], 1] > 1e6
        assert "sample 1" in res.message
    with pytest.raises(SolverFailure, match=r"sample 1 at iteration \d+") as info:
        solve_fixed_point(
            per_sample_scale,
            np.zeros((3, n)),
            (S, c),
            divergence_bound=1e6,
            raise_on_failure=True,
        )
    assert info.value.samples.tolist() == [1]
    # NaN from the map in sample 2 only
    S2 = np.ones((3, n))
    S2[2, 4] = -1.0
    res = solve_fixed_point(log_of_scale, np.zeros((3, n)), (S2, c), atol=1e-10)
    np.testing.assert_array_equal(res.failed, [False, False, True])
    assert res.failure_iter[2] == 0 and res.converged[:2].all()
    np.testing.assert_allclose(res.x[:2], 2.0, atol=1e-9)
    assert np.isnan(res.residual[0, 2]) and np.isnan(res.residual[1:, 2]).all()
    with pytest.raises(SolverFailure, match="sample 2 at iteration 0"):
        solve_fixed_point(log_of_scale, np.zeros((3, n)), (S2, c), raise_on_failure=True)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.describe())
def test_batched_equals_single(method):
    A, c = contraction(N, 0.9, seed=7)
    x0 = np.random.default_rng(8).standard_normal((5, N)) * np.arange(1, 6)[:, None]
    batch = solve_fixed_point(affine, x0, (A, c), method=method, atol=1e-9, max_iter=3000)
    for b in range(5):
        one = solve_fixed_point(affine, x0[b : b + 1], (A, c), method=method, atol=1e-9)
        assert one.n_iter[0] == batch.n_iter[b]
        # BLAS may round a batch of 1 differently from a batch of 5: 1e-12, not 0
        np.testing.assert_allclose(one.x[0], batch.x[b], rtol=0, atol=1e-12)
        k = one.n_iter[0] + 1
        # (Anderson's small least-squares systems amplify that rounding in the residual
        # near convergence: 5e-12 measured at a residual of 2e-5)
        np.testing.assert_allclose(one.residual[:k, 0], batch.residual[:k, b], atol=1e-10)


def test_float32_in_float32_out():
    A, c = contraction(N, 0.8, seed=9, dtype=np.float32)
    x0 = np.zeros((3, N), dtype=np.float32)
    for method in METHODS:
        res = solve_fixed_point(affine, x0, (A, c), method=method, atol=1e-5)
        assert res.x.dtype == np.float32 and res.converged.all()
        want = exact(A.astype(np.float64), c.astype(np.float64))
        np.testing.assert_allclose(res.x, want[None].repeat(3, 0), atol=1e-4)
        assert res.residual.dtype == np.float64


def test_nan_padding_of_traces_and_observe():
    A, c = contraction(N, 0.8, seed=10)
    x0 = np.zeros((3, N))
    x0[1] = exact(A, c)  # already at the fixed point: stops at iteration 0
    x0[2] = 100.0
    res = solve_fixed_point(
        affine, x0, (A, c), atol=1e-9, observe=sq_norm, record_every=3, max_iter=500
    )
    assert res.n_iter[1] == 0 and res.n_iter[2] > res.n_iter[0] > 0
    for b in range(3):
        k = res.n_iter[b]
        assert np.all(np.isfinite(res.residual[: k + 1, b]))
        assert np.all(np.isnan(res.residual[k + 1 :, b]))
        assert np.all(np.isnan(res.residual_rel[k + 1 :, b]))
        assert np.all(np.diff(res.residual[: k + 1, b]) != 0)  # never a repeated value
    # relative residual definition
    np.testing.assert_allclose(res.residual_rel[0, 2], res.residual[0, 2] / 100.0)
    last = res.n_iter.max()
    assert res.observed_iter[0] == 0 and res.observed_iter[-1] == last
    assert np.all(np.diff(res.observed_iter[:-1]) == 3)
    np.testing.assert_allclose(res.observed[0], 0.5 * (x0**2).sum(1))
    np.testing.assert_allclose(res.observed[-1, 2], 0.5 * (res.x[2] ** 2).sum())
    assert np.isnan(res.observed[1:, 1]).all()


def test_fixed_steps_runs_exactly_T_updates():
    A, c = contraction(N, 0.5, seed=11)
    x0 = np.zeros((2, N))
    x0[1] = exact(A, c)
    for T in (1, 7):
        res = solve_fixed_point(affine, x0, (A, c), fixed_steps=T, atol=1e-12)
        assert res.status == Status.FIXED_STEPS and res.success
        np.testing.assert_array_equal(res.n_iter, [T, T])
        assert res.residual.shape == (T + 1, 2) and res.nfev == T + 1
        x = x0[0]
        for _ in range(T):
            x = A @ x + c
        np.testing.assert_allclose(res.x[0], x, atol=1e-13)
    assert res.converged.tolist() == [False, True]
    # with a loose tolerance `converged` reports the final residual
    res = solve_fixed_point(affine, x0, (A, c), fixed_steps=60, atol=1e-8)
    assert res.converged.all() and (res.n_iter == 60).all()


def test_max_iter_status():
    A, c = contraction(N, 0.95, seed=12)
    res = solve_fixed_point(affine, np.zeros((2, N)), (A, c), max_iter=5, atol=1e-12)
    assert res.status == Status.MAX_ITER and not res.success
    assert (res.n_iter == 5).all() and not res.converged.any()
    assert res.residual.shape == (6, 2) and res.nfev == 6


def test_rtol_mixed_tolerance():
    A, c = contraction(N, 0.9, seed=13)
    x0 = np.zeros((1, N))
    res = solve_fixed_point(affine, x0, (A, c), atol=0.0, rtol=1e-6)
    k = res.n_iter[0]
    assert res.residual[k, 0] <= 1e-6 * np.abs(res.x).max()
    assert res.residual[k - 1, 0] > 1e-6 * 0.5 * np.abs(res.x).max()


def _plain(x, out, args):
    out[:] = x


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x0": np.zeros(N)}, "2-D"),
        ({"x0": np.zeros((2, N), dtype=np.int64)}, "integer"),
        ({"x0": np.full((2, N), np.nan)}, "non-finite"),
        ({"x0": np.zeros((2, N), dtype=np.float16)}, "float32, float64, complex64 or complex128"),
        ({"atol": -1.0}, "atol"),
        ({"rtol": np.nan}, "rtol"),
        ({"max_iter": 0}, "max_iter"),
        ({"fixed_steps": 0}, "fixed_steps"),
        ({"record_every": 0}, "record_every"),
        ({"bounds": (1.0, 0.0)}, "lo <= hi"),
        ({"bounds": (np.zeros(3), 1.0)}, "shape"),
        ({"g": _plain}, "njit"),
        ({"args": [1.0]}, "tuple"),
        ({"divergence_bound": 0.0}, "divergence_bound"),
        ({"method": GaussSeidel(groups=(((0, 4),),))}, "partition"),
        ({"observe": _plain}, "njit"),
    ],
)
def test_bad_inputs_raise_value_error(kwargs, match):
    A, c = contraction(N, 0.5, seed=0)
    call = {"g": affine, "x0": np.zeros((2, N)), "args": (A, c)}
    call.update(kwargs)
    g = call.pop("g")
    x0 = call.pop("x0")
    args = call.pop("args")
    with pytest.raises(ValueError, match=match):
        solve_fixed_point(g, x0, args, **call)


def test_args_dtype_mismatch_raises():
    A, c = contraction(N, 0.5, seed=0)
    with pytest.raises(ValueError, match="astype"):
        solve_fixed_point(affine, np.zeros((2, N), dtype=np.float32), (A, c))


def test_method_parameters_validated():
    for bad in (
        lambda: Picard(damping=0.0),
        lambda: Picard(damping=2.5),
        lambda: Anderson(m=0),
        lambda: Anderson(reg=-1.0),
        lambda: Anderson(damping=1.5),
        lambda: GaussSeidel(groups=()),
        lambda: GaussSeidel(groups=(((3, 1),),)),
    ):
        with pytest.raises(ValueError):
            bad()


def test_noncontiguous_args_accepted():
    A, c = contraction(N, 0.5, seed=14)
    At = np.asfortranarray(A)
    res = solve_fixed_point(affine, np.zeros((1, N)), (At, c), atol=1e-12)
    np.testing.assert_allclose(res.x[0], exact(A, c), atol=1e-10)


def test_anderson_rank_deficient_history_restarts_and_converges():
    # one unknown: every difference is collinear, the Gram matrix of m > 1 differences is
    # singular, so the restart safeguard must fire; the solve still converges
    A = np.array([[0.9]])
    c = np.array([1.0])
    for m in (1, 3, 8):
        res = solve_fixed_point(
            affine, np.zeros((2, 1)), (A, c), method=Anderson(m=m, reg=0.0), atol=1e-12
        )
        assert res.converged.all()
        np.testing.assert_allclose(res.x, 10.0, atol=1e-10)


@pytest.mark.parametrize("growth", [1.0, np.inf])
def test_anderson_with_bounds_and_without_growth_safeguard(growth):
    A, c = contraction(N, 0.95, seed=15)
    res = solve_fixed_point(
        affine,
        np.zeros((3, N)),
        (A, c),
        method=Anderson(m=4, growth=growth),
        bounds=(-0.5, 0.5),
        atol=1e-11,
        max_iter=3000,
    )
    assert res.converged.all()
    x = res.x
    np.testing.assert_allclose(x, np.clip(x @ A.T + c, -0.5, 0.5), atol=1e-10)


def test_anderson_on_clipped_affine_map_whose_active_set_changes():
    # x -> clip(A x + c, 0, 1) is piecewise affine; its fixed point has components at
    # both bounds, and the starts (all 0, all 1, mixed) have other sets of clipped units,
    # so the set changes during the solve. Reference: Picard (a contraction in the
    # max-norm under the projection) to the same tolerance.
    n = 40
    A, _ = contraction(n, 0.95, seed=21)
    c = np.random.default_rng(22).uniform(-1.5, 2.5, n)
    x0 = np.zeros((3, n))
    x0[1] = 1.0
    x0[2, ::2] = 1.0
    pic = solve_fixed_point(affine, x0, (A, c), bounds=(0.0, 1.0), atol=1e-11, max_iter=20000)
    aa = solve_fixed_point(
        affine, x0, (A, c), method=Anderson(m=5), bounds=(0.0, 1.0), atol=1e-11, max_iter=3000
    )
    assert pic.converged.all() and aa.converged.all(), (aa.residual[-1], aa.n_iter)
    xs = pic.x[0]
    lower, upper = xs <= 0.0, xs >= 1.0
    assert lower.any() and upper.any() and not (lower | upper).all()
    for b in range(3):  # the start's clipped set differs from the fixed point's
        g0 = np.clip(A @ x0[b] + c, 0.0, 1.0)
        assert not np.array_equal(g0 <= 0.0, lower) or not np.array_equal(g0 >= 1.0, upper)
    np.testing.assert_allclose(aa.x, pic.x, atol=1e-9)
    np.testing.assert_allclose(aa.x, np.clip(aa.x @ A.T + c, 0.0, 1.0), atol=1e-10)
    # Picard until the clipped set settles, then accelerated: fewer iterations than Picard
    assert aa.n_iter.max() < pic.n_iter.min(), (aa.n_iter, pic.n_iter)


@numba.njit(cache=True)
def affine_per_sample(x, out, args):
    """out = x @ A.T + C (the map x -> A x + c_b, with its own c_b for each sample b)."""
    A, C = args
    out[:] = np.dot(x, A.T)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] += C[b, i]


def test_anderson_from_zero_on_clipped_layered_hopfield_like_maps():
    # Regression test of the active-set restart: a small hard-sigmoid Hopfield-like
    # network (layers 30-30-30-10, symmetric coupling between neighbouring layers at
    # 0.7x Glorot, an input drive of the first layer and biases that differ per sample)
    # and the eps=0.5 step map s -> clip(s/2 + (W s + c_b)/2, 0, 1), from s = 0. Many
    # units saturate (69 % at the fixed point) and the clipped set changes a lot on the
    # way. Without the restart (before ea84190), Anderson(m=5) stalls on 22 of the 64
    # samples (residual 5e-5 to 0.17, median 0.06, at 400 iterations); with it every
    # sample converges in at most 138 iterations (Picard: 661).
    sizes, n_in, B = (30, 30, 30, 10), 80, 64
    rng = np.random.default_rng(2)
    n = sum(sizes)
    W = np.zeros((n, n))
    off = np.cumsum((0, *sizes))
    for k in range(len(sizes) - 1):
        a, b = sizes[k], sizes[k + 1]
        w = rng.uniform(-1, 1, (b, a)) * 0.7 * np.sqrt(6 / (a + b))
        W[off[k + 1] : off[k + 2], off[k] : off[k + 1]] = w
        W[off[k] : off[k + 1], off[k + 1] : off[k + 2]] = w.T
    w_in = rng.uniform(-1, 1, (sizes[0], n_in)) * 0.7 * np.sqrt(6 / (n_in + sizes[0]))
    C = np.zeros((B, n))
    C[:, : sizes[0]] = rng.uniform(0, 1, (B, n_in)) @ w_in.T
    C += rng.uniform(-0.5, 0.5, n)
    A = np.ascontiguousarray(0.5 * np.eye(n) + 0.5 * W)
    C = np.ascontiguousarray(0.5 * C)
    x0 = np.zeros((B, n))
    kw = dict(bounds=(0.0, 1.0), atol=1e-10)
    pic = solve_fixed_point(affine_per_sample, x0, (A, C), max_iter=5000, **kw)
    aa = solve_fixed_point(affine_per_sample, x0, (A, C), method=Anderson(m=5), max_iter=400, **kw)
    assert pic.converged.all()
    xs = pic.x
    sat = (xs <= 0.0) | (xs >= 1.0)
    assert 0.2 < sat.mean() < 0.9  # many units at a bound, many not
    assert aa.converged.all(), (int(aa.converged.sum()), np.nanmax(aa.residual[-1]))
    assert aa.n_iter.max() < pic.n_iter.max() / 2, (aa.n_iter.max(), pic.n_iter.max())
    # both stop at residual 1e-10 of a slowly contracting map: agree to ~4e-9
    np.testing.assert_allclose(aa.x, pic.x, atol=1e-7)


hyp = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 9),
    batch=st.integers(1, 4),
    rho=st.floats(0.05, 0.9),
    seed=st.integers(0, 2**16),
    which=st.sampled_from(["picard", "anderson", "gauss-seidel"]),
)
def test_random_contractions_property(n, batch, rho, seed, which):
    A, c = contraction(n, rho, seed=seed)
    x0 = np.random.default_rng(seed + 1).standard_normal((batch, n))
    if which == "picard":
        method = Picard()
    elif which == "anderson":
        method = Anderson(m=3)
    else:
        cut = max(1, n // 2)
        groups = (((0, cut),),) if cut == n else (((0, cut),), ((cut, n),))
        method = GaussSeidel(groups=groups)
    res = solve_fixed_point(affine, x0, (A, c), method=method, atol=1e-11, max_iter=5000)
    assert res.success
    want = exact(A, c)
    np.testing.assert_allclose(res.x, np.broadcast_to(want, (batch, n)), atol=1e-9)
    # residual trace: finite up to n_iter, NaN after, last value within tolerance
    for b in range(batch):
        k = res.n_iter[b]
        assert res.residual[k, b] <= 1e-11
        assert np.isnan(res.residual[k + 1 :, b]).all()


def test_warmup_compiles_and_returns_time():
    import time

    from solvers import fixed_point, warmup

    A, c = contraction(N, 0.5, seed=0)
    t0 = time.perf_counter()
    t = warmup(affine, np.zeros((5, N)), (A, c), g_block=affine_block, observe=sq_norm)
    assert 0 < t <= time.perf_counter() - t0
    sigs = {k: len(d.signatures) for k, d in fixed_point._drivers.items()}
    assert sigs and all(sigs.values())
    # afterwards a solve with other method/batch/tolerance reuses the compiled driver
    res = solve_fixed_point(
        affine,
        np.zeros((3, N)),
        (A, c),
        method=Anderson(),
        atol=1e-12,
        g_block=affine_block,
        observe=sq_norm,
    )
    assert res.converged.all()
    assert {k: len(d.signatures) for k, d in fixed_point._drivers.items()} == sigs
    with pytest.raises(ValueError, match="njit"):
        warmup(lambda x, out, args: None, np.zeros((1, N)))


def test_new_map_of_same_types_reuses_the_compiled_driver():
    # the driver is compiled per (dtype, args type, observe type), never per function
    import numba

    from solvers import fixed_point

    A, c = contraction(N, 0.5, seed=16)
    solve_fixed_point(affine, np.zeros((1, N)), (A, c), fixed_steps=1)
    n_drivers = len(fixed_point._drivers)
    driver = next(iter(fixed_point._drivers.values()))
    n_sigs = [len(d.signatures) for d in fixed_point._drivers.values()]

    @numba.njit
    def another(x, out, args):
        _, c = args
        for b in range(x.shape[0]):
            for i in range(x.shape[1]):
                out[b, i] = 0.5 * x[b, i] + c[i]

    for method in (Picard(), Anderson(), GaussSeidel(groups=GS_GROUPS)):
        res = solve_fixed_point(another, np.zeros((2, N)), (A, c), method=method, atol=1e-12)
        np.testing.assert_allclose(res.x, np.broadcast_to(2 * c, (2, N)), atol=1e-10)
    assert len(fixed_point._drivers) == n_drivers
    assert [len(d.signatures) for d in fixed_point._drivers.values()] == n_sigs
    assert driver.signatures


@pytest.mark.slow
def test_driver_is_loaded_from_the_disk_cache_in_a_new_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import numpy as np, numba\n"
        "from solvers import solve_fixed_point, fixed_point\n"
        "@numba.njit\n"
        "def g(x, out, args):\n"
        "    out[:] = 0.5 * x\n"
        "solve_fixed_point(g, np.ones((2, 3)), fixed_steps=2)\n"
        "d = next(iter(fixed_point._drivers.values()))\n"
        "print(sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(root))
    outs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert outs[0] == ["0", "1"]  # first process: compiled (and written to the cache)
    assert outs[1] == ["1", "0"]  # second process: loaded, no compilation


def test_final_residual_is_each_samples_last_recorded_residual():
    A, c = contraction(N, 0.5, seed=21)
    x0 = np.zeros((3, N))
    x0[1] = 5.0  # starts farther away: more iterations
    res = solve_fixed_point(affine, x0, (A, c), atol=1e-10)
    fr = res.final_residual
    assert fr.shape == (3,)
    for b in range(3):
        assert fr[b] == res.residual[res.n_iter[b], b] <= 1e-10
    assert res.n_iter[1] > res.n_iter[0]
    res.residual[:, 2] = np.nan
    assert np.isnan(res.final_residual[2]) and res.final_residual[0] == fr[0]
