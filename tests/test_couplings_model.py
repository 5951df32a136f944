"""Layers and couplings as plain data: layout and one-line errors naming the culprit."""

import numpy as np
import pytest

from eqprop.graph import Coupling, GraphNetwork, Layer, chain
from eqprop.graph import reference as R


def _layers(act="sigmoid"):
    return [
        Layer("x", 3, role="input"),
        Layer("h", 4, activation=act, bias=np.zeros(4)),
        Layer("y", 2, role="output", activation="identity"),
    ]


def _couplings():
    rng = np.random.default_rng(0)
    return [
        Coupling("x", "h", rng.normal(size=(3, 4))),
        Coupling("h", "y", rng.normal(size=(4, 2))),
    ]


def test_state_layout_concatenates_hidden_and_output_in_order():
    net = GraphNetwork(_layers(), _couplings())
    assert net.n_state == 6
    assert net.offsets == {"h": (0, 4), "y": (4, 6)}
    assert [c.name for c in net.couplings] == ["x->h", "h->y"]
    assert set(net.parameters()) == {"x->h.W", "h->y.W", "h.b"}
    s = net.zero_state(5)
    assert s.shape == (5, 6) and s.flags.c_contiguous and s.dtype == np.float64


def test_parameters_are_the_arrays_themselves():
    net = GraphNetwork(_layers(), _couplings())
    net.parameters()["h->y.W"][0, 0] = 7.0
    assert net.coupling("h->y").W[0, 0] == 7.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda L, C: C.append(Coupling("h", "h", np.zeros((4, 4)))), "'h->h'.*with itself"),
        (lambda L, C: C.append(Coupling("y", "x", np.zeros((2, 3)))), "'y->x'.*into the input"),
        (lambda L, C: C.__setitem__(1, Coupling("h", "y", np.zeros((3, 2)))), "'h->y'.*W must"),
        (lambda L, C: C.append(Coupling("h", "z", np.zeros((4, 2)))), "'h->z'.*unknown layer 'z'"),
        (
            lambda L, C: C.__setitem__(1, Coupling("h", "y", np.zeros((4, 2)), "free")),
            "'h->y'.*needs B",
        ),
        (
            lambda L, C: C.__setitem__(
                1, Coupling("h", "y", np.zeros((4, 2)), "random", B=np.zeros((4, 2)))
            ),
            "'h->y'.*B must have shape",
        ),
        (
            lambda L, C: C.__setitem__(0, Coupling("x", "h", np.zeros((3, 4)), "scaled", 0.5)),
            "'x->h'.*no feedback",
        ),
        (lambda L, C: C.append(Coupling("y", "h", np.zeros((2, 4)))), "'y->h'.*already coupled"),
        (lambda L, C: L.append(Layer("h", 2)), "layer 'h'.*two layers"),
        (lambda L, C: L.__setitem__(1, Layer("h", 4, activation="relu")), "layer 'h'.*'relu'"),
        (lambda L, C: L.__setitem__(1, Layer("h", 4, bias=np.zeros(3))), "layer 'h'.*bias"),
    ],
)
def test_bad_descriptions_raise_one_line_naming_the_culprit(change, message):
    layers, couplings = _layers(), _couplings()
    change(layers, couplings)
    with pytest.raises(ValueError, match=message) as info:
        GraphNetwork(layers, couplings)
    assert "\n" not in str(info.value)


def test_hard_sigmoid_with_complex_dtype_is_rejected_naming_the_layer():
    with pytest.raises(ValueError, match=r"layer 'h'.*'hardsigmoid' is not holomorphic"):
        GraphNetwork(_layers("hardsigmoid"), _couplings(), dtype="complex128")
    net = GraphNetwork(_layers("tanh"), _couplings(), dtype="complex128")
    assert net.dtype == np.complex128


def test_energy_of_untied_network_names_the_coupling():
    for mode in ("free", "random", "scaled"):
        net = chain(
            [3, 4, 2], activation="sigmoid", feedback=mode, gamma=0.5 if mode == "scaled" else 1
        )
        x, s = np.ones((1, 3)), np.zeros((1, 6))
        with pytest.raises(
            ValueError, match=f"coupling 'h1->y': feedback '{mode}'.*without an energy"
        ):
            R.energy(net, x, s)
        with pytest.raises(ValueError, match="coupling 'h1->y'"):
            R.state_gradient(net, x, s)
        R.vector_field(net, x, s)  # the dynamics exist without an energy


def test_chain_builder_skip_and_output_activation():
    net = chain([3, 4, 5, 2], activation="hardsigmoid", output_activation="identity", skip=[(1, 3)])
    assert [c.name for c in net.couplings] == ["x->h1", "h1->h2", "h2->y", "h1->y"]
    assert net.layer("h1").box == (0.0, 1.0) and net.layer("y").box is None
    with pytest.raises(ValueError, match="skip \\(1, 2\\)"):
        chain([3, 4, 5, 2], skip=[(1, 2)])
    fa = chain([3, 4, 2], activation="sigmoid", feedback="random", seed=1)
    assert "h1->y.B" not in fa.parameters()
    vf = chain([3, 4, 2], activation="sigmoid", feedback="free")
    np.testing.assert_array_equal(vf.coupling("h1->y").B, vf.coupling("h1->y").W.T)
    assert "h1->y.B" in vf.parameters()
