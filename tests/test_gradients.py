"""Reference gradients: BPTT vs finite differences, recurrent backprop vs BPTT, active set.

Every check compares two independent routes: the hand-derived backward passes of
``eqprop.gradients`` against central differences of the network's own forward dynamics
(``eqprop.kernels`` through ``eqprop.phases``), or two different solves of the same system.
"""

from __future__ import annotations

import numpy as np
import pytest

from eqprop import gradients as G
from eqprop.network import init_network, output
from eqprop.phases import Dynamics, clamp, free_phase

KINDS = ("hopfield", "prototypical")
COSTS = ("squared", "cross-entropy")


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _batch(sizes, batch=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch, sizes[0]))
    d = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    return x, d


def _net(kind, cost, activation="sigmoid", sizes=(5, 8, 4), seed=3, gain=1.0):
    return init_network(sizes, kind, activation, cost, dtype="float64", seed=seed, gain=gain)


# ------------------------------------------------------------------ forward = the network's
def _numpy_step(net, x, s, eps):
    """Independent numpy transcription of the documented dynamics (one free step)."""
    f = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh}[net.activation]
    df = {
        "sigmoid": lambda v: f(v) * (1 - f(v)),
        "tanh": lambda v: 1 - np.tanh(v) ** 2,
    }[net.activation]
    off = net.offsets
    layers = [s[:, off[k] : off[k + 1]] for k in range(len(off) - 1)]
    p = [x] + [f(v) if net.kind == "hopfield" else v for v in layers]
    out = []
    for k, v in enumerate(layers):
        u = p[k] @ net.weights[k] + net.biases[k]
        if k + 1 < len(layers):
            u = u + p[k + 2] @ net.weights[k + 1].T
        out.append(v - eps * (v - df(v) * u) if net.kind == "hopfield" else f(u))
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cost", COSTS)
def test_trajectory_is_the_networks_dynamics(kind, cost):
    net = _net(kind, cost, "tanh")
    x, _ = _batch(net.sizes)
    traj = G.free_trajectory(net, x, 12, eps=0.3)
    assert traj.shape == (13, 3, net.n_state)
    np.testing.assert_array_equal(traj[0], 0.0)
    # stored trajectory = the phase's output (same kernel, step for step)
    ph = free_phase(net, x, Dynamics(T=12, eps=0.3))
    np.testing.assert_array_equal(traj[-1], ph.state)
    # and = an independent transcription of the equations
    for t in range(12):
        np.testing.assert_allclose(
            traj[t + 1], _numpy_step(net, x, traj[t], 0.3), rtol=1e-12, atol=1e-14
        )


@pytest.mark.parametrize("cost", COSTS)
def test_loss_matches_network_output(cost):
    net = _net("hopfield", cost)
    x, d = _batch(net.sizes)
    s = G.free_trajectory(net, x, 5)[-1]
    y = output(net, s)
    ref = 0.5 * np.sum((y - d) ** 2, 1) if cost == "squared" else -np.sum(d * np.log(y), 1)
    assert G.loss(net, x, d, s) == pytest.approx(float(np.mean(ref)), rel=1e-12)


# ------------------------------------------------------------------ BPTT vs finite diffs
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cost", COSTS)
def test_bptt_equals_central_finite_differences(kind, cost):
    net = _net(kind, cost)
    x, d = _batch(net.sizes)
    T = 15
    g = G.bptt(net, x, d, T, eps=0.5)
    fd = G.finite_difference(net, x, d, T, eps=0.5, h=1e-6)
    assert [w.shape for w in g.dW] == [w.shape for w in net.weights]
    assert [b.shape for b in g.db] == [b.shape for b in net.biases]
    assert np.linalg.norm(fd.flat()) > 1e-3
    assert _rel(g.flat(), fd.flat()) <= 1e-6
    assert g.loss == pytest.approx(fd.loss, rel=1e-12)


def test_bptt_tanh_and_float32_network():
    """float32 network, gradients asked in float64: still agrees with FD (float64)."""
    net = init_network((5, 8, 4), "hopfield", "tanh", "squared", dtype="float32", seed=4)
    x, d = _batch(net.sizes)
    g = G.bptt(net, x, d, 10, eps=0.4, dtype="float64")
    assert g.dW[0].dtype == np.float64
    fd = G.finite_difference(net, x, d, 10, eps=0.4)
    assert _rel(g.flat(), fd.flat()) <= 1e-6


