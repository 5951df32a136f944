"""The worked example of docs/networks.rst, "Adding a coupling type" (issue 11).

A diagonal (element-wise) coupling between two layers of equal size, written as a
coupling module here, registered for the test only, and checked the way the dense
coupling is: the energy's state and parameter gradients against central finite
differences of the energy, the map against its formula written out in the test, and its
bad input. The docs include the module from this file (between the ``example`` markers),
so the page shows code that runs.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from eqprop.graph import Coupling, GraphNetwork, Layer
from eqprop.graph import model as graph_model
from eqprop.graph import reference as R

# example: diagonal coupling (start)
# One weight per unit pair i -> i: W has shape (n,), both layers have n units.


def check(c, src, dst, dtype):
    """Validate the coupling against its layers; cast W to the network's dtype."""
    where = f"coupling {c.name!r}"
    if src.size != dst.size:
        raise ValueError(f"{where}: a diagonal coupling joins layers of equal size")
    if c.feedback not in ("tied", "scaled"):
        raise ValueError(f"{where}: feedback {c.feedback!r} is not defined for diagonal")
    if np.shape(c.W) != (src.size,):
        raise ValueError(f"{where}: W must have shape ({src.size},), got {np.shape(c.W)}")
    c.W = np.array(c.W, dtype=dtype)


def forward_drive(c, a_src):  # into the target, (batch, n)
    return a_src * c.W


def feedback_drive(c, a_dst, a_src=None):  # into the source: -d(energy_term)/d(a_src)
    return c.gamma * (a_dst * c.W)  # gamma is 1 unless feedback="scaled"


def energy_term(c, a_src, a_dst):  # the coupling's term of F, per sample
    return -np.sum(a_src * c.W * a_dst, axis=1)


def weight_gradient(c, a_src, a_dst):  # dF/dW, batch mean, shaped like W
    return -np.mean(a_src * a_dst, axis=0)


def feedback_gradient(c, a_src, a_dst):  # no learned feedback matrix
    return None


diagonal = SimpleNamespace(
    check=check,
    forward_drive=forward_drive,
    feedback_drive=feedback_drive,
    energy_term=energy_term,
    weight_gradient=weight_gradient,
    feedback_gradient=feedback_gradient,
)
# example: diagonal coupling (end)


@pytest.fixture
def registered(monkeypatch):
    """Register ``diagonal`` for one test (what a new module in eqprop/graph/ does for
    good: ``COUPLING_TYPES`` in model.py and ``_MODULES`` in reference.py)."""
    monkeypatch.setattr(graph_model, "COUPLING_TYPES", (*graph_model.COUPLING_TYPES, "diagonal"))
    monkeypatch.setitem(R._MODULES, "diagonal", diagonal)


def _net(kind: str, seed: int = 0) -> GraphNetwork:
    # example: network (start)
    rng = np.random.default_rng(seed)
    layers = [
        Layer("x", 4, role="input"),
        Layer("h1", 5, activation="tanh", bias=rng.normal(scale=0.1, size=5)),
        Layer("h2", 5, activation="sigmoid", bias=rng.normal(scale=0.1, size=5)),
        Layer("y", 3, role="output", activation="identity", bias=np.zeros(3)),
    ]
    couplings = [
        Coupling("x", "h1", rng.normal(scale=0.5, size=(4, 5))),
        Coupling("h1", "h2", rng.normal(scale=0.5, size=5), type="diagonal"),
        Coupling("h2", "y", rng.normal(scale=0.5, size=(5, 3))),
    ]
    net = GraphNetwork(layers, couplings, kind=kind, cost="squared")
    # example: network (end)
    return net


def _data(net, seed=1, batch=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch, net.n_in))
    s = rng.normal(scale=0.5, size=(batch, net.n_state))
    d = rng.uniform(size=(batch, net.n_out))
    return x, s, d


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
def test_state_gradient_is_the_energy_derivative(registered, kind):
    net = _net(kind)
    x, s, d = _data(net)
    beta, h = 0.3, 1e-6
    g = R.state_gradient(net, x, s, d, beta)
    fd = np.empty_like(s)
    for j in range(net.n_state):
        e = np.zeros_like(s)
        e[:, j] = h
        fd[:, j] = (R.energy(net, x, s + e, d, beta) - R.energy(net, x, s - e, d, beta)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
def test_weight_gradient_is_the_energy_derivative(registered, kind):
    net = _net(kind)
    x, s, d = _data(net)
    g = R.parameter_gradient(net, x, s, d)["h1->h2.W"]
    assert g.shape == (5,)
    W = net.coupling("h1->h2").W
    h, fd = 1e-6, np.empty(5)
    for i in range(5):
        W[i] += h
        up = R.energy(net, x, s, d).mean()
        W[i] -= 2 * h
        down = R.energy(net, x, s, d).mean()
        W[i] += h
        fd[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-9)


def test_map_is_the_formula(registered):
    """Prototypical map, nudge inside: each layer's sigma of its drive, written out."""
    net = _net("prototypical")
    x, s, d = _data(net)
    beta = 0.2
    h1, h2, y = s[:, :5], s[:, 5:10], s[:, 10:]
    W1, w, W3 = (c.W for c in net.couplings)
    b1, b2, b3 = (net.layer(n).bias for n in ("h1", "h2", "y"))
    want = np.hstack(
        [
            np.tanh(x @ W1 + b1 + h2 * w),
            1 / (1 + np.exp(-(h1 * w + b2 + y @ W3.T))),
            h2 @ W3 + b3 - beta * (y - d),
        ]
    )
    np.testing.assert_allclose(R.fixed_point_map(net, x, s, d, beta), want, rtol=1e-12)


def test_scaled_feedback_scales_only_what_the_source_receives(registered):
    net = _net("prototypical")
    x, s, _ = _data(net)
    c = net.coupling("h1->h2")
    scaled = GraphNetwork(
        net.copy().layers,
        [
            net.couplings[0],
            Coupling("h1", "h2", c.W, feedback="scaled", gamma=0.5, type="diagonal"),
            net.couplings[2],
        ],
        kind="prototypical",
    )
    u, us = (R.drives(m, R.activities(m, x, s)) for m in (net, scaled))
    feedback = s[:, 5:10] * c.W
    np.testing.assert_allclose(us["h1"], u["h1"] - 0.5 * feedback, rtol=1e-12)
    np.testing.assert_allclose(us["h2"], u["h2"], rtol=1e-12)


def test_bad_input_names_the_coupling(registered):
    net = _net("hopfield")
    layers = net.copy().layers
    with pytest.raises(ValueError, match=r"coupling 'h1->h2': W must have shape \(5,\)"):
        GraphNetwork(layers, [Coupling("h1", "h2", np.ones((5, 5)), type="diagonal")])
    with pytest.raises(ValueError, match=r"coupling 'h2->y': a diagonal coupling joins"):
        GraphNetwork(layers, [Coupling("h2", "y", np.ones(5), type="diagonal")])


def test_an_unregistered_type_is_refused():
    with pytest.raises(ValueError, match="unknown type 'diagonal'"):
        _net("hopfield")
