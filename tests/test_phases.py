"""Phases: free/nudged dynamics through solvers, energies along trajectories, fixed points."""

import numpy as np
import pytest

import eqprop as E
import solvers


def _net(
    kind="hopfield",
    act="hardsigmoid",
    cost="squared",
    sizes=(6, 5, 3),
    dtype="float64",
    seed=0,
    gain=1.0,
):
    net = E.init_network(
        sizes, kind=kind, activation=act, cost=cost, dtype=dtype, seed=seed, gain=gain
    )
    rng = np.random.default_rng(seed + 100)
    for b in net.biases:
        b[:] = rng.normal(scale=0.3, size=b.shape)
    x = rng.random((4, sizes[0])).astype(dtype)
    d = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], 4)]
    return net, x, d


@pytest.mark.parametrize("act", ["hardsigmoid", "sigmoid", "tanh"])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_energy_never_increases_along_gradient_flow(act, beta):
    net, x, d = _net(act=act, gain=2.0)
    dyn = E.Dynamics(T=200, eps=0.05, record_energy=True)
    ph = E.run_phase(net, x, dyn, beta=beta, d=d, steps=200)
    Ftr = ph.result.observed
    assert Ftr is not None and Ftr.shape[0] >= 200
    inc = np.diff(Ftr, axis=0)
    assert inc.max() <= 1e-12, inc.max()
    assert (Ftr[-1] < Ftr[0]).all()  # it does move
    # the recorded energy is the total function F of the state
    np.testing.assert_allclose(Ftr[-1], E.energy(net, x, ph.state, d, beta), rtol=1e-12)


@pytest.mark.parametrize("act", ["hardsigmoid", "sigmoid"])
def test_free_fixed_point_satisfies_projected_step(act):
    net, x, _ = _net(act=act)
    eps = 0.5
    dyn = E.Dynamics(eps=eps, method="picard", atol=1e-12, max_iter=5000)
    ph = E.free_phase(net, x, dyn)
    assert ph.result.converged.all()
    s = ph.state
    step = s - eps * E.state_gradient(net, x, s)
    if act == "hardsigmoid":
        step = np.clip(step, 0, 1)
    np.testing.assert_allclose(step, s, atol=1e-11)
    # and not trivially: the state is not all zero
    assert np.abs(s).max() > 0.05


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
@pytest.mark.parametrize("method", ["anderson", "gauss-seidel", "euler", "rk4", "dopri5"])
def test_generic_solvers_reach_the_same_free_state(kind, method):
    net, x, _ = _net(kind=kind, act="sigmoid", sizes=(6, 5, 4, 3), gain=0.8)
    ref = E.free_phase(net, x, E.Dynamics(method="picard", atol=1e-12, max_iter=5000))
    assert ref.result.converged.all()
    dyn = E.Dynamics(method=method, eps=0.5, atol=1e-10, max_iter=20000)
    ph = E.free_phase(net, x, dyn)
    assert ph.result.converged.all(), ph.result.message
    np.testing.assert_allclose(ph.state, ref.state, atol=1e-8)