def test_truncated_bptt_is_gradient_through_last_K_steps():
    """Truncated BPTT = derivative w.r.t. parameters used only in the last K steps."""
    net = _net("hopfield", "squared", "tanh")
    x, d = _batch(net.sizes)
    T, K = 12, 4
    full = G.bptt(net, x, d, T, eps=0.5)
    assert _rel(G.bptt(net, x, d, T, K=T, eps=0.5).flat(), full.flat()) == 0.0
    zero = G.bptt(net, x, d, T, K=0, eps=0.5)
    assert np.all(zero.flat() == 0.0)  # squared cost: no direct parameter term
    trunc = G.bptt(net, x, d, T, K=K, eps=0.5)
    s_mid = G.free_trajectory(net, x, T - K, eps=0.5)[-1]  # original parameters

    def forward(work, xx):
        return G.free_trajectory(work, xx, K, eps=0.5, s0=s_mid)[-1]

    fd = G.finite_difference(net, x, d, eps=0.5, T=K, forward=forward)
    assert _rel(trunc.flat(), fd.flat()) <= 1e-6
    assert _rel(trunc.flat(), full.flat()) > 1e-3  # truncation does change it
    with pytest.raises(ValueError, match="K must be"):
        G.bptt(net, x, d, T, K=T + 1)


# ------------------------------------------------------------------ RBP vs BPTT
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cost", COSTS)
def test_recurrent_backprop_equals_converged_bptt(kind, cost):
    net = _net(kind, cost)
    x, d = _batch(net.sizes)
    T = 400
    b, traj = G.bptt(net, x, d, T, eps=0.5, return_trajectory=True)
    s_star = traj[-1]
    dense = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.5, method="dense")
    it = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.5, method="iterative", atol=1e-13)
    assert dense.info["fixed_point_residual"] < 1e-13
    assert _rel(dense.flat(), b.flat()) <= 1e-6
    assert _rel(it.flat(), dense.flat()) <= 1e-8
    assert it.info["converged"]
    assert dense.info["adjoint_residual"] < 1e-10
    # runs its own free phase when given dynamics
    own = G.recurrent_backprop(net, x, d, dyn=Dynamics(T=T, eps=0.5))
    assert _rel(own.flat(), dense.flat()) <= 1e-10
    # the free phase's clamped input (precomputed drive) gives the same gradient
    cl = G.recurrent_backprop(net, clamp(net, x), d, s_star=s_star, eps=0.5)
    assert _rel(cl.flat(), dense.flat()) <= 1e-12


def test_rbp_independent_of_eps_and_warns_off_fixed_point():
    net = _net("hopfield", "squared", "tanh")
    x, d = _batch(net.sizes)
    s_star = G.free_trajectory(net, x, 600, eps=0.5)[-1]
    a = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.5)
    b = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.05)
    assert _rel(b.flat(), a.flat()) <= 1e-10
    s_early = G.free_trajectory(net, x, 3, eps=0.5)[-1]
    with pytest.warns(RuntimeWarning, match="not a fixed point"):
        G.recurrent_backprop(net, x, d, s_star=s_early, eps=0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_active_set_of_hard_sigmoid(kind):
    """Units held at 0 or 1 carry no gradient; RBP still equals finite differences."""
    net = _net(kind, "squared", "hardsigmoid")
    rng = np.random.default_rng(0)
    net.biases[0][:] = rng.normal(0.3, 0.8, net.biases[0].shape)
    net.biases[1][:] = 0.5
    x, d = _batch(net.sizes, batch=4)
    T = 400
    s_star = G.free_trajectory(net, x, T, eps=0.5)[-1]
    dense = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.5)
    it = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.5, method="iterative")
    frac = dense.info["active_fraction"]
    assert 0.05 < frac < 0.95, frac  # a mixed active set
    clipped = np.all((s_star == 0.0) | (s_star == 1.0), axis=0)
    hid = clipped[: net.sizes[1]]
    assert hid.any()
    # a hidden unit clipped in every sample: its bias and incoming weights get nothing
    np.testing.assert_array_equal(dense.db[0][hid], 0.0)
    np.testing.assert_array_equal(dense.dW[0][:, hid], 0.0)
    assert np.linalg.norm(dense.flat()) > 1e-3
    assert _rel(it.flat(), dense.flat()) <= 1e-8
    fd = G.finite_difference(net, x, d, T, eps=0.5, h=1e-6)
    assert _rel(dense.flat(), fd.flat()) <= 1e-6


