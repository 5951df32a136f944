"""record_energy on the general graph path (#11): the recorded F is the reference energy
(eqprop.graph.reference.energy, NumPy) of the states, never increases along the
hopfield gradient flow, equals the fast chain path's; untied and complex networks refuse.

Every network here has two state layers and one coupling between them (or one readout
coupling), so the solvers' driver compiles once for all of them (see docs/networks.rst,
compile once per topology)."""

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import chain, from_network
from eqprop.graph import reference as R
from eqprop.graph.holomorphic import as_complex


def _biases(net, seed=0):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.bias is not None:
            layer.bias[:] = rng.normal(scale=0.3, size=layer.size)
    return net


def _data(n_in=5, n_out=3, batch=4):
    rng = np.random.default_rng(1)
    return rng.random((batch, n_in)), np.eye(n_out)[rng.integers(0, n_out, batch)]


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_recorded_energy_decreases_along_the_flow_and_is_the_reference_f(beta):
    net = _biases(chain([5, 4, 3], activation="sigmoid", skip=[(0, 2)], gain=2.0))
    x, d = _data()
    dyn = E.Dynamics(T=200, eps=0.05, record_energy=True)
    ph = E.run_phase(net, x, dyn, beta=beta, d=d, steps=200)
    F = ph.result.observed
    assert F is not None and F.shape == (201, 4)
    assert np.diff(F, axis=0).max() <= 1e-12
    assert (F[-1] < F[0]).all()
    np.testing.assert_allclose(F[-1], R.energy(net, x, ph.state, d, beta), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "make",
    [
        lambda: chain(  # P_MLP: cross-entropy on a linear output in the state
            [5, 4, 3],
            kind="prototypical",
            activation="sigmoid",
            output_activation="identity",
            cost="cross-entropy",
        ),
        lambda: from_network(  # a softmax readout outside the state
            E.init_network((5, 4, 4, 3), "hopfield", "tanh", "cross-entropy", dtype="float64")
        ),
    ],
    ids=["linear-output-ce", "readout"],
)
def test_recorded_energy_with_cross_entropy_costs(make):
    net = _biases(make())
    x, d = _data()
    dyn = E.Dynamics(T=7, K=7, record_energy=True, record_every=3)
    ph = E.run_phase(net, E.clamp(net, x, path="general"), dyn, beta=0.7, d=d, steps=7)
    assert ph.result.observed.shape[0] == len(ph.result.observed_iter)
    np.testing.assert_allclose(
        ph.result.observed[-1], R.energy(net, x, ph.state, d, 0.7), rtol=1e-12, atol=1e-14
    )


def test_general_path_records_what_the_fast_chain_path_records():
    net = _biases(from_network(E.init_network((5, 4, 3), "hopfield", "sigmoid", dtype="float64")))
    x, d = _data()
    dyn = E.Dynamics(T=30, K=30, record_energy=True)
    obs = {
        path: E.run_phase(net, E.clamp(net, x, path=path), dyn, beta=0.3, d=d).result.observed
        for path in ("general", "fast")
    }
    np.testing.assert_allclose(obs["general"], obs["fast"], rtol=1e-12, atol=1e-13)


def test_untied_and_complex_networks_refuse_with_one_line():
    x, _ = _data()
    untied = chain([5, 4, 3], activation="sigmoid", feedback="free")
    with pytest.raises(
        ValueError,
        match="coupling 'h1->y': feedback 'free' makes the network a vector field without",
    ):
        E.free_phase(untied, x, E.Dynamics(record_energy=True))
    holo = as_complex(chain([5, 4, 3], activation="sigmoid"))
    with pytest.raises(ValueError, match="complex128 and its F is complex"):
        E.free_phase(holo, x, E.Dynamics(record_energy=True))
