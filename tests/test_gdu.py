"""GDU property (Ernoult et al. 2019): EP's nudged-phase updates = BPTT gradients in time."""

from __future__ import annotations

import numpy as np
import pytest

from eqprop.gdu import QUANTITIES, SETTINGS, gdu, plot_gdu
from eqprop.network import init_network


def _batch(sizes, batch=4, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch, sizes[0]))
    d = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    return x, d


@pytest.fixture(scope="module")
def toy():
    """The paper's toy energy-based model: 5-50-10, tanh, no clipping, dt = 0.08."""
    s = SETTINGS["toy"]
    net = init_network(s["sizes"], "hopfield", "tanh", "squared", dtype="float64", seed=0)
    x, d = _batch(s["sizes"])
    # T = 3000 steps already reach the steady state to round-off for this seed
    return gdu(net, x, d, beta=1e-3, T=3000, K=s["K"], eps=s["eps"])


def test_toy_energy_based_updates_match_bptt_at_every_step(toy):
    ds = toy
    assert float(ds.free_residual) < 1e-12
    assert ds.cosine.dims == ("t", "layer", "quantity")
    assert ds.sizes["t"] == 80 and list(ds.quantity.values) == list(QUANTITIES)
    assert list(ds.layer.values) == ["W1", "W2"]
    cos = ds.cosine.values
    # undefined (NaN) only where BPTT is exactly zero: hidden layer at t = 0 (the nudge
    # reaches the output first)
    undefined = ~np.isfinite(cos)
    assert undefined[0, 0].all() and not undefined[1:].any() and not undefined[:, 1].any()
    assert np.nanmin(cos) >= 0.999, ds.cosine.min("t").to_pandas()
    # first step: Delta_s(0) = -(s_L - d) on the output exactly (to O(beta))
    assert float(ds.rel_rmse.isel(t=0).sel(layer="W2", quantity="neurons")) < 1e-2
    assert np.nanmin(ds.sign_agreement.values) > 0.9
    # the summed EP update is the truncated BPTT gradient over K steps
    assert np.all(ds.final_cosine_bptt.values > 0.9999)


def test_gdu_fails_when_not_at_steady_state():
    """The property needs a converged free phase: far from it the processes differ."""
    s = SETTINGS["toy"]
    net = init_network(s["sizes"], "hopfield", "tanh", "squared", dtype="float64", seed=0)
    x, d = _batch(s["sizes"])
    with pytest.warns(RuntimeWarning, match="steady state"):
        ds = gdu(net, x, d, beta=1e-3, T=15, K=10, eps=s["eps"])
    assert float(ds.free_residual) > 1e-3
    assert np.nanmin(ds.cosine.sel(quantity="neurons").values) < 0.99


@pytest.mark.parametrize("nudge", ["inside", "outside"])
def test_prototypical_final_update_matches_rbp(nudge):
    net = init_network(
        (5, 20, 4), "prototypical", "sigmoid", "squared", dtype="float64", seed=0, gain=2.0
    )
    x, d = _batch(net.sizes)
    ds = gdu(net, x, d, beta=1e-3, T=150, K=40, nudge=nudge)
    assert float(ds.free_residual) < 1e-12
    w = ds.cosine.sel(quantity="weights").values
    if nudge == "inside":
        # synapses: exact in the limit (J = D M); neurons only up to the factor sigma'
        assert np.all(ds.final_cosine_rbp.values >= 0.999)
        assert np.nanmin(w[:10]) > 0.999
    else:
        assert np.any(ds.final_cosine_rbp.values < 0.999)


def test_bad_input_and_figure(toy):
    net = init_network((5, 8, 4), "hopfield", "tanh", "cross-entropy", dtype="float64")
    x, d = _batch((5, 8, 4))
    with pytest.raises(ValueError, match="squared"):
        gdu(net, x, d, beta=1e-3, T=10, K=5)
    net = init_network((5, 8, 4), "hopfield", "tanh", "squared", dtype="float64")
    with pytest.raises(ValueError, match="beta"):
        gdu(net, x, d, beta=0.0, T=10, K=5)
    with pytest.raises(ValueError, match="K"):
        gdu(net, x, d, beta=1e-3, T=10, K=11)
    with pytest.raises(ValueError, match="shape"):
        gdu(net, x[:, :2], d, beta=1e-3, T=10, K=5)
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    fig = plot_gdu(toy, "weights")
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 2 * toy.sizes["element"]


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
def test_hard_sigmoid_gdu_holds_on_the_active_set(kind):
    """Clipped units carry no gradient; on the active set the processes coincide."""
    net = init_network((5, 20, 4), kind, "hardsigmoid", "squared", dtype="float64", seed=0)
    net.biases[0][:] = np.random.default_rng(0).normal(0.3, 0.8, 20)
    net.biases[1][:] = 0.5
    x, d = _batch(net.sizes)
    ds = gdu(net, x, d, beta=1e-3, T=1000, K=30, eps=0.5)
    frac = ds.active_fraction.values
    assert np.all((frac > 0.05) & (frac < 0.95)), frac  # a mixed active set
    assert np.nanmin(ds.cosine.values) >= 0.999, ds.cosine.min("t").to_pandas()
