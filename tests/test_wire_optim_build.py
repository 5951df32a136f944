"""SGD on graph networks (by parameter name, per-layer rates) and the chain extensions
behind the coming CLI flags (output activation, feedback mode, skip couplings)."""

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import from_network
from eqprop.graph.build import extend_chain, parse_skip
from eqprop.graph.gradient import from_chain_gradient
from eqprop.optim import SGD, graph_rates


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.01)])
def test_sgd_on_graph_equals_sgd_on_network(momentum, wd):
    net = E.init_network((5, 4, 3, 2), seed=0, dtype="float64")
    g = from_network(net)
    rng = np.random.default_rng(1)
    a, b = SGD([0.1, 0.05, 0.02], momentum, wd), SGD([0.1, 0.05, 0.02], momentum, wd)
    for _ in range(3):
        grad = E.Gradient(
            [rng.normal(size=w.shape) for w in net.weights],
            [rng.normal(size=v.shape) for v in net.biases],
        )
        a.step(net, grad)
        b.step(g, from_chain_gradient(g, grad))
    for i, c in enumerate(g.couplings):
        np.testing.assert_array_equal(c.W, net.weights[i])
    np.testing.assert_array_equal(g.layer("y").bias, net.biases[-1])


def test_graph_rates_follow_the_target_layer_and_bad_gradients_raise():
    g = extend_chain(
        from_network(E.init_network((5, 4, 3, 2), seed=0)), feedback="free", skip=[(1, 3)]
    )
    r = graph_rates(g, [1.0, 2.0, 3.0])
    assert r["h1->y.W"] == 3.0 and r["h1->h2.B"] == 2.0 and r["x->h1.W"] == 1.0
    assert r["h2.b"] == 2.0
    with pytest.raises(ValueError, match="3 rates"):
        SGD([0.1, 0.1]).step(g, {})
    with pytest.raises(ValueError, match="missing"):
        SGD([0.1] * 3).step(g, {"x->h1.W": np.zeros((5, 4))})


def test_extend_chain_modes_and_skip_syntax():
    base = from_network(E.init_network((5, 4, 3, 2), cost="cross-entropy", seed=0))
    g = extend_chain(base, output_activation="identity", feedback="random", skip=[(0, 2)], seed=3)
    assert g.output_layer.role == "output" and g.output_layer.activation == "identity"
    assert g.output_layer.box is None
    assert [c.feedback for c in g.couplings] == ["tied", "random", "random", "tied"]
    np.testing.assert_array_equal(g.couplings[1].W, base.couplings[1].W)
    assert "h1->h2.B" not in g.parameters()  # random feedback is fixed
    s = extend_chain(base, feedback="scaled", gamma=0.5)
    assert s.coupling("h1->h2").gamma == 0.5
    assert parse_skip("0-2, 1-3", 4) == [(0, 2), (1, 3)]
    for bad, msg in [
        ("1-1", "itself"),
        ("2-0", "backwards"),
        ("0-1", "adjacent"),
        ("0-9", "0..3"),
        ("0_2", "'i-j'"),
        ("0-2,0-2", "twice"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_skip(bad, 4)
    with pytest.raises(ValueError, match="scaled"):
        extend_chain(base, gamma=0.5)
