"""A phase request that cannot be honoured is refused the same way on both paths (the
chain's fused kernels and the general graph kernels): a non-finite beta, a nudged phase
without targets, a clamped phase without targets or with beta != 0."""

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import from_network
from eqprop.graph.build import extend_chain


def _nets():
    net = E.init_network((5, 4, 3), kind="hopfield", dtype="float64", seed=0)
    chain_graph = from_network(net)  # runs on the fast path
    skip_graph = extend_chain(chain_graph, skip=[(0, 2)])  # runs on the general path
    return {"network": net, "chain-graph": chain_graph, "skip-graph": skip_graph}


@pytest.mark.parametrize("which", ["network", "chain-graph", "skip-graph"])
@pytest.mark.parametrize(
    ("beta", "with_d", "clamp_output", "message"),
    [
        (np.nan, True, False, "beta must be finite"),
        (np.inf, True, False, "beta must be finite"),
        (0.5, False, False, "targets d are required"),
        (0.0, False, True, "clamped phase needs targets"),
        (0.5, True, True, "clamped phase needs targets d and beta = 0"),
    ],
)
def test_unhonourable_phase_request_is_refused(which, beta, with_d, clamp_output, message):
    net = _nets()[which]
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (2, 5))
    d = np.eye(3)[[0, 2]] if with_d else None
    dyn = E.Dynamics(T=5, K=2)
    with pytest.raises(ValueError, match=message):
        E.run_phase(net, x, dyn, beta=beta, d=d, clamp_output=clamp_output)


@pytest.mark.parametrize("which", ["network", "chain-graph", "skip-graph"])
def test_a_valid_request_runs_on_every_path(which):
    """The refusals above are not a blanket refusal: the same calls with valid
    arguments run and return a finite state."""
    net = _nets()[which]
    x = np.random.default_rng(1).uniform(0, 1, (2, 5))
    d = np.eye(3)[[0, 2]]
    dyn = E.Dynamics(T=5, K=2)
    for kw in ({"beta": 0.5, "d": d}, {"beta": 0.0}, {"beta": 0.0, "d": d, "clamp_output": True}):
        ph = E.run_phase(net, x, dyn, **kw)
        assert np.all(np.isfinite(ph.state))
