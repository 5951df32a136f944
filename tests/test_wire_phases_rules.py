"""Phases and rules on graph networks (issue 11, wiring): the automatic fast path (a dense
tied chain runs on the chain's fused kernels) equals the general graph path to 1e-12 in
float64 on states and gradients for every configuration the fast path accepts; the
general path on skip-coupled and untied networks checked against independent routes
(the NumPy reference map at the fixed point, recurrent backprop, the CHL identity)."""

import itertools

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import chain, from_network
from eqprop.graph import reference as R
from eqprop.graph.backprop import recurrent_backprop
from eqprop.graph.build import chain_mismatch, to_network
from eqprop.graph.gradient import GraphGradient
from eqprop.phases import clamp
from eqprop.rules import (
    ContrastiveHebbian,
    CoupledLearning,
    EquilibriumPropagation,
    GeneRec,
)

TOL = 1e-12


def _chain_graph(kind, act, cost, seed=0):
    sizes = (5, 4, 3) if cost == "squared" else (5, 4, 3, 3)
    net = E.init_network(sizes, kind=kind, activation=act, cost=cost, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:
        b[:] = rng.normal(scale=0.3, size=b.shape)
    return from_network(net)


def _data(g, batch=3, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch, g.n_in))
    d = np.eye(g.n_out)[rng.integers(0, g.n_out, batch)]
    return x, d


def _rules(cost):
    rules = [EquilibriumPropagation(0.3, e) for e in ("one-sided", "random-sign", "symmetric")]
    if cost == "squared":
        rules += [ContrastiveHebbian()]
        rules += [GeneRec(f) for f in ("basic", "symmetric", "midpoint", "symmetric-midpoint")]
        rules += [CoupledLearning(0.5, v) for v in ("positive", "negative", "centered")]
    return rules


