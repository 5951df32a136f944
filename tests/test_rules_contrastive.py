"""GeneRec and coupled learning: against CHL, naive NumPy formulas, and the eta -> 0 limit
derived from the energy's Hessian (its output block's Schur complement)."""

import numpy as np
import pytest

import eqprop as E
from eqprop.gradients import recurrent_backprop
from eqprop.rules import GENEREC_FORMS, coupled_target, make_rule
from eqprop.rules.coupled import coupled_limit

CONVERGED = E.Dynamics(method="picard", eps=0.5, atol=1e-13, max_iter=20000)


def _data(sizes, B=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((B, sizes[0]))
    d = np.eye(sizes[-1])[rng.integers(0, sizes[-1], B)]
    return x, d


def _net(kind="hopfield", activation="hardsigmoid", sizes=(6, 5, 4, 3), seed=3):
    return E.init_network(sizes, kind=kind, activation=activation, dtype="float64", seed=seed)


# ----------------------------------------------------------------------------- GeneRec
@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
def test_symmetric_midpoint_generec_equals_chl(kind):
    net = _net(kind)
    x, d = _data(net.sizes)
    dyn = E.Dynamics(T=30, K=10, eps=0.5)
    gen = E.GeneRec("symmetric-midpoint").estimate(net, x, d, dyn)
    chl = E.ContrastiveHebbian().estimate(net, x, d, dyn)
    np.testing.assert_array_equal(gen.phases["clamped"].state, chl.phases["clamped"].state)
    a, b = gen.gradient.flat(), chl.gradient.flat()
    scale = np.abs(b).max()
    assert scale > 1e-3  # the phases differ
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-14 * scale)
    # the other forms are not CHL
    for form in ("basic", "symmetric", "midpoint"):
        other = E.GeneRec(form).estimate(net, x, d, dyn).gradient.flat()
        assert np.abs(other - chl.gradient.flat()).max() > 1e-4 * np.abs(other).max()


def _naive_generec(x, am, ap, sizes, form):
    """Loop over the weights: dW_ij = -mean_b pre_i (post_j^+ - post_j^-) (+ mirror)."""
    off = np.concatenate([[0], np.cumsum(sizes[1:])])
    B = x.shape[0]
    dWs, dbs = [], []
    for l in range(1, len(sizes)):
        post_m = am[:, off[l - 1] : off[l]]
        post_p = ap[:, off[l - 1] : off[l]]
        pre_m = x if l == 1 else am[:, off[l - 2] : off[l - 1]]
        pre_p = x if l == 1 else ap[:, off[l - 2] : off[l - 1]]
        dW = np.zeros((sizes[l - 1], sizes[l]))
        for b in range(B):
            for i in range(sizes[l - 1]):
                for j in range(sizes[l]):
                    xi_m, xi_p, yj_m, yj_p = pre_m[b, i], pre_p[b, i], post_m[b, j], post_p[b, j]
                    if form == "basic":
                        inc = xi_m * (yj_p - yj_m)
                    elif form == "midpoint":
                        inc = 0.5 * (xi_m + xi_p) * (yj_p - yj_m)
                    elif form == "symmetric":
                        inc = xi_m * (yj_p - yj_m) + yj_m * (xi_p - xi_m)
                    else:
                        inc = xi_p * yj_p - xi_m * yj_m
                    dW[i, j] -= inc / B
        dWs.append(dW)
        dbs.append(-(post_p - post_m).mean(axis=0))
    return dWs, dbs


@pytest.mark.parametrize("form", GENEREC_FORMS)
def test_generec_equals_naive_formula(form):
    net = _net()
    x, d = _data(net.sizes, seed=1)
    step = E.GeneRec(form).estimate(net, x, d, E.Dynamics(T=30, K=10, eps=0.5))
    am = np.clip(step.free.state, 0, 1)  # hardsigmoid activities
    ap = np.clip(step.phases["clamped"].state, 0, 1)
    np.testing.assert_array_equal(step.phases["clamped"].state[:, -3:], d)  # output clamped
    dWs, dbs = _naive_generec(x, am, ap, net.sizes, form)
    for got, want in zip(step.gradient.dW + step.gradient.db, dWs + dbs):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert max(np.abs(w).max() for w in dWs) > 1e-3


