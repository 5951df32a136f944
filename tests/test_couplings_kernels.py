"""The Numba graph map through ``solvers``: equal to the NumPy reference, to today's phases
on a chain, and at a fixed point on skip-coupled and untied networks."""

import numpy as np
import pytest

import eqprop as E
import solvers
from eqprop.graph import chain, from_network
from eqprop.graph import kernels as GK
from eqprop.graph import reference as R


def _biases(net, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.bias is not None:
            layer.bias[:] = rng.normal(scale=scale, size=layer.size)
    return net


def _today(kind, act, cost, seed=0):
    net = E.init_network(
        (6, 5, 4, 3), kind=kind, activation=act, cost=cost, dtype="float64", seed=seed
    )
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:
        b[:] = rng.normal(scale=0.3, size=b.shape)
    return net


GRAPHS = {
    "chain-hop-hard-ce": lambda: from_network(_today("hopfield", "hardsigmoid", "cross-entropy")),
    "chain-proto-shifted-sq": lambda: from_network(
        _today("prototypical", "shifted-sigmoid", "squared")
    ),
    "skip-hop-linear-out": lambda: _biases(
        chain(
            [6, 5, 4, 3],
            activation="hardsigmoid",
            output_activation="identity",
            skip=[(0, 2), (1, 3)],
        ),
        1,
    ),
    "skip-proto-ce-state": lambda: _biases(
        chain(
            [6, 5, 4, 3],
            kind="prototypical",
            activation="tanh",
            output_activation="identity",
            cost="cross-entropy",
            skip=[(1, 3)],
        ),
        2,
    ),
    "free-hop": lambda: _biases(
        chain([6, 5, 4, 3], activation="sigmoid", feedback="free", seed=3), 3
    ),
    "random-proto": lambda: _biases(
        chain([6, 5, 4, 3], kind="prototypical", activation="sigmoid", feedback="random", seed=4), 4
    ),
    "scaled-hop": lambda: _biases(
        chain([6, 5, 4, 3], activation="tanh", feedback="scaled", gamma=0.4), 5
    ),
}


@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize(("beta", "nudge"), [(0.0, "inside"), (0.5, "inside"), (-0.3, "outside")])
def test_numba_map_and_field_equal_reference(name, beta, nudge):
    net = GRAPHS[name]()
    rng = np.random.default_rng(11)
    x = rng.random((5, net.n_in))
    s = rng.normal(0.5, 0.6, size=(5, net.n_state))
    d = np.eye(net.n_out)[rng.integers(0, net.n_out, 5)]
    args = GK.make_args(net, x, beta=beta, d=d, eps=0.4, nudge=nudge)
    out = np.empty_like(s)
    GK.fixed_point_map(s, out, args)
    want = R.fixed_point_map(net, x, s, d, beta, eps=0.4, nudge=nudge)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    GK.vector_field(s, out, args)
    np.testing.assert_allclose(
        out, R.vector_field(net, x, s, d, beta, nudge=nudge), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    ("kind", "act", "cost"),
    [
        ("hopfield", "hardsigmoid", "squared"),
        ("hopfield", "sigmoid", "cross-entropy"),
        ("prototypical", "hardsigmoid", "cross-entropy"),
        ("prototypical", "sigmoid", "squared"),
    ],
)
def test_free_and_nudged_equilibria_equal_todays_phases(kind, act, cost):
    net = _today(kind, act, cost, seed=6)
    g = from_network(net)
    rng = np.random.default_rng(7)
    x = rng.random((8, 6))
    d = np.eye(3)[rng.integers(0, 3, 8)]
    dyn = E.Dynamics(eps=0.5, method="picard", fixed_steps=False, atol=1e-13, max_iter=20000)
    free = E.free_phase(net, x, dyn)
    assert free.result.converged.all()
    mine = GK.solve_phase(g, x, eps=0.5, atol=1e-13, max_iter=20000)
    assert mine.converged.all()
    np.testing.assert_allclose(mine.x, free.state, rtol=0, atol=1e-10)
    nudged = E.nudged_phase(net, x, d, 0.5, dyn, s0=free.state)
    mine_n = GK.solve_phase(g, x, beta=0.5, d=d, s0=mine.x, eps=0.5, atol=1e-13, max_iter=20000)
    np.testing.assert_allclose(mine_n.x, nudged.state, rtol=0, atol=1e-10)
    assert np.abs(nudged.state - free.state).max() > 1e-4  # the nudge did something


@pytest.mark.parametrize(
    "name", ["skip-hop-linear-out", "skip-proto-ce-state", "free-hop", "random-proto"]
)
def test_equilibrium_of_skip_and_untied_networks_is_a_fixed_point(name):
    net = GRAPHS[name]()
    rng = np.random.default_rng(12)
    x = rng.random((6, net.n_in))
    d = np.eye(net.n_out)[rng.integers(0, net.n_out, 6)]
    res = GK.solve_phase(
        net, x, beta=0.3, d=d, eps=0.5, method=solvers.Anderson(), atol=1e-12, max_iter=5000
    )
    assert res.converged.all()
    s = res.x
    g = R.fixed_point_map(net, x, s, d, 0.3, eps=0.5)
    assert np.abs(g - s).max() < 1e-10
    if net.kind == "hopfield" and all(la.box is None for la in net.state_layers):
        assert np.abs(R.vector_field(net, x, s, d, 0.3)).max() < 1e-9
    if name == "skip-hop-linear-out":
        # a linear output with no box: at the fixed point y = u_y + beta (d - y)
        acts = R.activities(net, x, s)
        u = R.drives(net, acts)["y"]
        y = s[:, net.offsets["y"][0] :]
        np.testing.assert_allclose(y, (u + 0.3 * d) / 1.3, atol=1e-10)


def test_ode_method_reaches_the_same_steady_state():
    net = GRAPHS["free-hop"]()
    x = np.random.default_rng(13).random((4, net.n_in))
    fp = GK.solve_phase(net, x, eps=0.5, atol=1e-12, max_iter=20000)
    ode = GK.solve_phase(net, x, method=solvers.RK4(dt=0.5), atol=1e-11, max_iter=20000)
    assert ode.converged.all()
    np.testing.assert_allclose(ode.x, fp.x, atol=1e-9)


def test_mixed_boxes_are_refused_clearly():
    # (complex networks run on these kernels since #13: tests/test_holomorphic_kernels.py)
    mixed = chain([3, 4, 2], activation="hardsigmoid", output_activation="identity")
    with pytest.raises(ValueError, match="different boxes"):
        GK.solve_phase(mixed, np.ones((1, 3)), method=solvers.RK4(dt=0.5))


@pytest.mark.parametrize("name", ["chain-proto-shifted-sq", "skip-hop-linear-out", "free-hop"])
def test_clamped_output_map_equals_reference(name):
    net = GRAPHS[name]()
    rng = np.random.default_rng(14)
    x = rng.random((3, net.n_in))
    s = rng.normal(0.5, 0.6, size=(3, net.n_state))
    d = np.eye(net.n_out)[rng.integers(0, net.n_out, 3)]
    args = GK.make_args(net, x, d=d, eps=0.4, nudge="clamp")
    out = np.empty_like(s)
    GK.fixed_point_map(s, out, args)
    np.testing.assert_allclose(
        out, R.fixed_point_map(net, x, s, d, eps=0.4, nudge="clamp"), atol=1e-12
    )
    GK.vector_field(s, out, args)
    want = R.vector_field(net, x, s, d, nudge="clamp", eps=0.4)
    np.testing.assert_allclose(out, want, atol=1e-12)
