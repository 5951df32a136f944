"""The backprop baselines as rules (``rbp``, ``bptt``): one step's update against
:mod:`eqprop.gradients` on the same batch and against finite differences of the loss,
a Trainer step against SGD on that gradient, and their bad input."""

import numpy as np
import pytest
from rule_registry import cli_applies_to

import eqprop as E
from eqprop.gradients import bptt, finite_difference, recurrent_backprop
from eqprop.presets import get_preset
from eqprop.rules import BackpropThroughTime, RecurrentBackprop, make_rule
from eqprop.train import TrainConfig, Trainer


def _batch(sizes, B=3, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    x = rng.random((B, sizes[0])).astype(dtype)
    d = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], B)]
    return x, d


def _net(cost="squared", kind="hopfield", activation="sigmoid", dtype="float64", seed=2):
    return E.init_network(
        (5, 4, 3), kind=kind, activation=activation, cost=cost, dtype=dtype, seed=seed
    )


@pytest.mark.parametrize("cost", ["squared", "cross-entropy"])
@pytest.mark.parametrize("method", ["dense", "iterative"])
def test_rbp_rule_equals_recurrent_backprop_and_finite_differences(cost, method):
    net = _net(cost)
    x, d = _batch(net.sizes)
    dyn = E.Dynamics(T=400, K=4, eps=0.5)
    step = RecurrentBackprop(method=method).estimate(net, x, d, dyn)
    assert set(step.phases) == {"free"}
    ref = recurrent_backprop(net, x, d, dyn=dyn, method="dense")  # runs its own free phase
    g, r = step.gradient.flat(), ref.flat()
    assert np.abs(r).max() > 1e-3
    np.testing.assert_allclose(g, r, rtol=0, atol=1e-10 * np.abs(r).max())
    # independent route: central differences of the loss after the T converged steps
    fd = finite_difference(net, x, d, dyn=dyn, h=1e-6)
    np.testing.assert_allclose(g, fd.flat(), rtol=0, atol=1e-7 * np.abs(r).max())
    assert step.loss == pytest.approx(ref.loss, rel=1e-12)


@pytest.mark.parametrize("cost", ["squared", "cross-entropy"])
def test_bptt_rule_equals_bptt_and_finite_differences(cost):
    net = _net(cost)  # smooth: finite differences see no kinks
    x, d = _batch(net.sizes, seed=1)
    dyn = E.Dynamics(T=3, K=3, eps=0.5)  # short: BPTT differs from RBP here
    step = BackpropThroughTime().estimate(net, x, d, dyn)
    ref, traj = bptt(net, x, d, dyn=dyn, return_trajectory=True)
    np.testing.assert_array_equal(step.gradient.flat(), ref.flat())
    np.testing.assert_allclose(step.free.state, traj[-1], rtol=0, atol=1e-14)
    fd = finite_difference(net, x, d, dyn=dyn, h=1e-6)
    scale = np.abs(fd.flat()).max()
    np.testing.assert_allclose(step.gradient.flat(), fd.flat(), rtol=0, atol=1e-6 * scale)
    rbp = recurrent_backprop(net, x, d, s_star=step.free.state, dyn=dyn, check_fixed_point=None)
    assert np.abs(rbp.flat() - ref.flat()).max() > 1e-3 * scale  # not the same gradient


def test_bptt_rule_truncates_and_starts_from_the_particles():
    net = _net(activation="hardsigmoid")
    x, d = _batch(net.sizes, seed=2)
    s0 = np.random.default_rng(5).random((x.shape[0], net.n_state))
    dyn = E.Dynamics(T=6, K=2, eps=0.5)
    step = BackpropThroughTime(truncation=2).estimate(net, x, d, dyn, s0=s0)
    ref = bptt(net, x, d, dyn=dyn, K=2, s0=s0)
    np.testing.assert_array_equal(step.gradient.flat(), ref.flat())
    full = bptt(net, x, d, dyn=dyn, s0=s0)
    assert np.abs(full.flat() - ref.flat()).max() > 1e-6