# ------------------------------------------------------------------ bad input
def test_bad_input_raises():
    net = _net("hopfield", "squared")
    x, d = _batch(net.sizes)
    with pytest.raises(ValueError, match="x must have shape"):
        G.bptt(net, x[:, :3], d, 5)
    with pytest.raises(ValueError, match="d must have shape"):
        G.bptt(net, x, d[:2], 5)
    with pytest.raises(ValueError, match="s_star must have shape"):
        G.recurrent_backprop(net, x, d, s_star=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="method"):
        G.recurrent_backprop(net, x, d, s_star=np.zeros((3, net.n_state)), method="lu")
    with pytest.raises(ValueError, match="s_star or dyn"):
        G.recurrent_backprop(net, x, d)
    with pytest.raises(ValueError, match="h must be"):
        G.finite_difference(net, x, d, 5, h=0.0)
    with pytest.raises(ValueError, match="beta"):
        G.ep_estimates(net, x, d, Dynamics(), betas=[0.0])
    with pytest.raises(ValueError, match="beta"):
        G.ep_estimates(net, x, d, Dynamics(), betas=[-0.1])


# ------------------------------------------------------------------ damping (issue 10)
DAMPED = [
    # (kind, cost, activation, damping): a < 1 is Ernoult et al.'s dt; a > 1 with the
    # hard-sigmoid Hopfield box exercises the outer projection of over-relaxation
    ("hopfield", "squared", "sigmoid", 0.2),
    ("hopfield", "cross-entropy", "tanh", 0.5),
    ("prototypical", "squared", "sigmoid", 0.2),
    ("prototypical", "cross-entropy", "sigmoid", 0.6),
    ("hopfield", "squared", "hardsigmoid", 1.5),
]


def _damped_case(kind, cost, activation):
    sizes = (5, 8, 6, 4) if cost == "cross-entropy" else (5, 8, 4)
    net = _net(kind, cost, activation, sizes=sizes, gain=1.5)
    rng = np.random.default_rng(0)
    if activation == "hardsigmoid":  # a mixed active set: some units clipped
        net.biases[0][:] = rng.normal(0.3, 0.8, net.biases[0].shape)
        net.biases[1][:] = rng.normal(0.3, 0.5, net.biases[1].shape)
    return net, *_batch(net.sizes, batch=4)


def _interior_start(net, batch=4):
    """A random initial state inside (0, 1): away from the kinks of the box and of the
    hard sigmoid, where central differences are not defined (zero state, zero bias)."""
    return np.random.default_rng(7).uniform(0.1, 0.9, (batch, net.n_state))


@pytest.mark.parametrize(("kind", "cost", "activation", "damping"), DAMPED)
def test_damped_trajectory_is_the_damped_phase(kind, cost, activation, damping):
    net, x, _ = _damped_case(kind, cost, activation)
    dyn = Dynamics(T=25, eps=0.4, damping=damping)
    traj = G.free_trajectory(net, x, dyn=dyn)
    np.testing.assert_array_equal(traj[-1], free_phase(net, x, dyn).state)
    fused = free_phase(net, x, Dynamics(T=25, eps=0.4, damping=damping, method="fused"))
    np.testing.assert_allclose(traj[-1], fused.state, rtol=0, atol=1e-13)
    undamped = G.free_trajectory(net, x, 25, eps=0.4)
    assert np.max(np.abs(traj[5] - undamped[5])) > 1e-3  # the damping is not dropped