# ----------------------------------------------------------------------------- coupled
def test_coupled_phases_clamp_to_the_nudged_target_and_combine_as_stated():
    net = _net()
    x, d = _data(net.sizes, seed=2)
    eta = 0.3
    dyn = E.Dynamics(T=30, K=10, eps=0.5)
    steps = {
        v: E.CoupledLearning(eta, v).estimate(net, x, d, dyn) for v in E.rules.COUPLED_VARIANTS
    }
    c = steps["centered"]
    y0 = c.free.state[:, -3:]
    np.testing.assert_array_equal(c.phases["clamped+"].state[:, -3:], y0 + eta * (d - y0))
    # the negative target leaves the hardsigmoid box [0, 1] where y0 = 0 and d = 1: projected
    away = y0 - eta * (d - y0)
    assert away.min() < 0
    np.testing.assert_array_equal(c.phases["clamped-"].state[:, -3:], np.clip(away, 0, 1))
    np.testing.assert_array_equal(coupled_target(y0, d, -eta), away)
    np.testing.assert_array_equal(coupled_target(y0, d, -eta, (0.0, 1.0)), np.clip(away, 0, 1))
    assert set(steps["positive"].phases) == {"free", "clamped+"}
    assert set(steps["negative"].phases) == {"free", "clamped-"}

    def G(s):  # dE/dtheta (hopfield, batch mean): -rho(pre)^T rho(post)
        return E.parameter_gradient(net, x, s).flat()

    s0, sp, sm = c.free.state, c.phases["clamped+"].state, c.phases["clamped-"].state
    np.testing.assert_allclose(steps["positive"].gradient.flat(), (G(sp) - G(s0)) / eta, atol=1e-14)
    np.testing.assert_allclose(steps["negative"].gradient.flat(), (G(s0) - G(sm)) / eta, atol=1e-14)
    np.testing.assert_allclose(c.gradient.flat(), (G(sp) - G(sm)) / (2 * eta), atol=1e-14)
    # eta = 1, positive: clamped to the targets, which is CHL
    chl = E.ContrastiveHebbian().estimate(net, x, d, dyn).gradient.flat()
    pos1 = E.CoupledLearning(1.0, "positive").estimate(net, x, d, dyn).gradient.flat()
    np.testing.assert_allclose(pos1, chl, rtol=1e-12, atol=1e-15)


def _hessian(net, x, s, h=1e-5):
    """Per-sample Hessian d2E/ds2, (batch, n, n), central differences of dE/ds."""
    B, n = s.shape
    H = np.empty((B, n, n))
    for k in range(n):
        e = np.zeros(n)
        e[k] = h
        gp = E.state_gradient(net, x, s + e)
        gm = E.state_gradient(net, x, s - e)
        H[:, :, k] = (gp - gm) / (2 * h)
    return 0.5 * (H + H.transpose(0, 2, 1))


def _directional(net, x, s, v, h=1e-5):
    """d/dt of dE/dtheta(s + t v) at t = 0 (batch mean), central differences."""
    return (
        E.parameter_gradient(net, x, s + h * v).flat()
        - E.parameter_gradient(net, x, s - h * v).flat()
    ) / (2 * h)


@pytest.fixture(scope="module")
def smooth_problem():
    """A sigmoid Hopfield net (no box: the Hessian is smooth), its free state, the limit of
    coupled learning from the Schur complement, and the exact gradient (RBP)."""
    net = _net(activation="sigmoid", sizes=(5, 4, 3, 2), seed=4)
    x, d = _data(net.sizes, B=3, seed=5)
    s0 = E.free_phase(net, x, CONVERGED).state
    assert np.abs(E.state_gradient(net, x, s0)).max() < 1e-11  # an equilibrium
    H = _hessian(net, x, s0)
    n_out = net.n_out
    Hhh, Hhy, Hyy = H[:, :-n_out, :-n_out], H[:, :-n_out, -n_out:], H[:, -n_out:, -n_out:]
    S = Hyy - np.transpose(Hhy, (0, 2, 1)) @ np.linalg.solve(Hhh, Hhy)  # Schur complement
    delta = d - s0[:, -n_out:]
    rhs = np.zeros_like(s0)
    rhs[:, -n_out:] = np.einsum("bij,bj->bi", S, delta)
    limit = _directional(net, x, s0, np.linalg.solve(H, rhs[:, :, None])[:, :, 0])
    rhs_ep = np.zeros_like(s0)
    rhs_ep[:, -n_out:] = delta
    ep_limit = _directional(net, x, s0, np.linalg.solve(H, rhs_ep[:, :, None])[:, :, 0])
    exact = recurrent_backprop(net, x, d, dyn=CONVERGED).flat()
    return net, x, d, limit, ep_limit, exact, S


def test_hessian_route_reproduces_the_exact_gradient(smooth_problem):
    # checks the Hessian machinery: E_theta_s H^-1 (0, d - y) is dL/dtheta (EP's limit)
    _, _, _, _, ep_limit, exact, _ = smooth_problem
    np.testing.assert_allclose(ep_limit, exact, rtol=1e-8, atol=1e-10 * np.abs(exact).max())


def _errors(net, x, d, variant, etas, limit):
    return np.array(
        [
            np.linalg.norm(
                E.CoupledLearning(eta, variant).estimate(net, x, d, CONVERGED).gradient.flat()
                - limit
            )
            for eta in etas
        ]
    )


