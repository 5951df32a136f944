"""BPTT and finite differences on graph networks (eqprop.graph.backprop): BPTT against
central differences of the same T-step loss on untied, skip-coupled, linear-output and
readout networks, damped and over-relaxed; the trajectory against the phases; a chain
converted to a graph against the chain's own references."""

import numpy as np
import pytest

from eqprop import gradients as G
from eqprop.graph import Coupling, GraphNetwork, Layer, chain, from_network
from eqprop.graph import backprop as BP
from eqprop.network import init_network
from eqprop.phases import Dynamics, free_phase


def _biases(net, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.bias is not None:
            layer.bias[:] = rng.normal(scale=scale, size=layer.size)
    return net


def _free_feedback(kind="hopfield"):
    net = chain([4, 5, 3], kind=kind, activation="sigmoid", feedback="free", seed=1, gain=1.5)
    rng = np.random.default_rng(2)
    for c in net.couplings:
        if c.B is not None:
            c.B[...] = rng.uniform(-0.8, 0.8, size=c.B.shape)  # far from W^T
    return _biases(net, 3)


def _readout_skip_random():
    rng = np.random.default_rng(4)
    layers = [
        Layer("x", 4, role="input"),
        Layer("h1", 5, activation="tanh", bias=rng.normal(scale=0.3, size=5)),
        Layer("h2", 3, activation="sigmoid", bias=rng.normal(scale=0.3, size=3)),
        Layer("o", 3, role="readout", bias=rng.normal(scale=0.3, size=3)),
    ]
    couplings = [
        Coupling("x", "h1", rng.uniform(-0.6, 0.6, size=(4, 5))),
        Coupling(
            "h1", "h2", rng.uniform(-0.6, 0.6, (5, 3)), "random", B=rng.uniform(-0.6, 0.6, (3, 5))
        ),
        Coupling("h2", "o", rng.uniform(-0.6, 0.6, size=(3, 3))),
        Coupling("h1", "o", rng.uniform(-0.6, 0.6, size=(5, 3))),
    ]
    return GraphNetwork(layers, couplings, kind="hopfield", cost="cross-entropy")


NETS = {
    "free-hopfield": _free_feedback,
    "free-prototypical": lambda: _free_feedback("prototypical"),
    "scaled-skip-linear-out": lambda: _biases(
        chain(
            [4, 5, 3, 3],
            activation="tanh",
            output_activation="identity",
            feedback="scaled",
            gamma=0.5,
            skip=[(0, 2), (1, 3)],
            gain=0.6,
        ),
        5,
    ),
    "readout-skip-random": _readout_skip_random,
}


def _batch(net, seed=0, batch=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch, net.n_in))
    d = np.eye(net.n_out)[rng.integers(0, net.n_out, batch)]
    return x, d


@pytest.mark.parametrize("damping", [1.0, 0.7, 1.3])
@pytest.mark.parametrize("name", list(NETS))
def test_bptt_equals_finite_differences_of_the_same_steps(name, damping):
    net = NETS[name]()
    x, d = _batch(net)
    T = 12
    b = BP.bptt(net, x, d, T, eps=0.5, damping=damping)
    f = BP.finite_difference(net, x, d, T, eps=0.5, damping=damping, h=1e-6)
    assert list(b.grads) == list(net.parameters()) == list(f.grads)
    scale = max(float(np.max(np.abs(v))) for v in f.grads.values())
    for k in f.grads:
        np.testing.assert_allclose(b.grads[k], f.grads[k], atol=1e-8 * scale, rtol=0, err_msg=k)
    assert b.loss == pytest.approx(f.loss, rel=1e-14)


def test_truncated_bptt_is_the_tail_of_the_full_one():
    """K = 0 keeps only a readout's direct term; K = T is the full gradient; a truncated
    gradient differs from the full one (the early steps matter)."""
    net = NETS["readout-skip-random"]()
    x, d = _batch(net)
    full = BP.bptt(net, x, d, 10)
    assert BP.bptt(net, x, d, 10, K=10).grads["h1->h2.W"] == pytest.approx(
        full.grads["h1->h2.W"], abs=0
    )
    zero = BP.bptt(net, x, d, 10, K=0).grads
    assert not np.any(zero["x->h1.W"]) and np.any(zero["h2->o.W"])
    part = BP.bptt(net, x, d, 10, K=3).grads["x->h1.W"]
    assert not np.allclose(part, full.grads["x->h1.W"], rtol=1e-3)


@pytest.mark.parametrize("damping", [1.0, 0.6, 1.4])
def test_trajectory_ends_at_the_free_phase_state(damping):
    for net in (NETS["free-hopfield"](), NETS["readout-skip-random"]()):
        x, _ = _batch(net, 1)
        traj = BP.free_trajectory(net, x, 15, eps=0.5, damping=damping)
        state = free_phase(net, x, Dynamics(T=15, eps=0.5, damping=damping)).state
        np.testing.assert_allclose(traj[-1], state, atol=1e-14, rtol=0)


@pytest.mark.parametrize(
    "kind,cost,activation",
    [("hopfield", "squared", "sigmoid"), ("prototypical", "cross-entropy", "tanh")],
)
def test_chain_as_graph_matches_the_chain_references(kind, cost, activation):
    net = init_network((5, 6, 4, 3), kind, activation, cost, dtype="float64", seed=3, gain=1.5)
    g = from_network(net)
    x, d = _batch(g, 2, 4)
    b, cb = BP.bptt(g, x, d, 20, damping=0.8), G.bptt(net, x, d, 20, damping=0.8)
    s = free_phase(net, x, Dynamics(T=200)).state
    r = BP.recurrent_backprop(g, x, d, s, check_fixed_point=None)
    cr = G.recurrent_backprop(net, x, d, s_star=s, check_fixed_point=None)
    for ours, chain_ref in ((b, cb), (r, cr)):
        L = len(net.weights)
        names = list(g.parameters())
        for i in range(L):
            np.testing.assert_allclose(ours.grads[names[i]], chain_ref.dW[i], atol=1e-13, rtol=0)
            np.testing.assert_allclose(ours.grads[names[L + i]], chain_ref.db[i], atol=1e-13)
        assert ours.loss == pytest.approx(chain_ref.loss, rel=1e-13)


def test_bad_input_names_the_value():
    net = NETS["free-hopfield"]()
    x, d = _batch(net)
    with pytest.raises(ValueError, match="damping must be in"):
        BP.bptt(net, x, d, 5, damping=2.0)
    with pytest.raises(ValueError, match="T must be an integer"):
        BP.bptt(net, x, d, -1)
    with pytest.raises(ValueError, match="K must be an integer in"):
        BP.bptt(net, x, d, 5, K=6)
    with pytest.raises(ValueError, match="h must be finite"):
        BP.finite_difference(net, x, d, 5, h=0.0)
    with pytest.raises(ValueError, match="d must have shape"):
        BP.bptt(net, x, d[:, :2], 5)
    with pytest.raises(ValueError, match="s0 must have shape"):
        BP.free_trajectory(net, x, 5, s0=np.zeros((2, net.n_state)))
    with pytest.raises(ValueError, match="not finite"):
        BP.free_trajectory(net, x, 200, eps=50.0)