def test_solver_method_objects_are_accepted():
    net, x, _ = _net(act="sigmoid")
    a = E.free_phase(net, x, E.Dynamics(method=solvers.Anderson(m=3), atol=1e-12))
    b = E.free_phase(net, x, E.Dynamics(method="picard", atol=1e-12, max_iter=5000))
    np.testing.assert_allclose(a.state, b.state, atol=1e-9)


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
@pytest.mark.parametrize("cost", ["squared", "cross-entropy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("damping", [1.0, 0.3, 1.4])
def test_fused_path_equals_generic_solvers_path(kind, cost, dtype, damping):
    net, x, d = _net(kind=kind, cost=cost, sizes=(6, 5, 4, 3), dtype=dtype)
    tol = 1e-6 if dtype == "float32" else 1e-13
    # damped: the update is rounded in another order than the solvers' (about 1 ulp per
    # step, amplified by over-relaxation), so compare relative to the values
    rtol = 0.0 if damping == 1.0 else (1e-5 if dtype == "float32" else 1e-12)
    for nudge in ("inside", "outside"):
        a_dyn = E.Dynamics(T=15, K=6, eps=0.4, nudge=nudge, damping=damping)
        f_dyn = E.Dynamics(T=15, K=6, eps=0.4, nudge=nudge, damping=damping, method="fused")
        fa, ff = E.free_phase(net, x, a_dyn), E.free_phase(net, x, f_dyn)
        np.testing.assert_allclose(ff.state, fa.state, rtol=rtol, atol=tol)
        na = E.nudged_phase(net, x, d, 0.7, a_dyn, s0=fa.state)
        nf = E.nudged_phase(net, x, d, 0.7, f_dyn, s0=ff.state)
        np.testing.assert_allclose(nf.state, na.state, rtol=rtol, atol=tol)
        assert nf.state.dtype == np.dtype(dtype)
        res_f, res_a = nf.result.residual[-2], na.result.residual[-2]
        np.testing.assert_allclose(res_f, res_a, rtol=max(rtol, 1e-9), atol=tol / damping)


@pytest.mark.parametrize("method", ["fixed", "fused"])
def test_damped_prototypical_step_is_ernoults_dt_step(method):
    """damping = dt of the code of Ernoult et al. (2019): every layer moves by
    ``dt (-s + rho(drive))`` from the same old state, the output adds ``dt beta (d - y)``
    (nudge outside); written here in NumPy from that update rule."""
    net, x, d = _net(kind="prototypical", act="sigmoid", sizes=(6, 5, 3), gain=1.5)
    dt, beta, T, K = 0.2, 0.3, 9, 4
    W1, W2 = net.weights
    b1, b2 = net.biases
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, y = np.zeros((x.shape[0], 5)), np.zeros((x.shape[0], 3))
    for t in range(T + K):
        nudge = beta * (d - y) if t >= T else 0.0
        h, y = (
            h + dt * (-h + sig(x @ W1 + b1 + y @ W2.T)),
            y + dt * (-y + sig(h @ W2 + b2) + nudge),
        )
    dyn = E.Dynamics(T=T, K=K, method=method, damping=dt, nudge="outside")
    free = E.free_phase(net, x, dyn)
    s = E.nudged_phase(net, x, d, beta, dyn, s0=free.state).state
    np.testing.assert_allclose(s, np.hstack([h, y]), rtol=0, atol=1e-13)
    undamped = E.free_phase(net, x, E.Dynamics(T=T, method=method, nudge="outside"))
    assert np.abs(undamped.state - free.state).max() > 1e-3


def test_fixed_euler_equals_projected_euler_by_hand():
    net, x, _ = _net(act="hardsigmoid", gain=2.0)
    eps, T = 0.3, 7
    s = np.zeros((4, net.n_state))
    for _ in range(T):
        s = np.clip(s - eps * E.state_gradient(net, x, s), 0, 1)
    a = E.free_phase(net, x, E.Dynamics(T=T, eps=eps))
    b = E.free_phase(net, x, E.Dynamics(T=T, eps=eps, method="euler", fixed_steps=True))
    np.testing.assert_allclose(a.state, s, atol=1e-13)
    np.testing.assert_allclose(b.state, s, atol=1e-13)
    assert a.result.n_iter.tolist() == [T] * 4


@pytest.mark.parametrize("nudge", ["inside", "outside"])
def test_prototypical_nudged_fixed_point_equation(nudge):
    net, x, d = _net(kind="prototypical", act="sigmoid", sizes=(6, 5, 3), gain=0.5)
    beta = 0.4
    dyn = E.Dynamics(method="picard", nudge=nudge, atol=1e-13, max_iter=5000)
    s = E.nudged_phase(net, x, d, beta, dyn).state
    W1, W2 = net.weights
    b1, b2 = net.biases
    h, y = s[:, :5], s[:, 5:]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(h, sig(x @ W1 + b1 + y @ W2.T), atol=1e-11)
    if nudge == "inside":
        np.testing.assert_allclose(y, sig(h @ W2 + b2 + beta * (d - y)), atol=1e-11)
    else:
        np.testing.assert_allclose(y, sig(h @ W2 + b2) + beta * (d - y), atol=1e-11)


def test_cross_entropy_nudge_acts_through_the_readout():
    net, x, d = _net(kind="prototypical", act="sigmoid", cost="cross-entropy", sizes=(6, 5, 3))
    beta = 0.5
    s = E.nudged_phase(net, x, d, beta, E.Dynamics(method="picard", atol=1e-13)).state
    W1, W2 = net.weights
    b1, b2 = net.biases
    z = s @ W2 + b2
    o = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(
        s, 1 / (1 + np.exp(-(x @ W1 + b1 + beta * (d - o) @ W2.T))), atol=1e-11
    )
    np.testing.assert_allclose(E.predict(net, x, E.Dynamics(T=50)).sum(1), 1.0)


def test_persistent_particles_start_from_s0():
    net, x, _ = _net(act="sigmoid")
    dyn = E.Dynamics(method="picard", atol=1e-12, max_iter=5000)
    s_star = E.free_phase(net, x, dyn).state
    again = E.free_phase(net, x, dyn, s0=s_star)
    assert again.result.n_iter.max() <= 2
    s0 = s_star.copy()
    E.free_phase(net, x, E.Dynamics(T=3), s0=s0)
    np.testing.assert_array_equal(s0, s_star)  # s0 is not modified


def test_clamped_input_is_shared_and_predict_shape():
    net, x, _ = _net()
    cx = E.clamp(net, x)
    np.testing.assert_allclose(cx.drive, x @ net.weights[0] + net.biases[0])
    dyn = E.Dynamics(T=10)
    np.testing.assert_array_equal(E.free_phase(net, cx, dyn).state, E.free_phase(net, x, dyn).state)
    assert E.predict(net, x, dyn).shape == (4, 3)


def test_bad_phase_inputs():
    net, x, d = _net()
    dyn = E.Dynamics()
    with pytest.raises(ValueError, match=r"shape \(batch, 6\)"):
        E.free_phase(net, np.zeros((4, 7)), dyn)
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        E.free_phase(net, bad, dyn)
    with pytest.raises(ValueError, match="beta != 0"):
        E.nudged_phase(net, x, d, 0.0, dyn)
    with pytest.raises(ValueError, match="targets"):
        E.nudged_phase(net, x, None, 1.0, dyn)
    with pytest.raises(ValueError, match="n_state"):
        E.free_phase(net, x, dyn, s0=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="unknown method"):
        E.Dynamics(method="newton")
    with pytest.raises(ValueError, match="solvers method"):
        E.Dynamics(method=3.0)
    with pytest.raises(ValueError, match="unknown nudge"):
        E.Dynamics(nudge="sideways")
    with pytest.raises(ValueError, match="T must be"):
        E.Dynamics(T=0)
    with pytest.raises(ValueError, match="eps"):
        E.Dynamics(eps=-1.0)
    with pytest.raises(ValueError, match="fused"):
        E.Dynamics(method="fused", record_energy=True)


@pytest.mark.parametrize(("eps", "damping"), [(0.5, 1.0), (1.0, 1.0), (1.0, 1.5)])
def test_gauss_seidel_parity_reaches_the_picard_fixed_point(eps, damping):
    """Odd/even layer blocks (3 hidden layers + output: groups {1, 3}, {2, 4}) with a
    damping reach the fixed point that plain Picard steps of the eps=0.5 map reach.
    Weak couplings (gain 0.7) keep the energy convex, so that fixed point is unique; with
    strong ones, different iterations may settle in different minima."""
    net, x, _ = _net(sizes=(6, 7, 5, 6, 3), gain=0.7)
    ref = E.free_phase(net, x, E.Dynamics(method="picard", atol=1e-13, max_iter=20000))
    assert ref.result.converged.all()
    dyn = E.Dynamics(
        method="gauss-seidel-parity", eps=eps, damping=damping, atol=1e-12, max_iter=5000
    )
    ph = E.free_phase(net, x, dyn)
    assert ph.result.converged.all(), ph.result.message
    np.testing.assert_allclose(ph.state, ref.state, atol=1e-10)
    assert np.abs(ref.state).max() > 0.05
    # exact block updates need fewer sweeps than the eps=0.5 Picard steps
    if eps == 1.0:
        assert ph.result.n_iter.max() < ref.result.n_iter.max()


def test_gauss_seidel_parity_groups_are_odd_then_even_layers():
    net, _, _ = _net(sizes=(6, 7, 5, 6, 3))
    method, is_fp = E.phases._solver_method(net, E.Dynamics(method="gauss-seidel-parity"))
    off = [int(v) for v in net.offsets]
    assert is_fp
    odd, even = ((off[0], off[1]), (off[2], off[3])), ((off[1], off[2]), (off[3], off[4]))
    assert method.groups == (odd, even)
    parity = E.Dynamics(method="gauss-seidel-parity")
    one, _ = E.phases._solver_method(_net(sizes=(6, 3))[0], parity)
    assert one.groups == (((0, 3),),)


def test_dynamics_damping_is_checked():
    assert E.Dynamics(method="picard", damping=1.5).damping == 1.5
    with pytest.raises(ValueError, match=r"damping must be in \(0, 2\)"):
        E.Dynamics(method="picard", damping=2.0)
    with pytest.raises(ValueError, match="damping applies to the methods"):
        E.Dynamics(method="euler", damping=1.5)
    with pytest.raises(ValueError, match="damping applies to the methods"):
        E.Dynamics(method="rk4", damping=0.5)


def test_fixed_steps_result_verdicts_and_refusals():
    """The result of fixed steps run outside ``solvers``: converged iff the residual meets
    ``atol + rtol max|x|``, failed iff it or the state is not finite, the residual in row
    ``n_steps - 1`` only; refuses a non-NumPy state without ``finite``/``xmax``."""
    from eqprop.phases import fixed_steps_result

    x = np.array([[0.5, -2.0], [1.0, 1.0], [np.inf, 0.0], [0.1, 0.1]])
    r = np.array([1e-3, 0.5, 1e-9, np.nan])
    dyn = E.Dynamics(T=3, atol=1e-2, rtol=0.1)
    res = fixed_steps_result(x, r, 3, dyn, 0.0, "test")
    # tolerance atol + rtol max|x|: 0.21 and 0.11; rows 2 and 3 fail (inf state, NaN r)
    assert res.converged.tolist() == [True, False, False, False]
    assert res.failed.tolist() == [False, False, True, True]
    assert res.failure_iter.tolist() == [-1, -1, 3, 3]
    assert res.status == solvers.Status.FAILED and res.method == "test Picard(damping=1)"
    np.testing.assert_array_equal(res.residual[2], r)
    assert np.isnan(np.delete(res.residual, 2, axis=0)).all()
    np.testing.assert_allclose(res.residual_rel[2, :2], [1e-3 / 2.0, 0.5 / 1.0])
    ok = fixed_steps_result(x[:2], r[:2], 3, dyn, 0.0, "test", method="m")
    assert ok.status == solvers.Status.FIXED_STEPS and ok.method == "m"
    with pytest.raises(solvers.SolverFailure, match="2 samples failed"):
        fixed_steps_result(x, r, 3, E.Dynamics(T=3, raise_on_failure=True), 0.0, "test")
    with pytest.raises(TypeError, match="finite and xmax"):
        fixed_steps_result(x.tolist(), r, 3, dyn, 0.0, "test")
