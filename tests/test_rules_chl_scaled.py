"""CHL with gamma-scaled feedback (Xie & Seung 2003) against the exact gradient of the
same graph network, and its bad input."""

import itertools

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import chain
from eqprop.graph.backprop import recurrent_backprop
from eqprop.rules import ContrastiveHebbian, ScaledFeedbackCHL

DYN = E.Dynamics(method="picard", fixed_steps=False, atol=1e-13, max_iter=20000)


def _problem(gamma, **kw):
    rng = np.random.default_rng(0)
    x = rng.random((4, 6))
    d = np.eye(3)[rng.integers(0, 3, 4)]
    settings = dict(kind="prototypical", activation="sigmoid", output_activation="identity", seed=1)
    settings.update(kw)
    net = chain([6, 5, 4, 3], feedback="scaled", gamma=gamma, **settings)
    return net, x, d


def _rel_error(rule, gamma):
    net, x, d = _problem(gamma)
    step = rule.estimate(net, x, d, DYN)
    ref = recurrent_backprop(net, x, d, step.free.state, check_fixed_point=1e-9)
    est = step.gradient.flat()
    exact = np.concatenate([ref.grads[name].ravel() for name in step.gradient])
    return np.linalg.norm(est - exact) / np.linalg.norm(exact)


def test_relative_error_falls_monotonically_with_gamma_below_1e_2():
    gammas = np.logspace(-2, -3, 5)  # one decade, decreasing
    errors = [_rel_error(ScaledFeedbackCHL(), g) for g in gammas]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-2, errors
    # first order in gamma: the error shrinks about tenfold over the decade
    assert 5 < errors[0] / errors[-1] < 20, errors


def test_without_the_rescaling_plain_chl_is_not_the_gradient():
    # its hidden layers' updates are gamma and gamma^2 times too small
    assert _rel_error(ContrastiveHebbian(), 1e-3) > 0.2


def test_each_layer_is_rescaled_by_gamma_to_its_depth():
    net, x, d = _problem(0.1)
    scaled = ScaledFeedbackCHL().estimate(net, x, d, DYN).gradient
    plain = ContrastiveHebbian().estimate(net, x, d, DYN).gradient
    for name, depth in {"h2->y.W": 0, "y.b": 0, "h1->h2.W": 1, "h2.b": 1, "x->h1.W": 2}.items():
        np.testing.assert_allclose(scaled[name], plain[name] * 0.1**-depth, rtol=1e-12)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: E.init_network((6, 5, 3), dtype="float64"), "needs a GraphNetwork"),
        (lambda: chain([6, 5, 3], feedback="tied"), "has feedback='tied'"),
        (lambda: chain([6, 5, 3], feedback="random", seed=1), "has feedback='random'"),
        (lambda: chain([6, 5, 4, 3], feedback="scaled", gamma=0.1, skip=[(1, 3)]), "skips"),
        (lambda: chain([6, 3], feedback="scaled", gamma=0.1), "no hidden layer"),
    ],
)
def test_networks_it_cannot_rescale_are_refused(make, message):
    net = make()
    n_in = 6
    x, d = np.zeros((2, n_in)), np.eye(3)[:2]
    with pytest.raises(ValueError, match=message):
        ScaledFeedbackCHL().estimate(net, x, d, E.Dynamics(T=3, K=2))
