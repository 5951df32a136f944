"""Vector-field EP (Scellier et al. 2018) on a free-feedback network with B = W^T.

Summed as for one tied weight, the VF-EP updates of W and of B^T equal EP's one-sided
update (computed here from the activities, independently of the rule) plus the
second-order cross term (the product of the two phases' activity differences over beta).
"""

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import chain
from eqprop.graph import reference as R
from eqprop.rules.vfep import VectorFieldEP

DYN = E.Dynamics(method="anderson", fixed_steps=False, atol=1e-13, max_iter=5000, eps=0.5)


def _problem():
    net = chain([4, 6, 5, 3], seed=1, activation="sigmoid", feedback="free")
    for c in net.couplings:
        if c.B is not None:
            assert np.array_equal(c.B, c.W.T)
    rng = np.random.default_rng(0)
    return net, rng.normal(size=(3, 4)), rng.uniform(size=(3, 3))


@pytest.mark.parametrize("beta", [0.5, 0.05])
def test_vfep_with_tied_feedback_is_ep_up_to_the_cross_term(beta):
    net, x, d = _problem()
    step = VectorFieldEP(beta).estimate(net, x, d, DYN)
    s0, sb = step.free.state, step.phases["nudged"].state
    a0, ab = R.activities(net, x, s0), R.activities(net, x, sb)
    n = x.shape[0]
    cross_size = {}
    for c in net.couplings:
        if c.feedback != "free":
            continue
        p0, q0, pb, qb = a0[c.source], a0[c.target], ab[c.source], ab[c.target]
        ep = -(pb.T @ qb - p0.T @ q0) / (beta * n)  # EP's one-sided update of a tied W
        cross = (pb - p0).T @ (qb - q0) / (beta * n)
        tied_sum = step.gradient[f"{c.name}.W"] + step.gradient[f"{c.name}.B"].T
        np.testing.assert_allclose(tied_sum, ep + cross, rtol=1e-12, atol=1e-15)
        assert not np.allclose(tied_sum, ep, rtol=1e-6, atol=0)  # the cross term is there
        cross_size[c.name] = np.abs(cross).max() / np.abs(ep).max()
    # second order: relative to the update, the cross term is O(beta)
    assert all(0 < v < 2 * beta for v in cross_size.values()), cross_size
    # input coupling and biases: EP's one-sided update
    for name in ("x->h1.W", "h1.b", "h2.b", "y.b"):
        ep = (
            R.parameter_gradient(net, x, sb, d, beta)[name]
            - R.parameter_gradient(net, x, s0, d, 0.0)[name]
        ) / beta
        np.testing.assert_allclose(step.gradient[name], ep, rtol=1e-12, atol=1e-15)


def test_vfep_bad_input():
    with pytest.raises(ValueError, match="finite beta"):
        VectorFieldEP(0.0)
    net = E.init_network((4, 6, 3), activation="sigmoid")
    with pytest.raises(ValueError, match="GraphNetwork"):
        VectorFieldEP(0.5).estimate(net, np.zeros((1, 4)), np.zeros((1, 3)), DYN)