@pytest.mark.parametrize("variant,order", [("positive", 1), ("negative", 1), ("centered", 2)])
def test_coupled_learning_tends_to_the_schur_preconditioned_limit(smooth_problem, variant, order):
    net, x, d, limit, _, exact, S = smooth_problem
    etas = np.geomspace(0.01, 0.1, 5)
    err = _errors(net, x, d, variant, etas, limit)
    slope = np.polyfit(np.log(etas), np.log(err), 1)[0]
    assert abs(slope - order) < 0.1, (variant, slope, err)
    assert (
        err[0] < 1e-2 * np.linalg.norm(limit)
        if order == 1
        else err[0] < 1e-4 * np.linalg.norm(limit)
    )
    # the limit is not the gradient: the output error is preconditioned by S (here
    # S = I - O(W^2) here: a 1.5 % difference, 1e8 times the Hessian route's 5e-11 error)
    assert np.linalg.norm(limit - exact) > 1e-2 * np.linalg.norm(exact)
    assert np.linalg.norm(S - np.eye(S.shape[1])) > 1e-2
    assert np.all(np.linalg.eigvalsh(S) > 0)  # ... but S is positive definite: a descent direction
    assert limit @ exact > 0


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "rule", [E.ContrastiveHebbian(), E.GeneRec("midpoint"), E.CoupledLearning(0.2, "negative")]
)
def test_clamping_rules_refuse_a_cross_entropy_readout(rule):
    net = E.init_network((6, 5, 3), cost="cross-entropy", dtype="float64", seed=0)
    x, d = _data(net.sizes)
    with pytest.raises(ValueError, match=r"rule '\w+' clamps the output layer.*cost='squared'"):
        rule.estimate(net, x, d, E.Dynamics(T=5, K=2))
    E.EquilibriumPropagation(0.5).estimate(net, x, d, E.Dynamics(T=5, K=2))  # EP is fine


@pytest.mark.parametrize("eta", [0.0, -0.1, float("nan"), float("inf"), 1.5, "abc", None])
def test_coupled_learning_refuses_eta_outside_its_range(eta):
    with pytest.raises(ValueError, match="eta in \\(0, 1\\]"):
        E.CoupledLearning(eta)


def test_unknown_names_raise_one_clear_error():
    with pytest.raises(
        ValueError, match="unknown coupled-learning variant 'up'; choose one of positive"
    ):
        E.CoupledLearning(0.5, "up")
    with pytest.raises(ValueError, match="unknown GeneRec form 'half'; choose one of basic"):
        E.GeneRec("half")
    with pytest.raises(
        ValueError,
        match="unknown rule 'bp'; choose one of ep, chl, chl-scaled, generec, coupled, rbp, bptt",
    ):
        make_rule("bp")
    with pytest.raises(ValueError, match="needs clamp=True"):
        E.PhaseSpec("c", 0.0, eta=0.5)
    with pytest.raises(ValueError, match="finite and nonzero"):
        E.PhaseSpec("c", 0.0, clamp=True, eta=0.0)


def test_make_rule_builds_each_rule_with_its_parameters():
    assert repr(make_rule("ep", beta=0.3, estimator="symmetric")) == repr(
        E.EquilibriumPropagation(0.3, "symmetric")
    )
    assert isinstance(make_rule("chl"), E.ContrastiveHebbian)
    assert make_rule("generec", generec_form="symmetric").form == "symmetric"
    r = make_rule("coupled", eta=0.2, variant="negative")
    assert (r.eta, r.variant) == (0.2, "negative")


# ----------------------------------------------------------- the limit, computed directly
def test_coupled_limit_equals_the_hessian_route(smooth_problem):
    # coupled_limit goes through the step map's Jacobian and a directional derivative of
    # dF/dtheta; the fixture through the energy's Hessian by central differences and S
    net, x, d, limit, _, exact, _ = smooth_problem
    s0 = E.free_phase(net, x, CONVERGED).state
    direct = coupled_limit(net, x, d, s0).flat()
    np.testing.assert_allclose(direct, limit, rtol=0, atol=1e-8 * np.abs(limit).max())
    assert np.linalg.norm(direct - exact) > 1e-2 * np.linalg.norm(exact)  # not the gradient


def test_positive_coupled_learning_tends_to_coupled_limit_in_the_box():
    # hardsigmoid box: hidden units inside it are linear, so the clamped state is linear in
    # eta and the positive variant's error to its limit is exactly first order
    net = _net(sizes=(6, 5, 4, 3), seed=3)
    x, d = _data(net.sizes, B=4, seed=1)
    s0 = E.free_phase(net, x, CONVERGED).state
    limit = coupled_limit(net, x, d, s0).flat()
    etas = np.geomspace(1e-3, 1e-2, 4)
    err = _errors(net, x, d, "positive", etas, limit)
    slope = np.polyfit(np.log(etas), np.log(err), 1)[0]
    assert abs(slope - 1) < 0.1, (slope, err)
    assert err[0] < 1e-2 * np.linalg.norm(limit)


def test_coupled_limit_refuses_what_it_cannot_compute():
    net = E.init_network((4, 3, 2), cost="cross-entropy", dtype="float64", seed=0)
    x, d = _data(net.sizes, B=2)
    with pytest.raises(ValueError, match="cost='squared'"):
        coupled_limit(net, x, d, np.zeros((2, net.n_state)))
    net = _net(sizes=(4, 3, 2))
    with pytest.warns(RuntimeWarning, match="not a fixed point"):
        coupled_limit(net, x, d, np.full((2, net.n_state), 0.5))