@pytest.mark.parametrize("rule", ["rbp", "bptt"])
def test_free_dynamics_are_the_ones_differentiated(rule):
    """With ``free_dyn`` the gradient follows the free phase's settings, not ``dyn``'s."""
    net = _net(activation="hardsigmoid")
    x, d = _batch(net.sizes, seed=3)
    dyn = E.Dynamics(T=3, K=2, eps=0.9)
    free_dyn = E.Dynamics(T=9, K=2, eps=0.4)
    step = make_rule(rule).estimate(net, x, d, dyn, free_dyn=free_dyn)
    if rule == "bptt":
        ref = bptt(net, x, d, dyn=free_dyn)
    else:
        ref = recurrent_backprop(
            net,
            x,
            d,
            s_star=E.free_phase(net, x, free_dyn).state,
            dyn=free_dyn,
            check_fixed_point=None,
        )
    np.testing.assert_allclose(step.gradient.flat(), ref.flat(), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(step.free.state, E.free_phase(net, x, free_dyn).state)


@pytest.mark.parametrize("rule", ["rbp", "bptt"])
def test_one_trainer_step_is_sgd_on_the_reference_gradient(rule):
    settings = dict(get_preset("digits").config.to_flat())
    settings.update(
        rule=rule,
        cost="cross-entropy",
        epochs=1,
        limit=16,
        batch_size=16,
        dtype="float64",
        persistent=False,
    )
    trainer = Trainer(TrainConfig.from_dict(settings), quiet=True)
    net0 = trainer.net.copy()
    x, d = trainer.x_train, trainer.d_train  # one minibatch: the whole (limited) set
    if rule == "rbp":
        ref = recurrent_backprop(
            net0,
            x,
            d,
            s_star=E.free_phase(net0, x, trainer.free_dyn).state,
            dyn=trainer.free_dyn,
            check_fixed_point=None,
        )
    else:
        ref = bptt(net0, x, d, dyn=trainer.free_dyn)
    trainer.train_epoch()
    for l, lr in enumerate(trainer.config.to_flat()["lrs"]):
        np.testing.assert_allclose(
            trainer.net.weights[l], net0.weights[l] - lr * ref.dW[l], rtol=0, atol=1e-13
        )
        np.testing.assert_allclose(
            trainer.net.biases[l], net0.biases[l] - lr * ref.db[l], rtol=0, atol=1e-13
        )
    assert np.abs(ref.dW[0]).max() > 1e-4  # the step moved the weights


def test_rbp_rule_in_float32_solves_iteratively_to_its_tolerance():
    net = E.init_network((40, 150, 10), dtype="float32", seed=0, cost="cross-entropy")
    x, d = _batch(net.sizes, B=4, dtype="float32")
    dyn = E.Dynamics(T=60, K=4, eps=0.5)
    rule = RecurrentBackprop()
    assert rule.solve_method(net.n_state) == "iterative"  # 160 > 128 units
    step = rule.estimate(net, x, d, dyn)
    assert step.gradient.dW[0].dtype == np.float32
    assert step.gradient.info["converged"]
    ref = recurrent_backprop(
        net, x, d, s_star=step.free.state, dyn=dyn, dtype="float64", check_fixed_point=None
    )
    np.testing.assert_allclose(
        step.gradient.flat(), ref.flat(), rtol=0, atol=1e-4 * np.abs(ref.flat()).max()
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: RecurrentBackprop(method="lu"), "unknown recurrent-backprop method 'lu'"),
        (lambda: RecurrentBackprop(atol=0.0), "needs atol > 0"),
        (lambda: RecurrentBackprop(max_iter=0), "max_iter >= 1"),
        (lambda: RecurrentBackprop(check_fixed_point=-1.0), "check_fixed_point > 0"),
        (lambda: BackpropThroughTime(truncation=0), "truncation = an integer >= 1"),
        (lambda: BackpropThroughTime(truncation=2.5), "truncation = an integer >= 1"),
    ],
)
def test_bad_rule_parameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bptt_refuses_what_it_cannot_differentiate():
    net = _net()
    x, d = _batch(net.sizes)
    with pytest.raises(ValueError, match="truncation 9 exceeds the free phase's T = 4"):
        BackpropThroughTime(truncation=9).estimate(net, x, d, E.Dynamics(T=4))
    with pytest.raises(
        ValueError, match=r"bptt follows T fixed synchronous steps.*method='anderson'"
    ):
        BackpropThroughTime().estimate(net, x, d, E.Dynamics(T=4, method="anderson"))


