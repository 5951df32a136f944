"""Learning rules: EP estimators vs hand formulas and vs finite differences of the loss."""

import numpy as np
import pytest

import eqprop as E

CONVERGED = E.Dynamics(method="picard", eps=0.5, atol=1e-13, max_iter=20000)


def _data(sizes, B=5, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    x = rng.random((B, sizes[0])).astype(dtype)
    d = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], B)]
    return x, d


def test_ep_update_of_two_layer_network_equals_hand_formula():
    net = E.init_network((6, 4), dtype="float64", seed=1, gain=2.0)
    x, d = _data((6, 4))
    beta = 0.5
    dyn = E.Dynamics(T=30, K=10, eps=0.5)
    step = E.EquilibriumPropagation(beta, "one-sided").estimate(net, x, d, dyn)
    s0, sb = step.free.state, step.phases["nudged+"].state
    rho = lambda v: np.clip(v, 0, 1)  # noqa: E731
    # (1/beta)(rho(s_i^b) rho(s_j^b) - rho(s_i^0) rho(s_j^0)), input activity x, batch mean
    dW = -(x.T @ rho(sb) - x.T @ rho(s0)) / beta / x.shape[0]
    db = -(rho(sb) - rho(s0)).mean(0) / beta
    np.testing.assert_allclose(step.gradient.dW[0], dW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(step.gradient.db[0], db, rtol=1e-12, atol=1e-14)
    assert np.abs(dW).max() > 1e-3  # the phases differ
    # the phases are what the phase functions give
    np.testing.assert_array_equal(s0, E.free_phase(net, x, dyn).state)
    np.testing.assert_array_equal(sb, E.nudged_phase(net, x, d, beta, dyn, s0=s0).state)


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
def test_ep_update_of_hidden_layer_network_equals_hand_formula(kind):
    net = E.init_network((6, 5, 3), kind=kind, dtype="float64", seed=2)
    x, d = _data((6, 5, 3))
    beta = 0.3
    step = E.EquilibriumPropagation(beta, "symmetric").estimate(net, x, d, E.Dynamics(T=25, K=8))
    sp, sm = step.phases["nudged+"].state, step.phases["nudged-"].state
    a = (lambda v: np.clip(v, 0, 1)) if kind == "hopfield" else (lambda v: v)
    hp, yp, hm, ym = a(sp[:, :5]), a(sp[:, 5:]), a(sm[:, :5]), a(sm[:, 5:])
    B = x.shape[0]
    dW1 = -(x.T @ hp - x.T @ hm) / (2 * beta) / B
    dW2 = -(hp.T @ yp - hm.T @ ym) / (2 * beta) / B
    db2 = -(yp - ym).mean(0) / (2 * beta)
    np.testing.assert_allclose(step.gradient.dW[0], dW1, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(step.gradient.dW[1], dW2, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(step.gradient.db[1], db2, rtol=1e-11, atol=1e-14)


def _loss_gradient_fd(net, x, d, h=1e-6):
    """Central differences of L(theta) = mean C(s*(theta)), s* the converged free state."""
    theta = net.packed()
    g = np.empty_like(theta)
    for j in range(theta.size):
        old = theta[j]
        vals = []
        for v in (old + h, old - h):
            theta[j] = v
            s = E.free_phase(net, x, CONVERGED).state
            vals.append(E.cost(net, s, d).mean())
        theta[j] = old
        g[j] = (vals[0] - vals[1]) / (2 * h)
    return g


@pytest.mark.parametrize(
    ("kind", "cost"),
    [("hopfield", "squared"), ("hopfield", "cross-entropy"), ("prototypical", "squared")],
)
def test_symmetric_estimator_is_closer_to_the_gradient_than_one_sided(kind, cost):
    sizes = (4, 5, 3) if cost == "squared" else (4, 5, 3, 3)
    net = E.init_network(
        sizes, kind=kind, activation="sigmoid", cost=cost, dtype="float64", seed=3, gain=0.8
    )
    x, d = _data(sizes, seed=3)
    true = _loss_gradient_fd(net, x, d)
    beta = 0.05
    errs = {}
    for est in ("one-sided", "symmetric"):
        step = E.EquilibriumPropagation(beta, est).estimate(net, x, d, CONVERGED)
        assert all(p.result.converged.all() for p in step.phases.values())
        errs[est] = np.linalg.norm(step.gradient.flat() - true) / np.linalg.norm(true)
    assert errs["symmetric"] < 0.3 * errs["one-sided"], errs
    assert errs["symmetric"] < 0.005, errs
    assert errs["one-sided"] < 0.2, errs


def test_one_sided_bias_shrinks_linearly_with_beta():
    net = E.init_network((4, 5, 3), activation="sigmoid", dtype="float64", seed=4)
    x, d = _data((4, 5, 3), seed=4)
    true = _loss_gradient_fd(net, x, d)
    err = []
    for beta in (0.2, 0.05):
        g = E.EquilibriumPropagation(beta).estimate(net, x, d, CONVERGED).gradient.flat()
        err.append(np.linalg.norm(g - true))
    assert 2.5 < err[0] / err[1] < 6.0, err  # ratio 4 for an O(beta) bias


def test_random_sign_draws_both_signs_and_matches_one_sided():
    net = E.init_network((6, 5, 3), dtype="float64", seed=5)
    x, d = _data((6, 5, 3))
    dyn = E.Dynamics(T=20, K=5)
    rule = E.EquilibriumPropagation(0.5, "random-sign")
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(12):
        step = rule.estimate(net, x, d, dyn, rng=rng)
        (name,) = [k for k in step.phases if k != "free"]
        seen.add(name)
        b = step.phases[name].beta
        assert abs(b) == 0.5 and (b > 0) == (name == "nudged+")
        ref = E.EquilibriumPropagation(b, "one-sided").estimate(net, x, d, dyn).gradient
        np.testing.assert_allclose(step.gradient.flat(), ref.flat(), rtol=1e-12, atol=1e-15)
    assert seen == {"nudged+", "nudged-"}
    # reproducible from the seed
    a = rule.estimate(net, x, d, dyn, rng=np.random.default_rng(9)).gradient.flat()
    b = rule.estimate(net, x, d, dyn, rng=np.random.default_rng(9)).gradient.flat()
    np.testing.assert_array_equal(a, b)


def test_sgd_with_ep_gradient_lowers_the_loss():
    net = E.init_network((6, 8, 3), activation="sigmoid", dtype="float64", seed=6)
    x, d = _data((6, 8, 3), B=12, seed=6)
    rule = E.EquilibriumPropagation(0.2, "symmetric")
    dyn = E.Dynamics(T=60, K=20, eps=0.5)
    first = rule.estimate(net, x, d, dyn).loss
    for _ in range(30):
        g = rule.estimate(net, x, d, dyn).gradient
        for w, dw in zip(net.weights + net.biases, g.dW + g.db):
            w -= 0.5 * dw
    assert rule.estimate(net, x, d, dyn).loss < 0.8 * first


def test_rule_step_contents_and_float32():
    net = E.init_network((6, 5, 3), cost="cross-entropy", seed=7)
    x, d = _data((6, 5, 3), dtype="float32")
    step = E.EquilibriumPropagation(1.0).estimate(net, x, d, E.Dynamics(T=10, K=3))
    assert list(step.phases) == ["free", "nudged+"]
    assert step.free is step.phases["free"]
    assert step.prediction.shape == (5, 3)
    assert all(g.dtype == np.float32 for g in step.gradient.dW + step.gradient.db)
    np.testing.assert_allclose(step.loss, E.cost(net, step.free.state, d).mean(), rtol=1e-6)


def test_bad_rule_inputs():
    net = E.init_network((6, 5, 3))
    x, d = _data((6, 5, 3), dtype="float32")
    dyn = E.Dynamics(T=5, K=2)
    with pytest.raises(ValueError, match="beta != 0"):
        E.EquilibriumPropagation(0.0)
    with pytest.raises(ValueError, match="unknown estimator"):
        E.EquilibriumPropagation(1.0, "two-sided")
    with pytest.raises(ValueError, match="rng"):
        E.EquilibriumPropagation(1.0, "random-sign").estimate(net, x, d, dyn)
    with pytest.raises(ValueError, match=r"shape \(batch, 6\)"):
        E.EquilibriumPropagation(1.0).estimate(net, x[:, :5], d, dyn)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        E.EquilibriumPropagation(1.0).estimate(net, bad, d, dyn)
    with pytest.raises(ValueError, match="n_out"):
        E.EquilibriumPropagation(1.0).estimate(net, x, d[:, :2], dyn)
    with pytest.raises(ValueError, match="start"):
        E.PhaseSpec("x", 1.0, start="middle")


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
@pytest.mark.parametrize("method", ["fixed", "fused"])
def test_contrastive_hebbian_clamps_output_and_matches_hand_formula(kind, method):
    net = E.init_network((6, 5, 3), kind=kind, dtype="float64", seed=8)
    x, d = _data((6, 5, 3), seed=8)
    dyn = E.Dynamics(T=20, K=6, method=method)
    step = E.ContrastiveHebbian().estimate(net, x, d, dyn)
    assert list(step.phases) == ["free", "clamped"] and step.phases["clamped"].clamped
    s0, sc = step.free.state, step.phases["clamped"].state
    np.testing.assert_array_equal(sc[:, 5:], d)  # output clamped to the targets
    # hidden layer of the clamped phase follows the dynamics with y = d held fixed
    ref = E.run_phase(net, x, dyn, d=d, s0=s0, steps=6, clamp_output=True).state
    np.testing.assert_array_equal(sc, ref)
    a = (lambda v: np.clip(v, 0, 1)) if kind == "hopfield" else (lambda v: v)
    hc, yc, h0, y0 = a(sc[:, :5]), a(sc[:, 5:]), a(s0[:, :5]), a(s0[:, 5:])
    B = x.shape[0]
    np.testing.assert_allclose(step.gradient.dW[0], -(x.T @ hc - x.T @ h0) / B, atol=1e-14)
    np.testing.assert_allclose(step.gradient.dW[1], -(hc.T @ yc - h0.T @ y0) / B, atol=1e-14)
    np.testing.assert_allclose(step.gradient.db[1], -(yc - y0).mean(0), atol=1e-14)


def test_clamped_phase_bad_inputs():
    net = E.init_network((6, 5, 3), cost="cross-entropy")
    x, d = _data((6, 5, 3), dtype="float32")
    with pytest.raises(ValueError, match="cost='squared'"):
        E.ContrastiveHebbian().estimate(net, x, d, E.Dynamics(T=3, K=2))
    with pytest.raises(ValueError, match="beta = 0"):
        E.PhaseSpec("c", 1.0, clamp=True)
    with pytest.raises(ValueError, match="targets d"):
        E.run_phase(net, x, E.Dynamics(), clamp_output=True)


def test_clamped_phase_through_an_ode_method_and_gauss_seidel():
    net = E.init_network((6, 5, 3), activation="sigmoid", dtype="float64", seed=9)
    x, d = _data((6, 5, 3), seed=9)
    ref = E.run_phase(net, x, CONVERGED, d=d, clamp_output=True).state
    np.testing.assert_array_equal(ref[:, 5:], d)
    for method in ("euler", "gauss-seidel"):
        dyn = E.Dynamics(method=method, eps=0.5, atol=1e-12, max_iter=20000)
        s = E.run_phase(net, x, dyn, d=d, clamp_output=True).state
        np.testing.assert_allclose(s, ref, atol=1e-9)


def test_free_dyn_runs_only_the_free_phase():
    """estimate(..., free_dyn=F): the free phase is F's (here block Gauss-Seidel to
    tolerance), the nudged phase keeps dyn's K fixed steps from that free state."""
    net = E.init_network((6, 5, 4, 3), dtype="float64", seed=2, gain=2.0)
    rng = np.random.default_rng(0)
    x = rng.random((4, 6))
    d = np.eye(3)[rng.integers(0, 3, 4)]
    dyn = E.Dynamics(T=3, K=4, eps=0.5)
    free_dyn = E.Dynamics(method="gauss-seidel-parity", eps=1.0, damping=1.5, atol=1e-12)
    rule = E.EquilibriumPropagation(beta=0.5, estimator="one-sided")
    step = rule.estimate(net, x, d, dyn, free_dyn=free_dyn)
    free = E.free_phase(net, x, free_dyn)
    np.testing.assert_array_equal(step.free.state, free.state)
    nudged = E.run_phase(net, x, dyn, beta=0.5, d=d, s0=free.state, steps=4)
    assert nudged.result.n_iter.max() == 4
    # the EP formula by hand: dW_l = -(1/beta) mean(rho_{l-1}^b rho_l^b - rho_{l-1}^0 rho_l^0)
    off = net.offsets

    def acts(s):
        return [x] + [np.clip(s[:, off[k] : off[k + 1]], 0, 1) for k in range(len(off) - 1)]

    a0, ab = acts(free.state), acts(nudged.state)
    for k in range(3):
        dW = -(ab[k].T @ ab[k + 1] - a0[k].T @ a0[k + 1]) / (0.5 * 4)
        db = -(ab[k + 1] - a0[k + 1]).mean(axis=0) / 0.5
        np.testing.assert_allclose(step.gradient.dW[k], dW, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(step.gradient.db[k], db, rtol=1e-12, atol=1e-14)
    # and it differs from the same rule with T fixed free steps (the free phase mattered)
    plain = rule.estimate(net, x, d, dyn)
    assert np.abs(plain.free.state - free.state).max() > 1e-3


def _relax_by_hand(x, hs, Ws, bs, n, eps, beta=0.0, d=None):
    """Scellier & Bengio (2017)'s projected Euler steps, all layers at once, in NumPy:
    s_l <- clip(s_l - eps (s_l - rho(s_{l-1}) W_l - b_l - rho(s_{l+1}) W_{l+1}^T
    [+ beta (s_L - d) on the output]), 0, 1), rho = clip(., 0, 1)."""
    hs = [h.copy() for h in hs]
    for _ in range(n):
        rho = [x] + [np.clip(h, 0, 1) for h in hs]
        new = []
        for l, h in enumerate(hs, start=1):
            drive = rho[l - 1] @ Ws[l - 1] + bs[l - 1]
            if l < len(hs):
                drive = drive + rho[l + 1] @ Ws[l].T
            g = h - drive
            if l == len(hs) and beta != 0.0:
                g = g + beta * (h - d)
            new.append(np.clip(h - eps * g, 0, 1))
        hs = new
    return hs


@pytest.mark.parametrize("method", ["fixed", "fused"])
def test_training_step_of_a_deep_network_equals_the_papers_equations(method):
    """One random-sign EP step with persistent particles on 6-5-4-3 (two hidden layers),
    T=30 / K=6, followed by SGD with per-layer rates, against an independent NumPy
    transcription of the paper's dynamics and update (float64, to rounding)."""
    net = E.init_network((6, 5, 4, 3), dtype="float64", seed=5, gain=1.5)
    rng = np.random.default_rng(9)
    for b in net.biases:
        b[:] = rng.normal(scale=0.2, size=b.shape)
    x, d = _data((6, 5, 4, 3))
    s0 = rng.random((x.shape[0], net.n_state))
    Ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    lrs = (0.3, 0.2, 0.1)
    rule = E.EquilibriumPropagation(0.7, "random-sign")
    step = rule.estimate(
        net, x, d, E.Dynamics(T=30, K=6, method=method), rng=np.random.default_rng(3), s0=s0
    )
    (name,) = set(step.phases) - {"free"}
    beta = step.phases[name].beta
    assert abs(beta) == 0.7 and name == ("nudged+" if beta > 0 else "nudged-")
    E.SGD(lrs).step(net, step.gradient)

    off = net.offsets
    h0 = [s0[:, off[k] : off[k + 1]] for k in range(3)]
    free = _relax_by_hand(x, h0, Ws, bs, 30, 0.5)
    nudged = _relax_by_hand(x, free, Ws, bs, 6, 0.5, beta, d)
    np.testing.assert_allclose(step.free.state, np.concatenate(free, axis=1), atol=1e-13)
    a0, ab = [x, *free], [x, *nudged]
    B = x.shape[0]
    for k in range(3):
        dW = (ab[k].T @ ab[k + 1] - a0[k].T @ a0[k + 1]) / (beta * B)
        db = (ab[k + 1] - a0[k + 1]).mean(axis=0) / beta
        np.testing.assert_allclose(net.weights[k], Ws[k] + lrs[k] * dW, rtol=0, atol=1e-13)
        np.testing.assert_allclose(net.biases[k], bs[k] + lrs[k] * db, rtol=0, atol=1e-13)
    assert max(np.abs(w - w0).max() for w, w0 in zip(net.weights, Ws, strict=True)) > 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sign_is_a_fair_coin(seed):
    """Random-sign EP is unbiased at first order only if + and - are equally likely and
    drawn afresh each minibatch (Scellier & Bengio 2017). Over 4000 draws from a seeded
    generator: a two-sided binomial test for p = 1/2, and the fraction of sign changes
    between consecutive draws (1/2 for independent fair draws; 0 for a stuck sign, 1
    for alternation). A coin landing + nine times in ten fails both by far."""
    from scipy.stats import binomtest

    rule = E.EquilibriumPropagation(0.5, "random-sign")
    rng = np.random.default_rng(seed)
    signs = []
    for _ in range(4000):
        (spec,) = rule.plan(rng)
        assert abs(spec.beta) == 0.5 and spec.name == ("nudged+" if spec.beta > 0 else "nudged-")
        signs.append(spec.beta > 0)
    s = np.array(signs)
    assert binomtest(int(s.sum()), s.size, 0.5).pvalue > 1e-3, s.mean()
    changes = np.mean(s[1:] != s[:-1])
    assert abs(changes - 0.5) < 0.05, changes
