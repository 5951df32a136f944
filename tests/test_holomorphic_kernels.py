"""The Numba graph map with complex states (holomorphic EP through ``solvers``).

Checked against the NumPy reference map (:mod:`eqprop.graph.reference`, complex128) at a
random complex state with a complex nudge, and the solvers' complex fixed points against
the NumPy relaxation of :mod:`eqprop.graph.holomorphic`.
"""

import numpy as np
import pytest

import solvers
from eqprop.graph import GraphNetwork, chain
from eqprop.graph import holomorphic as H
from eqprop.graph import kernels as GK
from eqprop.graph import reference as R

NETS = {
    "hopfield-sigmoid-squared": dict(activation="sigmoid"),
    "hopfield-tanh-linear-out": dict(activation="tanh", output_activation="identity"),
    "prototypical-sigmoid": dict(activation="sigmoid", kind="prototypical"),
    "hopfield-ce-linear-out": dict(
        activation="sigmoid", output_activation="identity", cost="cross-entropy"
    ),
}


def _complex_problem(case, seed=0):
    net = H.as_complex(chain([4, 6, 5, 3], seed=1, **NETS[case]))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 4))
    d = rng.uniform(0.0, 1.0, size=(3, 3))
    if net.cost == "cross-entropy":
        d = d / d.sum(axis=1, keepdims=True)
    return net, x, d


@pytest.mark.parametrize("case", sorted(NETS))
@pytest.mark.parametrize("nudge", ["inside", "outside"])
def test_complex_graph_map_and_field_equal_the_reference(case, nudge):
    net, x, d = _complex_problem(case)
    rng = np.random.default_rng(5)
    s = 0.5 * (rng.normal(size=(3, net.n_state)) + 1j * rng.normal(size=(3, net.n_state)))
    beta = 0.4 * np.exp(0.7j)
    args = GK.make_args(net, x, beta=beta, d=d, eps=0.5, nudge=nudge)
    out = np.empty_like(s)
    GK.fixed_point_map(s, out, args)
    ref = R.fixed_point_map(net, x, s, d, beta, eps=0.5, nudge=nudge)
    assert out.dtype == np.complex128 and np.abs(ref.imag).max() > 1e-2
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)
    GK.vector_field(s, out, args)
    np.testing.assert_allclose(
        out, R.vector_field(net, x, s, d, beta, eps=0.5, nudge=nudge), rtol=1e-12, atol=1e-13
    )


@pytest.mark.parametrize(
    "method", [solvers.Picard(), solvers.Anderson(m=5)], ids=lambda m: m.describe()
)
def test_complex_phase_through_solvers_matches_numpy_relaxation(method):
    net, x, d = _complex_problem("hopfield-sigmoid-squared")
    free = H.relax(net, x).state
    beta = 0.5 * np.exp(2j * np.pi / 3)
    ref = H.relax(net, x, d, beta, s0=free).state
    res = GK.solve_phase(net, x, beta=beta, d=d, s0=free, method=method, atol=1e-13)
    assert res.success and res.x.dtype == np.complex128
    np.testing.assert_allclose(res.x, ref, atol=1e-11, rtol=0)


def test_complex_beta_on_a_real_network_is_refused():
    net = chain([4, 6, 3], seed=1, activation="hardsigmoid")
    x = np.zeros((1, 4))
    d = np.zeros((1, 3))
    with pytest.raises(ValueError, match="complex nudges need a complex network"):
        GK.make_args(net, x, beta=0.5j, d=d)
    # a hard sigmoid cannot be made complex
    with pytest.raises(ValueError, match="not holomorphic"):
        H.as_complex(net)
    with pytest.raises(ValueError, match="not holomorphic"):
        GraphNetwork(net.layers, net.couplings, net.kind, net.cost, "complex128")
