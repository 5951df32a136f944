"""Bad input to the rule family that other files do not cover: recirculation on a network
that is not a loop, and a layered network's rule refused where the output is not in the
state (one clear ValueError each)."""

import numpy as np
import pytest

import eqprop as E
from eqprop import recirculation as RC
from eqprop.rules import make_rule


@pytest.mark.parametrize("call", ["recirculate", "update", "gradient", "error"])
def test_recirculation_on_a_layered_network_is_refused(call):
    net = E.init_network((4, 2, 4), dtype="float64")
    v = np.eye(4)
    settings = RC.RecirculationSettings()
    loop = RC.init_loop((4, 2), np.random.default_rng(0))
    passes = RC.recirculate(loop, v, settings)
    calls = {
        "recirculate": lambda: RC.recirculate(net, v, settings),
        "update": lambda: RC.recirculation_update(net, passes, settings),
        "gradient": lambda: RC.reconstruction_gradient(net, v, settings),
        "error": lambda: RC.squared_reconstruction_error(net, v, settings),
    }
    with pytest.raises(
        ValueError,
        match="recirculation runs on a closed loop.*got Network "
        r"\(a layered eqprop network has no decoder",
    ):
        calls[call]()


@pytest.mark.parametrize("rule", ["chl", "generec", "coupled"])
def test_clamping_rules_refuse_a_cross_entropy_network_before_any_phase(rule):
    net = E.init_network((5, 4, 3), cost="cross-entropy", dtype="float64")
    x, d = np.zeros((2, 5)), np.eye(3)[:2]
    with pytest.raises(ValueError, match=f"rule '{rule}' clamps the output layer"):
        make_rule(rule).estimate(net, x, d, E.Dynamics(T=3, K=2))


@pytest.mark.parametrize("rule", ["rbp", "bptt", "ep"])
def test_rules_that_do_not_clamp_accept_the_cross_entropy_readout(rule):
    net = E.init_network((5, 4, 3), cost="cross-entropy", dtype="float64")
    x, d = np.zeros((2, 5)), np.eye(3)[:2]
    step = make_rule(rule).estimate(net, x, d, E.Dynamics(T=3, K=2), rng=np.random.default_rng(0))
    assert np.isfinite(step.gradient.flat()).all()
