"""Training graph networks (#11): the network options of TrainConfig (``output_activation``,
``feedback``, ``feedback_scale``, ``skip``) build the chain's graph with
:func:`eqprop.graph.build.extend_chain`; the Trainer trains, evaluates and checks them."""

import numpy as np
import pytest

from eqprop.graph import GraphNetwork
from eqprop.network import Network
from eqprop.presets import get_preset
from eqprop.train import TrainConfig, Trainer

CHANCE = 0.9  # ten balanced classes


def _config(**changes):
    settings = dict(get_preset("digits").settings)
    settings.update(epochs=3)
    settings.update(changes)
    return TrainConfig.from_dict(settings).validate()


def test_without_network_options_the_trainer_builds_todays_network():
    trainer = Trainer(_config(epochs=0), quiet=True)
    assert type(trainer.net) is Network and not trainer.config.uses_graph


def test_graph_of_a_plain_tied_chain_trains_exactly_like_the_network():
    # the output activation the chain already has: a graph network equal to the chain
    base = _config(epochs=2)
    graph = base.replace(output_activation=base.activation)
    a = Trainer(base, quiet=True)
    b = Trainer(graph, quiet=True)
    assert type(a.net) is Network and isinstance(b.net, GraphNetwork)
    ha, hb = a.run().history, b.run().history
    for k in ("train_error", "train_loss", "valid_error", "valid_loss", "test_error", "test_loss"):
        np.testing.assert_array_equal(ha[k].values, hb[k].values, err_msg=k)
    np.testing.assert_array_equal(a.net.weights[-1], b.net.coupling("h1->y").W)


@pytest.mark.parametrize(
    "changes, check",
    [
        (dict(feedback="random", epochs=4), lambda g: g.coupling("h1->y").feedback == "random"),
        (dict(skip="0-2"), lambda g: any(c.source == "x" and c.target == "y" for c in g.couplings)),
        (
            dict(output_activation="identity", lrs=(0.02, 0.01)),
            lambda g: g.output_layer.activation == "identity",
        ),
    ],
    ids=["feedback-alignment", "skip", "linear-output"],
)
def test_graph_network_trains_above_chance_on_digits(changes, check):
    trainer = Trainer(_config(**changes), quiet=True)
    assert isinstance(trainer.net, GraphNetwork) and check(trainer.net)
    test = trainer.run().history["test_error"].values
    assert np.all(np.isfinite(test))
    assert test[-1] < CHANCE - 0.15, test
    assert test[-1] < test[0], test  # it learned during the run


def test_random_feedback_is_not_the_transpose_and_stays_fixed():
    trainer = Trainer(_config(feedback="random", epochs=1), quiet=True)
    c = trainer.net.coupling("h1->y")
    B0 = c.B.copy()
    assert not np.allclose(B0, c.W.T)
    trainer.run()
    np.testing.assert_array_equal(c.B, B0)
    assert "h1->y.B" not in trainer.net.parameters()


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(feedback="mirror"), "unknown feedback 'mirror'"),
        (dict(feedback_scale=0.5), "applies to feedback 'scaled' only"),
        (dict(feedback="scaled", feedback_scale=float("nan")), "feedback_scale is nan"),
        (dict(output_activation="relu"), "unknown output activation 'relu'"),
        (dict(skip="1-0"), "skip 1-0"),
        (dict(skip="0-1"), "skip 0-1"),
        (dict(skip="0-5"), "skip 0-5"),
        (dict(skip="a"), "skip 'a'"),
    ],
)
def test_bad_network_options_raise_naming_them(changes, words):
    settings = dict(get_preset("digits").settings, **changes)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        TrainConfig.from_dict(settings).validate()
    assert "\n" not in str(info.value)
