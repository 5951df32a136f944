"""The general layers-and-couplings path equals today's chain code on every chain it can express.

Today's functions (eqprop.network, eqprop.kernels through eqprop.gradients.make_step) are
the independent route: they were written and tested against finite differences long
before the graph model.
"""

import numpy as np
import pytest

import eqprop as E
from eqprop import kernels as K
from eqprop.gradients import make_step
from eqprop.graph import from_network
from eqprop.graph import reference as R
from eqprop.graph.build import chain_layer_names

CONFIGS = [
    (kind, act, cost)
    for kind in ("hopfield", "prototypical")
    for act in ("hardsigmoid", "sigmoid", "tanh", "shifted-sigmoid")
    for cost in ("squared", "cross-entropy")
]
TOL = dict(rtol=1e-12, atol=1e-12)


def _setup(kind, act, cost, seed=0, sizes=(6, 5, 4, 3), B=4):
    rng = np.random.default_rng(seed)
    net = E.init_network(sizes, kind=kind, activation=act, cost=cost, dtype="float64", seed=seed)
    for b in net.biases:
        b[:] = rng.normal(scale=0.5, size=b.shape)
    x = rng.random((B, sizes[0]))
    s = rng.normal(0.5, 0.7, size=(B, net.n_state))
    d = np.eye(sizes[-1])[rng.integers(0, sizes[-1], B)]
    return net, x, s, d


def _named(net, G):
    names = chain_layer_names(len(net.sizes))
    out = {}
    for l in range(1, len(net.sizes)):
        out[f"{names[l - 1]}->{names[l]}.W"] = G.dW[l - 1]
        out[f"{names[l]}.b"] = G.db[l - 1]
    return out


@pytest.mark.parametrize(("kind", "act", "cost"), CONFIGS)
@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_energy_state_gradient_and_cost_equal_todays(kind, act, cost, beta):
    net, x, s, d = _setup(kind, act, cost)
    g = from_network(net)
    assert g.n_state == net.n_state
    np.testing.assert_allclose(R.energy(g, x, s, d, beta), E.energy(net, x, s, d, beta), **TOL)
    np.testing.assert_allclose(
        R.state_gradient(g, x, s, d, beta), E.state_gradient(net, x, s, d, beta), **TOL
    )
    np.testing.assert_allclose(R.cost(g, x, s, d), E.cost(net, s, d), **TOL)
    np.testing.assert_allclose(R.output(g, x, s), E.output(net, s), **TOL)


# the hopfield kind has one nudge (the gradient of beta C); the prototypical kind two
WITH_NUDGE = [(*c, n) for c in CONFIGS for n in ("inside", "outside") if c[0] == "prototypical"]
WITH_NUDGE += [(*c, "inside") for c in CONFIGS if c[0] == "hopfield"]


@pytest.mark.parametrize(("kind", "act", "cost", "nudge"), WITH_NUDGE)
@pytest.mark.parametrize("beta", [0.0, -0.4])
def test_fixed_point_map_and_vector_field_equal_todays(kind, act, cost, beta, nudge):
    net, x, s, d = _setup(kind, act, cost, seed=2)
    if net.bounds is not None:
        s = np.clip(s, *net.bounds)
    g = from_network(net)
    eps = 0.3
    step = make_step(net, x, beta=beta, d=d, eps=eps, nudge=nudge)
    np.testing.assert_allclose(
        R.fixed_point_map(g, x, s, d, beta, eps=eps, nudge=nudge), step(s), **TOL
    )
    lay = net.layout(nudge)
    cx = E.clamp(net, x)
    args = (cx.theta, lay, cx.drive, d, np.array([beta, eps]), K.make_work(lay, len(x), net.dtype))
    field = np.empty_like(s)
    K.vector_field(s, field, args)
    np.testing.assert_allclose(R.vector_field(g, x, s, d, beta, nudge=nudge), field, **TOL)


@pytest.mark.parametrize(("kind", "act", "cost"), CONFIGS)
@pytest.mark.parametrize("beta", [0.0, 0.6])
def test_parameter_gradient_equals_todays(kind, act, cost, beta):
    net, x, s, d = _setup(kind, act, cost, seed=1)
    g = from_network(net)
    mine = R.parameter_gradient(g, x, s, d, beta)
    theirs = _named(net, E.parameter_gradient(net, x, s, d, beta))
    assert set(mine) == set(theirs) == set(g.parameters())
    for k in theirs:
        np.testing.assert_allclose(mine[k], theirs[k], err_msg=k, **TOL)


def test_converter_copies_parameters():
    net, *_ = _setup("hopfield", "sigmoid", "squared")
    g = from_network(net)
    g.coupling("x->h1").W[0, 0] += 1.0
    assert g.coupling("x->h1").W[0, 0] != net.weights[0][0, 0]


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
@pytest.mark.parametrize("act", ["hardsigmoid", "sigmoid"])
def test_clamped_output_map_and_field_equal_todays(kind, act):
    net, x, s, d = _setup(kind, act, "squared", seed=3)
    if net.bounds is not None:
        s = np.clip(s, *net.bounds)
    g = from_network(net)
    eps = 0.3
    step = make_step(net, x, d=d, eps=eps, nudge="clamp")
    mine = R.fixed_point_map(g, x, s, d, eps=eps, nudge="clamp")
    np.testing.assert_allclose(mine, step(s), **TOL)
    np.testing.assert_array_equal(mine[:, -3:], d)
    lay = net.layout("clamp")
    cx = E.clamp(net, x)
    args = (cx.theta, lay, cx.drive, d, np.array([0.0, eps]), K.make_work(lay, len(x), net.dtype))
    field = np.empty_like(s)
    K.vector_field(s, field, args)
    np.testing.assert_allclose(R.vector_field(g, x, s, d, nudge="clamp", eps=eps), field, **TOL)


def test_clamp_needs_an_output_in_the_state_and_targets():
    net, x, s, d = _setup("hopfield", "sigmoid", "cross-entropy")
    g = from_network(net)
    with pytest.raises(ValueError, match="layer 'y': clamping the output needs it in the state"):
        R.fixed_point_map(g, x, s, d, nudge="clamp")
    net, x, s, d = _setup("hopfield", "sigmoid", "squared")
    with pytest.raises(ValueError, match="targets d and beta = 0"):
        R.fixed_point_map(from_network(net), x, s, d, beta=0.5, nudge="clamp")
