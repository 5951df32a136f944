"""HolomorphicEP, the learning rule (phases through solvers, complex128 graph kernels).

Checked against the NumPy estimator of eqprop.graph.holomorphic (its own Picard
relaxation of the reference map) and against recurrent backprop at the rule's free state.
"""

import itertools

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import chain
from eqprop.graph import holomorphic as H
from eqprop.graph.backprop import recurrent_backprop
from eqprop.rules.holomorphic import HolomorphicEP

DYN = E.Dynamics(method="anderson", fixed_steps=False, atol=1e-13, max_iter=5000, eps=0.5)


def _problem():
    net = chain([4, 6, 3], seed=1, activation="sigmoid")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    d = rng.uniform(0.0, 1.0, size=(3, 3))
    return net, x, d


@pytest.mark.parametrize("start", ["previous", "free"])
def test_rule_equals_the_numpy_estimator(start):
    net, x, d = _problem()
    step = HolomorphicEP(beta=0.5, points=4, start=start).estimate(net, x, d, DYN)
    ref = H.holomorphic_ep(net, x, d, points=4, beta=0.5, start=start, s_free=step.free.state)
    assert sorted(step.gradient) == sorted(ref.grads)
    for k in ref.grads:
        np.testing.assert_allclose(step.gradient[k], ref.grads[k], rtol=1e-9, atol=1e-12)
    assert set(step.phases) == {"free", "nudged0", "nudged1", "nudged2", "nudged3"}
    assert step.phases["nudged1"].state.dtype == np.complex128
    assert all(p.result.success for p in step.phases.values())


def test_rule_error_falls_geometrically_with_points():
    net, x, d = _problem()
    Ns = (2, 4, 8, 16, 32)
    err = {}
    for n in Ns:
        step = HolomorphicEP(beta=0.5, points=n).estimate(net, x, d, DYN)
        exact = recurrent_backprop(net, x, d, step.free.state).grads
        err[n] = H.relative_error(dict(step.gradient), exact)
    for a, b in itertools.pairwise(Ns):
        assert err[b] < err[a], err
        if err[b] > 1e-12:  # doubling N about squares the error (aliasing of c_{N+1})
            assert 1.5 < np.log(err[b]) / np.log(err[a]) < 2.7, (a, err[a], b, err[b])
    assert err[2] > 1e-2 and err[32] < 1e-8, err


def test_rule_bad_input():
    with pytest.raises(ValueError, match="points must be an integer >= 2"):
        HolomorphicEP(beta=0.5, points=1)
    with pytest.raises(ValueError, match=r"\|beta\|"):
        HolomorphicEP(beta=0.0, points=4)
    with pytest.raises(ValueError, match="unknown start"):
        HolomorphicEP(beta=0.5, points=4, start="zero")
    x, d = np.zeros((1, 4)), np.zeros((1, 3))
    hard = chain([4, 6, 3], seed=1, activation="hardsigmoid")
    with pytest.raises(ValueError, match="not holomorphic"):
        HolomorphicEP().estimate(hard, x, d, DYN)
    with pytest.raises(ValueError, match="runs on a GraphNetwork"):
        HolomorphicEP().estimate(E.init_network((4, 6, 3), activation="sigmoid"), x, d, DYN)


@pytest.mark.parametrize("start", ["previous", "free"])
def test_each_phase_starts_where_selected(start):
    # row 0 of a phase's residual is max|g(s0, beta_k) - s0| at its initial state s0:
    # the previous phase's final state ("previous") or the free state ("free")
    from eqprop.graph import reference as R

    net, x, d = _problem()
    rule = HolomorphicEP(beta=0.5, points=4, start=start)
    step = rule.estimate(net, x, d, DYN)
    cnet = H.as_complex(net)
    free = step.free.state.astype(np.complex128)
    prev = free
    for k, ph in enumerate(rule.plan(None)):
        s0 = free if (start == "free" or k == 0) else prev
        r0 = np.abs(R.fixed_point_map(cnet, x, s0, d, ph.beta) - s0).max(axis=1)
        np.testing.assert_allclose(step.phases[ph.name].result.residual[0], r0, rtol=1e-10)
        prev = step.phases[ph.name].state
