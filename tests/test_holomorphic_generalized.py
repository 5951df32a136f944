"""The generalized holomorphic EP estimator (Laborieux & Zenke 2024) on free-feedback networks.

Checked against two independent routes: recurrent backprop (eqprop.graph.backprop, the
adjoint with J^T) where the Jacobian is EP-symmetric (B = W^T), and, for an asymmetric B,
the estimator's analytic limit q * (I - J)^{-1} dG/dbeta built here from the dense
Jacobian and complex-step derivatives of the reference map (the estimator itself never
forms J).
"""

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import chain
from eqprop.graph import holomorphic as H
from eqprop.graph import reference as R
from eqprop.graph.backprop import free_equilibrium, jacobian, recurrent_backprop
from eqprop.rules.holomorphic import HolomorphicEP

DYN = E.Dynamics(method="anderson", fixed_steps=False, atol=1e-13, max_iter=5000, eps=0.5)


def _problem(kind="hopfield", cost="squared", asym=0.5, feedback="free"):
    net = chain([4, 6, 5, 3], seed=1, kind=kind, activation="sigmoid", feedback=feedback, cost=cost)
    rng = np.random.default_rng(0)
    for c in net.couplings:
        if c.B is not None:
            c.B[...] = c.W.T + asym * rng.normal(size=c.B.shape)
    x = rng.normal(size=(3, 4))
    d = rng.uniform(0.0, 1.0, size=(3, 3))
    return net, x, d, free_equilibrium(net, x)


def _limit(net, x, d, s0):
    """-Lambda(a0, q (I - J)^{-1} dG/dbeta): complex-step dG/dbeta and da/ds, dense J."""
    cnet = H.as_complex(net, form="generalized")
    h = 1e-30
    s0c = s0.astype(np.complex128)
    dG = R.fixed_point_map(cnet, x, s0c, d, 1j * h).imag / h
    J = jacobian(net, x, s0)
    ds = np.linalg.solve(np.eye(net.n_state)[None] - J, dG[:, :, None])[:, :, 0]
    acts = R.activities(cnet, x, s0c + 1j * h * ds)
    delta = {k: v.imag / h for k, v in acts.items() if k != net.input_layer.name}
    return H.generalized_gradient(net, x, s0, delta, d)


@pytest.mark.parametrize("kind,cost", [("hopfield", "squared"), ("prototypical", "cross-entropy")])
def test_asymmetric_estimate_tends_to_its_limit_not_to_rbp(kind, cost):
    net, x, d, s0 = _problem(kind, cost)
    lim = _limit(net, x, d, s0)
    rbp = recurrent_backprop(net, x, d, s0).grads
    est = H.holomorphic_ep(net, x, d, points=32, beta=0.5, form="generalized", s_free=s0)
    assert H.relative_error(est.grads, lim) < 1e-8
    # weight asymmetry biases it (what Jacobian homeostasis targets): far from RBP
    assert H.relative_error(est.grads, rbp) > 1e-2
    assert est.info["max_imag"] < 1e-12  # conjugate points from the real free state


def test_symmetric_free_feedback_equals_rbp_and_error_falls_with_points():
    net, x, d, s0 = _problem(asym=0.0)  # free B, equal to W^T
    rbp = recurrent_backprop(net, x, d, s0).grads
    err = {
        n: H.relative_error(
            H.holomorphic_ep(net, x, d, points=n, beta=0.5, form="generalized", s_free=s0).grads,
            rbp,
        )
        for n in (2, 4, 8, 16, 32)
    }
    assert err[2] > 1e-2 and err[32] < 1e-8, err
    assert all(err[b] < err[a] for a, b in zip((2, 4, 8, 16), (4, 8, 16, 32), strict=True)), err


def test_tied_network_generalized_and_energy_forms_agree_in_the_limit():
    net, x, d, s0 = _problem(feedback="tied")
    rbp = recurrent_backprop(net, x, d, s0).grads
    kw = dict(points=32, beta=0.5, s_free=s0)
    gen = H.holomorphic_ep(net, x, d, form="generalized", **kw).grads
    en = H.holomorphic_ep(net, x, d, form="energy", **kw).grads
    assert H.relative_error(gen, rbp) < 1e-8 and H.relative_error(en, rbp) < 1e-8
    # at N = 2 they differ: the energy form also aliases the product's cross terms
    kw["points"] = 2
    gen2 = H.holomorphic_ep(net, x, d, form="generalized", **kw).grads
    en2 = H.holomorphic_ep(net, x, d, form="energy", **kw).grads
    assert H.relative_error(gen2, en2) > 1e-4


def test_rule_equals_the_numpy_route_on_free_feedback():
    net, x, d, _ = _problem()
    rule = HolomorphicEP(beta=0.5, points=8, generalized=True, start="free")
    step = rule.estimate(net, x, d, DYN)
    ref = H.holomorphic_ep(
        net, x, d, points=8, beta=0.5, form="generalized", start="free", s_free=step.free.state
    )
    assert sorted(step.gradient) == sorted(ref.grads)  # free B included
    assert "h1->h2.B" in step.gradient
    for k in ref.grads:
        np.testing.assert_allclose(step.gradient[k], ref.grads[k], rtol=1e-9, atol=1e-12)
    assert rule.last_imaginary < 1e-12


def test_generalized_bad_input():
    net, x, d, _ = _problem()
    with pytest.raises(ValueError, match=r"generalized form takes untied feedback"):
        HolomorphicEP(beta=0.5, points=4).estimate(net, x, d, DYN)  # energy form, free B
    with pytest.raises(ValueError, match="unknown holomorphic EP form"):
        H.holomorphic_ep(net, x, d, points=4, beta=0.5, form="vector")
    with pytest.raises(ValueError, match="generalized must be True or False"):
        HolomorphicEP(generalized="yes")
    hard = chain([4, 6, 3], seed=1, activation="hardsigmoid", feedback="free")
    with pytest.raises(ValueError, match="layer 'h1' has activation 'hardsigmoid'"):
        HolomorphicEP(generalized=True).estimate(hard, x, d, DYN)


@pytest.mark.parametrize(
    "kind,cost,skip", [("hopfield", "squared", ()), ("prototypical", "cross-entropy", ((0, 2),))]
)
def test_energy_form_bilinear_path_equals_the_combine_path(kind, cost, skip):
    # the rewriting of the energy form with the activity coefficient (dense couplings)
    # against one parameter_gradient per phase
    net = chain([4, 6, 5, 3], seed=2, kind=kind, activation="sigmoid", cost=cost, skip=skip)
    rng = np.random.default_rng(3)
    x, d = rng.normal(size=(3, 4)), rng.uniform(0.0, 1.0, size=(3, 3))
    phases = H.plan(3, 0.7, "previous")
    cnet = H.as_complex(net)
    free = H.relax(cnet, x).state
    states = [H.relax(cnet, x, d, p.beta, s0=free).state for p in phases]
    xc, dc = x.astype(np.complex128), d.astype(np.complex128)
    a = H.estimate_from_states(cnet, xc, dc, phases, free, states, path="combine")
    b = H.estimate_from_states(cnet, xc, dc, phases, free, states, path="bilinear")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=1e-14, err_msg=k)
