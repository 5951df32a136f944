"""Beta-sweep study: end to end on a tiny network, checked against direct estimates."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("eqprop.rules")
pytest.importorskip("eqprop.gradients")

from eqprop.network import init_network
from eqprop.phases import Dynamics, free_phase
from eqprop.rules import EquilibriumPropagation
from studies.beta import BetaSetup, _flat_layers, beta_sweep, make_batch
from studies.schema import check_schema
from studies.setup import BatchSetup, NetworkSetup, SolverSetup

SIZES = (6, 5, 3)
BETAS = (1e-3, 2e-3, 4e-3)
SETUP = BetaSetup(
    network=NetworkSetup(sizes=SIZES),
    batch=BatchSetup(size=4),
    solver=SolverSetup(eps=0.5, atol=1e-12),
    seeds=(0, 1, 2, 3, 4, 5),
    net_seed=1,
)


@pytest.fixture(scope="module")
def study():
    return beta_sweep(BETAS, setup=SETUP, progress=False)


def test_schema(study):
    check_schema(study)
    assert study.attrs["study"] == "beta-sweep"
    assert study["rel_error"].dims == ("beta", "estimator", "seed", "layer")
    assert list(study["layer"].values) == ["W1", "W2"]
    assert float(study["free_residual"].max()) <= 1e-12


def test_bias_orders_in_beta(study):
    """One-sided bias is O(beta), symmetric O(beta^2) (slopes of log bias vs log beta)."""
    logb = np.log(np.asarray(BETAS))
    for est, order in (("one-sided", 1.0), ("symmetric", 2.0)):
        for layer in ("W1", "W2"):
            bias = study["bias"].sel(estimator=est, layer=layer).values
            slopes = np.diff(np.log(bias)) / np.diff(logb)
            np.testing.assert_allclose(slopes, order, atol=0.25)
    # at small beta EP is close to the exact gradient (recurrent backprop)
    assert float(study["bias"].sel(estimator="symmetric").max()) < 1e-3
    assert float(study["rel_error"].sel(beta=1e-3, estimator="one-sided").max()) < 0.05


def test_variance_and_random_sign_against_direct_estimates(study):
    """Deterministic estimators have zero spread; random-sign mixes the +beta and -beta
    one-sided estimates, so its bias and variance follow from those two directly."""
    var = study["variance"]
    assert float(abs(var.sel(estimator="one-sided")).max()) < 1e-20
    assert float(abs(var.sel(estimator="symmetric")).max()) < 1e-20
    net = init_network(SIZES, dtype="float64", seed=SETUP.net_seed)
    x, d = make_batch(SIZES, SETUP.batch.size, SETUP.net_seed + 7919)
    dyn = Dynamics(eps=0.5, method="picard", fixed_steps=False, atol=1e-12, max_iter=20000)
    free = free_phase(net, x, dyn)
    for beta in BETAS:
        plus, minus = (
            _flat_layers(
                EquilibriumPropagation(beta=b, estimator="one-sided")
                .estimate(net, x, d, dyn, s0=free.state)
                .gradient
            )
            for b in (beta, -beta)
        )
        pt = study.sel(beta=beta, estimator="random-sign")
        ref_norm = pt["ref_norm"].values
        # which seeds drew +beta: their error equals the +beta one-sided error
        one = study.sel(beta=beta, estimator="one-sided")["rel_error"].values[0]
        is_plus = np.isclose(pt["rel_error"].values[:, 0], one[0], rtol=1e-9)
        p = is_plus.mean()
        for l in range(2):
            expected_var = p * (1 - p) * np.sum((plus[l] - minus[l]) ** 2) / ref_norm[l] ** 2
            np.testing.assert_allclose(
                pt["variance"].values[l], expected_var, rtol=1e-6, atol=1e-30
            )
        assert 0 < p < 1, "seeds 0..5 should draw both signs"