@pytest.mark.parametrize(("kind", "cost", "activation", "damping"), DAMPED)
def test_damped_bptt_equals_finite_differences_of_the_damped_phase(kind, cost, activation, damping):
    """BPTT through T damped steps = central differences (float64) of the loss after the
    network's own damped free phase (eqprop.phases, an independent forward route)."""
    net, x, d = _damped_case(kind, cost, activation)
    s0 = _interior_start(net)
    dyn = Dynamics(T=10, eps=0.4, damping=damping)  # short: far from the fixed point
    g = G.bptt(net, x, d, dyn=dyn, s0=s0)
    assert g.info["damping"] == damping

    def forward(work, xx):
        return free_phase(work, xx, dyn, s0=s0).state

    fd = G.finite_difference(net, x, d, dyn=dyn, h=1e-6, forward=forward)
    assert np.linalg.norm(fd.flat()) > 1e-3
    assert _rel(g.flat(), fd.flat()) <= 1e-6
    assert g.loss == pytest.approx(fd.loss, rel=1e-12)
    # and it is not the undamped gradient (the bug: damping silently dropped)
    plain = G.bptt(net, x, d, 10, eps=0.4, s0=s0)
    assert _rel(plain.flat(), g.flat()) > 1e-3
    # the keyword gives the same as the Dynamics field
    kw = G.bptt(net, x, d, 10, eps=0.4, damping=damping, s0=s0)
    assert _rel(kw.flat(), g.flat()) == 0.0


def test_damped_bptt_as_in_issue_10():
    """bptt(dyn=Dynamics(T=40, damping=0.2)) used to equal the undamped result exactly."""
    net = _net("prototypical", "squared", gain=5.0)
    x, d = _batch(net.sizes)
    damped = G.bptt(net, x, d, dyn=Dynamics(T=40, damping=0.2))
    plain = G.bptt(net, x, d, dyn=Dynamics(T=40))
    assert _rel(damped.flat(), plain.flat()) > 1e-2
    fd = G.finite_difference(net, x, d, dyn=Dynamics(T=40, damping=0.2))
    assert _rel(damped.flat(), fd.flat()) <= 1e-6


@pytest.mark.parametrize(("kind", "cost", "activation"), [d[:3] for d in DAMPED])
def test_rbp_is_invariant_to_damping_while_bptt_is_not(kind, cost, activation):
    net, x, d = _damped_case(kind, cost, activation)
    s_star = G.free_trajectory(net, x, 800, eps=0.4)[-1]
    ref = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.4)
    assert ref.info["fixed_point_residual"] < 1e-13
    for a in (0.2, 0.7, 1.5):
        dense = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.4, damping=a)
        assert dense.info["damping"] == a
        assert _rel(dense.flat(), ref.flat()) <= 1e-10
        it = G.recurrent_backprop(
            net, x, d, s_star=s_star, dyn=Dynamics(eps=0.4, damping=a), method="iterative"
        )
        assert it.info["damping"] == a and it.info["converged"]
        assert _rel(it.flat(), ref.flat()) <= 1e-8
    # the adjoint of the damped map is lambda / a: the damping is really used
    lam1 = ref.info["lambda"]
    lam_a = G.recurrent_backprop(net, x, d, s_star=s_star, eps=0.4, damping=0.5).info["lambda"]
    np.testing.assert_allclose(lam_a, lam1 / 0.5, rtol=1e-9, atol=1e-12)
    # BPTT over a short horizon does depend on it
    b1 = G.bptt(net, x, d, 10, eps=0.4)
    b2 = G.bptt(net, x, d, 10, eps=0.4, damping=0.2)
    assert _rel(b2.flat(), b1.flat()) > 1e-2


def test_equivalent_fixed_step_methods_are_followed():
    import solvers

    net = _net("hopfield", "squared", "tanh")
    x, d = _batch(net.sizes)
    ref = G.bptt(net, x, d, dyn=Dynamics(T=20, damping=0.5))
    for dyn in (
        Dynamics(T=20, damping=0.5, method="fused"),
        Dynamics(T=20, damping=0.5, method="picard", fixed_steps=True),
        Dynamics(T=20, method=solvers.Picard(damping=0.5), fixed_steps=True),
    ):
        assert _rel(G.bptt(net, x, d, dyn=dyn).flat(), ref.flat()) == 0.0


