"""Stuck output units are tracked on graph networks too (#11): a hard-sigmoid output layer
in [0, 1] under EP with the squared cost, any feedback, skips into the output included."""

import io

import numpy as np
import pytest

from eqprop.presets import get_preset
from eqprop.train import Trainer


def _config(**changes):
    settings = dict(epochs=2, lrs=(1e-6, 1e-6), T=10, K=2, persistent=False)
    settings.update(changes)
    return get_preset("digits").config.replace(**settings).validate()


@pytest.mark.parametrize("changes", [dict(skip="0-2"), dict(feedback="random")])
def test_stuck_outputs_of_a_graph_network_are_counted_and_reported(changes):
    stream = io.StringIO()
    t = Trainer(_config(**changes), stream=stream)
    assert t.is_graph
    bias = t.net.layer("y").bias
    bias[3] = -50.0  # unit 3 dead: its drive is far below 0 for every input
    bias[7] = 50.0  # unit 7 saturated at 1
    h = t.run().history
    assert t.stuck_output_units() == ([3], [7])
    np.testing.assert_array_equal(h["stuck_outputs"].values, [2.0, 2.0])
    warnings = [line for line in stream.getvalue().splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "unit(s) 3 at 0" in warnings[0], warnings


def test_graph_output_drive_includes_the_skip_coupling():
    """The tracked net input is the output layer's whole drive: bias, the coupling from
    the last hidden layer and the skip from the input (computed here by hand)."""
    t = Trainer(_config(skip="0-2", epochs=0), quiet=True)
    x = np.ascontiguousarray(t.data.test.x[:5], dtype=t.dtype)
    from eqprop.phases import Dynamics, free_phase

    s = free_phase(t.net, x, Dynamics(T=10)).state
    h = np.clip(s[:, :64], 0.0, 1.0)
    net = t.net
    by_hand = h @ net.coupling("h1->y").W + x @ net.coupling("x->y").W + net.layer("y").bias
    np.testing.assert_allclose(t._output_drive(x, s), by_hand, rtol=1e-6, atol=1e-6)


def test_no_tracking_where_the_analysis_does_not_hold():
    """A linear (identity) output has no box: nothing can stick."""
    t = Trainer(_config(output_activation="identity", epochs=1), quiet=True)
    t.run()
    assert t.last_drive_range is None and t.stuck_output_units() == ([], [])
