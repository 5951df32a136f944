"""The network drawing of the docs (studies.plot.plot_graph, issues 11 and 15).

Checked through the matplotlib objects it makes: one text per layer naming it, one edge
per coupling, a second (dashed) edge for each coupling whose feedback is not tied, and
two heads exactly on the tied couplings between state layers.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from eqprop.graph import Coupling, GraphNetwork, Layer, chain
from studies.plot import plot_graph


def _mixed() -> GraphNetwork:
    """Input, two hidden layers, a readout; a skip, a scaled and a free coupling."""
    rng = np.random.default_rng(0)
    layers = [
        Layer("x", 4, role="input"),
        Layer("h1", 5, activation="sigmoid", bias=np.zeros(5)),
        Layer("h2", 3, activation="tanh"),
        Layer("o", 2, role="readout"),
    ]
    couplings = [
        Coupling("x", "h1", rng.normal(size=(4, 5))),
        Coupling("h1", "h2", rng.normal(size=(5, 3)), feedback="scaled", gamma=0.5),
        Coupling("x", "h2", rng.normal(size=(4, 3))),
        Coupling("h2", "o", rng.normal(size=(3, 2))),
        Coupling("h1", "o", rng.normal(size=(5, 2))),
    ]
    return GraphNetwork(layers, couplings, kind="prototypical", cost="cross-entropy")


def _gids(ax, prefix):
    return {
        a.get_gid()[len(prefix) :]: a
        for a in [*ax.texts, *ax.patches]
        if (a.get_gid() or "").startswith(prefix)
    }


@pytest.mark.parametrize(
    "net",
    [
        _mixed(),
        chain([6, 10, 8, 3], skip=[(1, 3), (0, 2)], feedback="random"),
        chain([6, 10, 3], feedback="free"),
        chain([6, 10, 3]),
    ],
    ids=["mixed", "random-skips", "free", "tied"],
)
def test_every_layer_is_labelled_and_every_coupling_drawn(net):
    fig = plot_graph(net)
    ax = fig.axes[0]
    layers = _gids(ax, "layer:")
    assert set(layers) == {la.name for la in net.layers}
    for layer in net.layers:
        text = layers[layer.name].get_text()
        assert text.splitlines()[0] == layer.name
        assert str(layer.size) in text
    forward = _gids(ax, "coupling:")
    assert set(forward) == {c.name for c in net.couplings}
    back = _gids(ax, "feedback:")
    assert set(back) == {c.name for c in net.couplings if c.feedback != "tied"}
    for name, patch in back.items():
        assert patch.get_linestyle() == "--", name
    for c in net.couplings:
        two_way = (
            c.feedback == "tied"
            and net.layer(c.source).role != "input"
            and net.layer(c.target).role != "readout"
        )
        style = type(forward[c.name].get_arrowstyle()).__name__  # CurveFilledB or ...AB
        assert style == ("CurveFilledAB" if two_way else "CurveFilledB"), (c.name, style)


def test_feedback_modes_are_named():
    fig = plot_graph(_mixed())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "scaled, gamma=0.5" in texts


def test_draws_into_a_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots(1, 2)[1]
    assert plot_graph(chain([3, 4, 2]), ax, title="mine") is fig
    assert ax.get_title() == "mine"
    assert len(_gids(ax, "layer:")) == 3


def test_refuses_a_chain_network_naming_the_converter():
    from eqprop.network import init_network

    with pytest.raises(TypeError, match="from_network"):
        plot_graph(init_network((3, 4, 2)))