def test_cli_trains_with_the_backprop_baselines(capsys):
    from eqprop.cli import main

    for rule in ("rbp", "bptt"):
        code = main(
            [
                *("train", "--preset", "digits", "--epochs", "1", "--limit", "100", "-q"),
                *("--rule", rule, "--cost", "cross-entropy"),
            ]
        )
        assert code == 0
        assert "test error:" in capsys.readouterr().out
    assert main(["train", "--preset", "digits", "--rule", "rbp", "--beta", "0.5", "-q"]) == 2
    assert cli_applies_to("beta", "rbp") in capsys.readouterr().err


@pytest.mark.parametrize("feedback", ["tied", "random"])
def test_rbp_rule_on_a_graph_network_equals_the_graph_reference(feedback):
    from eqprop.graph import chain
    from eqprop.graph.backprop import recurrent_backprop as graph_rbp

    g = chain([5, 4, 3], activation="sigmoid", feedback=feedback, seed=3)
    x, d = _batch((5, 4, 3))
    dyn = E.Dynamics(method="picard", fixed_steps=False, atol=1e-13, max_iter=20000)
    step = RecurrentBackprop().estimate(g, x, d, dyn)
    ref = graph_rbp(g, x, d, E.free_phase(g, x, dyn).state)
    assert list(step.gradient) == list(g.parameters())
    for name in step.gradient:
        np.testing.assert_allclose(step.gradient[name], ref.grads[name], rtol=0, atol=1e-14)
    if feedback == "tied":  # the chain's own layered network: the same exact gradient
        net = E.init_network((5, 4, 3), activation="sigmoid", dtype="float64", seed=0)
        from eqprop.graph import from_network

        g2 = from_network(net)
        a = RecurrentBackprop().estimate(g2, x, d, dyn).gradient
        b = RecurrentBackprop().estimate(net, x, d, dyn).gradient
        np.testing.assert_allclose(a["x->h1.W"], b.dW[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(a["h1->y.W"], b.dW[1], rtol=0, atol=1e-12)


def test_bptt_rule_on_graph_networks_equals_the_chain_and_the_graph_reference():
    """On a chain converted to a graph the rule gives the chain's BPTT update; on a
    free-feedback skip network it is eqprop.graph.backprop.bptt; tolerance-mode dynamics
    are refused as on chains."""
    from eqprop.graph import chain
    from eqprop.graph.backprop import bptt as graph_bptt
    from eqprop.graph.build import from_network

    net = E.init_network((5, 4, 3), seed=3, dtype="float64")
    x, d = _batch((5, 4, 3))
    dyn = E.Dynamics(method="fixed", T=7, eps=0.5, damping=0.8)
    a = BackpropThroughTime(truncation=5).estimate(from_network(net), x, d, dyn).gradient
    b = BackpropThroughTime(truncation=5).estimate(net, x, d, dyn).gradient
    np.testing.assert_allclose(a["x->h1.W"], b.dW[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a["h1->y.W"], b.dW[1], rtol=0, atol=1e-12)
    g = chain([5, 4, 3], activation="sigmoid", feedback="free", skip=[(0, 2)], dtype="float64")
    step = BackpropThroughTime().estimate(g, x, d, dyn)
    ref = graph_bptt(g, x, d, 7, eps=0.5, damping=0.8).grads
    assert set(step.gradient.keys()) == set(ref) and "h1->y.B" in ref
    for name in ref:
        np.testing.assert_allclose(step.gradient[name], ref[name], rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="differentiates exactly T steps"):
        BackpropThroughTime().estimate(g, x, d, E.Dynamics(method="picard", T=7))


def test_iterative_rbp_refuses_a_graph_network():
    from eqprop.graph import chain

    g = chain([5, 4, 3])
    x, d = _batch((5, 4, 3))
    with pytest.raises(ValueError, match="method='iterative'\\) runs on a layered Network"):
        RecurrentBackprop(method="iterative").estimate(g, x, d, E.Dynamics(T=3))