def _max_gap(a: GraphGradient, b: GraphGradient) -> float:
    assert list(a) == list(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


CONFIGS = list(
    itertools.product(
        [
            ("hopfield", "hardsigmoid"),
            ("hopfield", "sigmoid"),
            ("prototypical", "hardsigmoid"),
            ("prototypical", "shifted-sigmoid"),
        ],
        ["squared", "cross-entropy"],
        ["inside", "outside"],
        [1.0, 0.6],
        ["fixed", "fused"],
    )
)


def test_fast_path_equals_general_path_states_and_gradients():
    """Every configuration the fast path accepts (both kinds, boxed and unboxed, both
    costs, both nudge conventions, damping, the fixed and fused methods), every rule."""
    worst_state = worst_grad = 0.0
    for (kind, act), cost, nudge, damping, method in CONFIGS:
        g = _chain_graph(kind, act, cost)
        assert chain_mismatch(g) is None
        x, d = _data(g)
        dyn = E.Dynamics(T=15, K=5, eps=0.4, damping=damping, nudge=nudge, method=method)
        fast, general = clamp(g, x, path="fast"), clamp(g, x, path="general")
        assert fast.chain is not None and general.chain is None
        for rule in _rules(cost):
            sf = rule.estimate(g, fast, d, dyn, rng=np.random.default_rng(1))
            sg = rule.estimate(g, general, d, dyn, rng=np.random.default_rng(1))
            assert isinstance(sf.gradient, GraphGradient)
            assert list(sf.gradient) == list(g.parameters())
            assert list(sf.phases) == list(sg.phases)
            for name in sf.phases:
                gap = float(np.max(np.abs(sf.phases[name].state - sg.phases[name].state)))
                worst_state = max(worst_state, gap)
            worst_grad = max(worst_grad, _max_gap(sf.gradient, sg.gradient))
            np.testing.assert_allclose(sf.prediction, sg.prediction, rtol=0, atol=TOL)
            assert abs(sf.loss - sg.loss) <= TOL
    print(
        f"fast vs general: max |state gap| {worst_state:.3g}, max |gradient gap| {worst_grad:.3g}"
    )
    assert worst_state <= TOL and worst_grad <= TOL


def test_fast_path_gradient_equals_todays_network_rule():
    """The fast path is today's rule on today's Network, renamed: the same numbers."""
    net = E.init_network((5, 4, 3), kind="prototypical", activation="sigmoid", seed=2)
    g = from_network(net)
    x, d = _data(g)
    dyn = E.Dynamics(T=10, K=4, nudge="outside")
    rule = EquilibriumPropagation(0.5, "symmetric")
    a = rule.estimate(net, x, d, dyn).gradient
    b = rule.estimate(g, x, d, dyn).gradient
    names = ["x->h1.W", "h1->y.W"]
    for i, n in enumerate(names):
        np.testing.assert_array_equal(a.dW[i], b[n])
    np.testing.assert_array_equal(a.db[1], b["y.b"])


def test_to_network_inverts_from_network_and_names_what_is_not_a_chain():
    net = E.init_network((5, 4, 3, 3), kind="hopfield", cost="cross-entropy", seed=0)
    back = to_network(from_network(net))
    assert back.sizes == net.sizes and back.cost == net.cost and back.kind == net.kind
    np.testing.assert_array_equal(back.packed(), net.packed())
    cases = {
        "skip": chain([5, 4, 3], skip=[(0, 2)]),
        "feedback 'scaled'": chain([5, 4, 3, 2], feedback="scaled", gamma=0.5),
        "activation 'identity'": chain([5, 4, 3], output_activation="identity"),
    }
    for what, g in cases.items():
        why = chain_mismatch(g)
        assert why is not None and what.split()[-1].strip("'") in why, (what, why)
        with pytest.raises(ValueError, match="not a dense tied chain"):
            to_network(g)
        with pytest.raises(ValueError, match="path='fast'"):
            clamp(g, np.zeros((1, 5)), path="fast")
        assert clamp(g, np.zeros((1, 5))).chain is None  # auto: the general path


def _skip_net():
    g = chain(
        [5, 4, 3, 2],
        activation="sigmoid",
        output_activation="identity",
        skip=[(0, 2), (1, 3)],
        seed=3,
    )
    rng = np.random.default_rng(4)
    for la in g.layers:
        if la.bias is not None:
            la.bias[:] = rng.normal(scale=0.2, size=la.size)
    return g


def test_general_path_reaches_the_reference_fixed_point():
    """Phases on a skip-coupled, untied (random feedback) network: the final state is a
    fixed point of the NumPy reference map (free, nudged, clamped)."""
    g = chain([5, 4, 3, 2], activation="sigmoid", feedback="random", skip=[(1, 3)], seed=1)
    x, d = _data(g)
    dyn = E.Dynamics(T=400, K=400, eps=0.5)
    free = E.free_phase(g, x, dyn)
    nud = E.nudged_phase(g, x, d, 0.5, dyn, s0=free.state)
    cl = E.run_phase(g, x, dyn, d=d, s0=free.state, steps=400, clamp_output=True)
    for s, beta, nudge in (
        (free.state, 0.0, "inside"),
        (nud.state, 0.5, "inside"),
        (cl.state, 0.0, "clamp"),
    ):
        dd = d if (beta or nudge == "clamp") else None
        gs = R.fixed_point_map(g, x, s, dd, beta, eps=0.5, nudge=nudge)
        assert np.max(np.abs(gs - s)) < 1e-10
    np.testing.assert_allclose(E.predict(g, x, dyn), free.state[:, -2:], atol=1e-12)


def test_symmetric_ep_on_skip_network_approaches_recurrent_backprop():
    """EP (symmetric) on the general path of a tied, skip-coupled network with a linear
    output: its gradient tends to recurrent backprop's as beta^2."""
    g = _skip_net()
    x, d = _data(g, batch=4)
    dyn = E.Dynamics(
        T=1, K=1, eps=0.5, method="anderson", fixed_steps=False, atol=1e-13, max_iter=5000
    )
    free = E.free_phase(g, x, dyn)
    ref = recurrent_backprop(g, x, d, free.state, eps=0.5).grads
    errs = []
    for beta in (0.1, 0.05):
        est = EquilibriumPropagation(beta, "symmetric").estimate(g, x, d, dyn).gradient
        errs.append(max(float(np.max(np.abs(est[k] - ref[k]))) for k in est))
    scale = max(float(np.max(np.abs(v))) for v in ref.values())
    assert errs[0] < 0.05 * scale
    assert 3.0 < errs[0] / errs[1] < 5.0  # second order in beta


def test_generec_symmetric_midpoint_is_chl_on_graph_networks():
    """O'Reilly's identity on the general path, free feedback and skips included: two
    routes (coupling-module differences vs the contrast of dF/dtheta)."""
    g = chain([5, 4, 3, 2], activation="sigmoid", feedback="free", skip=[(1, 3)], seed=2)
    x, d = _data(g)
    dyn = E.Dynamics(T=30, K=10)
    a = GeneRec("symmetric-midpoint").estimate(g, x, d, dyn).gradient
    b = ContrastiveHebbian().estimate(g, x, d, dyn).gradient
    assert "h1->h2.B" in a
    assert _max_gap(a, b) < 1e-14
    c = GeneRec("basic").estimate(g, x, d, dyn).gradient
    assert _max_gap(a, c) > 1e-6  # the forms differ


def test_graph_rules_reject_what_they_cannot_run():
    g = from_network(E.init_network((5, 4, 3), cost="cross-entropy", seed=0))
    x, d = _data(g)
    with pytest.raises(ValueError, match="clamps the output"):
        ContrastiveHebbian().estimate(g, x, d, E.Dynamics())
    other = from_network(E.init_network((5, 4, 3), seed=0))
    with pytest.raises(ValueError, match="another network"):
        E.free_phase(other, clamp(g, x), E.Dynamics())
    h = chain([5, 4, 3], skip=[(0, 2)], feedback="random")  # no energy to record
    with pytest.raises(ValueError, match="record_energy"):
        E.free_phase(h, x, E.Dynamics(record_energy=True))
    with pytest.raises(ValueError, match="applies to graph networks"):
        clamp(E.init_network((5, 4, 3), seed=0), x, path="general")