def _refused():
    import solvers

    return [
        (Dynamics(method="anderson"), r"method='anderson'"),
        (Dynamics(method="anderson", fixed_steps=True), r"method='anderson'"),
        (Dynamics(method="gauss-seidel"), r"method='gauss-seidel'"),
        (Dynamics(method="gauss-seidel-parity"), r"method='gauss-seidel-parity'"),
        (Dynamics(method="euler"), r"method='euler'"),
        (Dynamics(method="rk4"), r"method='rk4'"),
        (Dynamics(method="dopri5"), r"method='dopri5'"),
        (Dynamics(method=solvers.Anderson()), r"method=Anderson"),
        (Dynamics(method=solvers.RK4(dt=0.5)), r"method=RK4"),
        (Dynamics(method="picard"), r"fixed_steps=None with method 'picard'"),
        (Dynamics(method="fixed", fixed_steps=False), r"fixed_steps=False"),
        (Dynamics(method=solvers.Picard()), r"fixed_steps=None with method 'picard'"),
        (Dynamics(record_energy=True), r"record_energy=True"),
    ]


REFUSED_IDS = [
    "anderson",
    "anderson-fixed",
    "gauss-seidel",
    "gauss-seidel-parity",
    "euler",
    "rk4",
    "dopri5",
    "Anderson-object",
    "RK4-object",
    "picard-tolerance",
    "fixed-tolerance",
    "Picard-object-tolerance",
    "record-energy",
]


def _call(name, net, x, d, dyn):
    if name == "bptt":
        return G.bptt(net, x, d, dyn=dyn)
    if name == "free_trajectory":
        return G.free_trajectory(net, x, dyn=dyn)
    if name == "finite_difference":
        return G.finite_difference(net, x, d, dyn=dyn)
    from eqprop.compare import compare

    ref = {"compare-bptt": "bptt", "compare-fd": "finite-difference"}[name]
    return compare(net, x, d, dyn, betas=(0.1,), estimators=("one-sided",), references=(ref,))


@pytest.mark.parametrize(
    "func", ["bptt", "free_trajectory", "finite_difference", "compare-bptt", "compare-fd"]
)
@pytest.mark.parametrize("case", range(13), ids=REFUSED_IDS)
def test_a_dynamics_field_that_cannot_be_followed_raises(func, case):
    net = _net("hopfield", "squared", sizes=(3, 4, 2))
    x, d = _batch(net.sizes, batch=2)
    dyn, match = _refused()[case]
    with pytest.raises(ValueError, match=match):
        _call(func, net, x, d, dyn)


def test_references_name_the_missing_steps_and_a_divergence():
    net = _net("hopfield", "squared", "tanh")
    x, d = _batch(net.sizes)
    with pytest.raises(ValueError, match="give the number of free steps T"):
        G.bptt(net, x, d)
    with pytest.raises(ValueError, match="T must be an integer >= 0"):
        G.free_trajectory(net, x, -1)
    with pytest.raises(ValueError, match=r"damping must be in \(0, 2\), got 2.5"):
        G.bptt(net, x, d, 5, damping=2.5)
    with pytest.raises(ValueError, match=r"not finite from step \d+ on for 3 of 3 samples"):
        G.bptt(net, x, d, 600, eps=5.0)  # s <- -4 s + ... : overflows


def test_compare_follows_the_damping():
    """compare(..., Dynamics(damping=0.2)) used to report rel. error ~2 against an undamped
    BPTT; now BPTT through the damped steps equals recurrent backprop once converged."""
    from eqprop.compare import compare

    net = _net("prototypical", "squared", gain=1.0)
    x, d = _batch(net.sizes, batch=4)
    dyn = Dynamics(T=300, K=300, damping=0.2)
    ds = compare(
        net, x, d, dyn, betas=(1e-3,), estimators=("symmetric",), references=("rbp", "bptt")
    )
    assert ds.attrs["free_phase_converged"] == 1
    rb = ds.ref_norm.sel(reference="rbp").values
    bp = ds.ref_norm.sel(reference="bptt").values
    np.testing.assert_allclose(bp, rb, rtol=1e-8)
    err = ds.rel_error.sel(estimator="symmetric").values[:, 0, :]  # (layer, reference)
    assert np.all(err < 1e-4), err
    np.testing.assert_allclose(err[:, 1], err[:, 0], rtol=1e-4, atol=1e-9)
    assert '"damping": 0.2' in ds.attrs["config"]
