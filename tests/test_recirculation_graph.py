"""Recirculation on eqprop's layers and couplings: the loop as a graph network.

The reference route is the arrays-only implementation eqprop had before the loop moved
onto the couplings (``_old_passes`` / ``_old_update`` below: the schedule and the rule on
plain ``W`` and ``b`` arrays, no coupling module). The graph route (``loop_network``,
``graph_recirculate``, ``recirculation_gradient`` applied by ``eqprop.optim.SGD``) must
follow it to 1e-12 in float64 over many updates; the public ``LoopWeights`` functions,
now adapters over the same couplings, must follow it bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from eqprop.graph import Coupling, GraphNetwork, Layer
from eqprop.graph.gradient import GraphGradient
from eqprop.network import activation_functions
from eqprop.optim import SGD
from eqprop.recirculation import (
    LoopTrainer,
    LoopWeights,
    RecirculationSettings,
    encoder_patterns,
    graph_recirculate,
    init_loop,
    loop_network,
    loop_of,
    recirculate,
    recirculation_gradient,
    recirculation_update,
    scaled_update,
    train_seeds,
)

#: The logistic function the arrays route used (eqprop's one formula for it).
_sig = activation_functions("sigmoid")[0]


def _old_passes(weights, biases, v, lam, lam_h, hidden_linear=False):
    """States y(0 .. 2K-1) of the loop, plain arrays (single loop or stack)."""
    K = len(weights)
    states = [v]
    for t in range(1, 2 * K):
        g = t % K
        a = states[t - 1] @ weights[(g - 1) % K] + biases[g][..., None, :]
        out = a if (hidden_linear and g != 0) else _sig(a)
        if t < K:
            states.append(out)
        else:
            lr = lam if g == 0 else lam_h
            states.append(lr * states[t - K] + (1.0 - lr) * out)
    return states


def _old_update(states, K, eps, mean):
    """Delta W_k = eps y(t2-1)^T [y(t1) - y(t2)], Delta b_g = eps sum_c [y(t1) - y(t2)]."""
    factor = eps * (1.0 / states[0].shape[-2] if mean else 1.0)
    dW, db = [None] * K, [None] * K
    for g in range(K):
        t1, t2 = g, g + K
        diff = states[t1] - states[t2]
        dW[(g - 1) % K] = factor * (np.swapaxes(states[t2 - 1], -1, -2) @ diff)
        db[g] = factor * diff.sum(axis=-2)
    return dW, db


SETTINGS = RecirculationSettings(learning_rate=1.0, regression=0.75, hidden_regression=0.6)


@pytest.mark.parametrize("sizes", [(4, 2), (8, 4, 3)], ids=["4-2-4", "8-4-3-8"])
def test_graph_route_follows_the_arrays_route_over_many_updates(sizes):
    eps, n_updates = 2.0, 25
    loop = init_loop(sizes, np.random.default_rng(7))
    v = encoder_patterns(sizes[0])
    net = loop_network(loop, SETTINGS)
    K = len(sizes)
    opt = SGD([eps] * K)  # one rate per coupling = the rate of the layer it feeds
    W, b = [w.copy() for w in loop.weights], [x.copy() for x in loop.biases]
    for _ in range(n_updates):
        states = _old_passes(W, b, v, 0.75, 0.6)
        passes = graph_recirculate(net, v, SETTINGS)
        for want, got in zip(states, passes.states, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        grad = recirculation_gradient(net, passes)
        assert isinstance(grad, GraphGradient)
        assert list(grad) == list(net.parameters())
        opt.step(net, grad)
        dW, db = _old_update(states, K, eps, mean=True)
        W = [w + d for w, d in zip(W, dW, strict=True)]
        b = [x + d for x, d in zip(b, db, strict=True)]
    final = loop_of(net)
    assert np.abs(final.weights[0] - loop.weights[0]).max() > 1e-2  # training moved it
    for got, want in zip((*final.weights, *final.biases), (*W, *b), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_loop_weights_adapter_is_the_arrays_route_bit_for_bit(reduce):
    # a stack of three 5-3-2 loops (batch 5: not a power of two), several updates
    members = [init_loop((5, 3, 2), np.random.default_rng(s)) for s in range(3)]
    loop = LoopWeights(
        tuple(np.stack([m.weights[k] for m in members]) for k in range(3)),
        tuple(np.stack([m.biases[g] for m in members]) for g in range(3)),
    )
    settings = RecirculationSettings(learning_rate=3.0, regression=0.7, hidden_regression=0.4)
    v = np.broadcast_to(np.random.default_rng(1).uniform(size=(5, 5)), (3, 5, 5))
    W, b = list(loop.weights), list(loop.biases)
    for _ in range(10):
        states = _old_passes(W, b, v, 0.7, 0.4)
        passes = recirculate(loop, v, settings)
        assert all(np.array_equal(x, y) for x, y in zip(states, passes.states, strict=True))
        loop = loop.plus(recirculation_update(loop, passes, settings, reduce=reduce))
        dW, db = _old_update(states, 3, 3.0, mean=reduce == "mean")
        W = [w + d for w, d in zip(W, dW, strict=True)]
        b = [x + d for x, d in zip(b, db, strict=True)]
    assert all(np.array_equal(x, y) for x, y in zip(loop.weights, W, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(loop.biases, b, strict=True))


def test_loop_trainer_step_equals_sgd_on_the_graph_network():
    from eqprop.train import TrainConfig

    config = TrainConfig().replace(
        dataset="digits",
        architecture="64-12-64",
        rule="recirculation",
        regression=0.6,
        hidden_regression=0.8,
        lrs=(0.3, 0.2),
        batch_size=6,
        epochs=1,
        limit=18,
        shuffle=False,
    )
    trainer = LoopTrainer(config, quiet=True)
    settings = trainer.settings
    net = loop_network(trainer.loop, settings)
    opt = SGD([0.3, 0.2])
    x = trainer.x_train
    for start in range(0, x.shape[0], 6):
        trainer.step(x[start : start + 6])
        opt.step(
            net, recirculation_gradient(net, graph_recirculate(net, x[start : start + 6], settings))
        )
    got = loop_of(net)
    for a, c in zip(got.parameters().values(), trainer.loop.parameters().values(), strict=True):
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-12)
    # scaled_update's per-coupling rates are SGD's graph rates (coupling k and the bias it feeds)
    assert (
        scaled_update(
            LoopWeights((np.ones((2, 1)), np.ones((1, 2))), (np.ones(2), np.ones(1))), [2.0, 5.0]
        ).biases[0][0]
        == 5.0
    )


def test_loop_network_layout_and_round_trip():
    loop = init_loop((8, 4, 3), np.random.default_rng(0))
    net = loop_network(loop, RecirculationSettings(hidden_activation="linear"))
    assert [la.name for la in net.layers] == ["v", "h1", "h2", "r"]
    assert [c.name for c in net.couplings] == ["v->h1", "h1->h2", "h2->r"]
    assert [la.activation for la in net.layers[1:]] == ["identity", "identity", "sigmoid"]
    assert list(net.parameters()) == ["v->h1.W", "h1->h2.W", "h2->r.W", "h1.b", "h2.b", "r.b"]
    back = loop_of(net)
    for a, c in zip(back.parameters().values(), loop.parameters().values(), strict=True):
        assert np.array_equal(a, c)
    # the graph copies: training the network leaves the loop alone
    net.couplings[0].W += 1.0
    assert not np.array_equal(net.couplings[0].W, loop.weights[0])


def test_graph_gradient_is_minus_the_mean_update_for_linear_hidden_units():
    settings = RecirculationSettings(learning_rate=1.0, regression=0.5, hidden_activation="linear")
    loop = init_loop((6, 3), np.random.default_rng(2))
    v = np.random.default_rng(3).uniform(size=(7, 6))
    grad = recirculation_gradient(
        loop_network(loop, settings), graph_recirculate(loop_network(loop, settings), v, settings)
    )
    states = _old_passes(loop.weights, loop.biases, v, 0.5, 0.5, hidden_linear=True)
    dW, db = _old_update(states, 2, 1.0, mean=True)
    np.testing.assert_allclose(grad["v->h1.W"], -dW[0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(grad["h1->r.W"], -dW[1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(grad["r.b"], -db[0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(grad["h1.b"], -db[1], rtol=0, atol=1e-14)


def _net(layers, couplings):
    return GraphNetwork(layers, couplings)


def _bias(n):
    return np.zeros(n)


NOT_LOOPS = {
    "output smaller than the input": (
        lambda: _net(
            [
                Layer("x", 4, "input"),
                Layer("h", 2, "hidden", "sigmoid", bias=_bias(2)),
                Layer("y", 3, "output", "sigmoid", bias=_bias(3)),
            ],
            [Coupling("x", "h", np.zeros((4, 2))), Coupling("h", "y", np.zeros((2, 3)))],
        ),
        "of the input's size 4",
    ),
    "a skip coupling": (
        lambda: _net(
            [
                Layer("x", 4, "input"),
                Layer("h", 2, "hidden", "sigmoid", bias=_bias(2)),
                Layer("y", 4, "output", "sigmoid", bias=_bias(4)),
            ],
            [
                Coupling("x", "h", np.zeros((4, 2))),
                Coupling("h", "y", np.zeros((2, 4))),
                Coupling("x", "y", np.zeros((4, 4))),
            ],
        ),
        "feeds 2 couplings",
    ),
    "free feedback": (
        lambda: _net(
            [
                Layer("x", 4, "input"),
                Layer("h", 2, "hidden", "sigmoid", bias=_bias(2)),
                Layer("y", 4, "output", "sigmoid", bias=_bias(4)),
            ],
            [
                Coupling("x", "h", np.zeros((4, 2))),
                Coupling("h", "y", np.zeros((2, 4)), feedback="free", B=np.zeros((4, 2))),
            ],
        ),
        "feedback 'tied'",
    ),
    "a tanh group": (
        lambda: _net(
            [
                Layer("x", 4, "input"),
                Layer("h", 2, "hidden", "tanh", bias=_bias(2)),
                Layer("y", 4, "output", "sigmoid", bias=_bias(4)),
            ],
            [Coupling("x", "h", np.zeros((4, 2))), Coupling("h", "y", np.zeros((2, 4)))],
        ),
        "not a recirculation group's",
    ),
    "a group without bias": (
        lambda: _net(
            [
                Layer("x", 4, "input"),
                Layer("h", 2, "hidden", "sigmoid"),
                Layer("y", 4, "output", "sigmoid", bias=_bias(4)),
            ],
            [Coupling("x", "h", np.zeros((4, 2))), Coupling("h", "y", np.zeros((2, 4)))],
        ),
        "needs one bias per unit",
    ),
}


@pytest.mark.parametrize("case", list(NOT_LOOPS))
def test_a_network_that_is_not_a_loop_is_refused(case):
    make, match = NOT_LOOPS[case]
    with pytest.raises(ValueError, match=match):
        graph_recirculate(make(), np.zeros((1, 4)), RecirculationSettings())


def test_other_graph_misuse_is_refused():
    loop = init_loop((4, 2), np.random.default_rng(0))
    net = loop_network(loop, RecirculationSettings())
    with pytest.raises(ValueError, match="settings say 'linear'"):
        graph_recirculate(net, np.eye(4), RecirculationSettings(hidden_activation="linear"))
    with pytest.raises(ValueError, match="graph_recirculate and recirculation_gradient"):
        recirculate(net, np.eye(4), RecirculationSettings())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape \\(batch, 4\\)"):
        graph_recirculate(net, np.eye(3), RecirculationSettings())
    with pytest.raises(ValueError, match="stack of loops"):
        loop_network(
            train_seeds((4, 2), [0, 1], np.eye(4), RecirculationSettings(), max_updates=0).loop,
            RecirculationSettings(),
        )


def test_mutation_swapping_the_presynaptic_pass_is_detected(monkeypatch):
    """The check above must be able to fail: take the presynaptic activity from the first
    pass (y(t1 - 1)) instead of the second (y(t2 - 1)) and the graph gradient leaves the
    arrays route by far more than its tolerance."""
    import eqprop.recirculation as rc

    real = rc._update_terms

    def swapped(passes, n_groups):
        for k, g, _pre, diff in real(passes, n_groups):
            yield k, g, passes.states[(g - 1) % (2 * n_groups)], diff

    loop = init_loop((4, 2), np.random.default_rng(7))
    v = encoder_patterns(4)
    net = loop_network(loop, SETTINGS)
    states = _old_passes(loop.weights, loop.biases, v, 0.75, 0.6)
    dW, _ = _old_update(states, 2, 1.0, mean=True)
    good = recirculation_gradient(net, graph_recirculate(net, v, SETTINGS))
    np.testing.assert_allclose(good["v->h1.W"], -dW[0], rtol=0, atol=1e-12)
    monkeypatch.setattr(rc, "_update_terms", swapped)
    bad = recirculation_gradient(net, graph_recirculate(net, v, SETTINGS))
    for name, want in (("v->h1.W", -dW[0]), ("h1->r.W", -dW[1])):
        rel = np.linalg.norm(bad[name] - want) / np.linalg.norm(want)
        assert rel > 1e-2, (name, rel)


def test_restricted_case_on_the_graph_rule_gradient_is_the_reconstruction_gradient():
    """The paper's restricted case (linear visible units, symmetric weights, lambda -> 1)
    through the objects a rule study uses: RecirculationRule.gradient against the exact
    gradient by name, and the reference checked by central finite differences."""
    from eqprop.recirculation import reconstruction_graph_gradient, squared_reconstruction_error
    from eqprop.rules import RecirculationRule

    rng = np.random.default_rng(6)
    enc = rng.uniform(-0.5, 0.5, (6, 3))
    loop = LoopWeights((enc, enc.T.copy()), (rng.uniform(-0.5, 0.5, 6), rng.uniform(-0.5, 0.5, 3)))
    rule = RecirculationRule(regression=0.999, hidden_regression=0.0, visible_activation="linear")
    net = loop_network(loop, rule.settings)
    v = rng.uniform(0, 1, size=(8, 6))
    update = rule.gradient(net, v)
    exact = reconstruction_graph_gradient(net, v, rule.settings)
    assert list(update) == list(exact) == list(net.parameters())
    for name in update:
        a, c = update[name].ravel(), exact[name].ravel()
        assert a @ c / np.linalg.norm(a) / np.linalg.norm(c) >= 0.99, name
    # the reference: d(E/batch)/d(h1->r.W)[0, 1] by central differences
    h = 1e-6
    bumped = [loop.weights[1].copy() for _ in range(2)]
    bumped[0][0, 1] += h
    bumped[1][0, 1] -= h
    e = [
        squared_reconstruction_error(LoopWeights((enc, w), loop.biases), v, rule.settings) / 8
        for w in bumped
    ]
    assert exact["h1->r.W"][0, 1] == pytest.approx((e[0] - e[1]) / (2 * h), rel=1e-6)
