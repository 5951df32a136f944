"""GDU and training-curves studies: end to end, each against a direct call."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from studies.schema import check_schema

BETAS = (1e-3, 1e-2, 1e-1)


@pytest.fixture(scope="module")
def gdu_ds():
    pytest.importorskip("eqprop.gdu")
    from studies.gdu import gdu_study

    return gdu_study(BETAS, (0, 1), T=4000, K=15, progress=False)


def test_gdu_schema_and_wrapper_fidelity(gdu_ds):
    from eqprop.gdu import gdu
    from eqprop.network import init_network
    from studies.beta import make_batch

    check_schema(gdu_ds)
    assert gdu_ds.attrs["study"] == "gdu"
    net = init_network((5, 50, 10), kind="hopfield", activation="tanh", dtype="float64", seed=1)
    x, d = make_batch((5, 50, 10), 1, 1 + 7919)
    direct = gdu(net, x, d, beta=1e-2, T=4000, K=15, eps=0.08, dtype="float64", seed=1)
    got = gdu_ds.sel(beta=1e-2, seed=1, drop=True)
    for name in ("rmse", "rel_rmse", "cosine", "final_cosine_rbp"):
        xr.testing.assert_allclose(got[name], direct[name], rtol=1e-12, atol=0)


def test_gdu_error_is_first_order_in_beta(gdu_ds):
    """EP's nudged-phase updates match BPTT up to O(beta) (Ernoult et al. 2019)."""
    w = gdu_ds["rel_rmse"].sel(quantity="weights").max("t")
    assert float(w.sel(beta=1e-3).max()) < 0.01
    ratio = (w.sel(beta=1e-1) / w.sel(beta=1e-2)).values
    np.testing.assert_allclose(ratio, 10.0, rtol=0.3)
    assert float(gdu_ds["free_residual"].max()) < 1e-10


def test_training_curves_match_direct_training():
    pytest.importorskip("eqprop.train")
    from eqprop.train import TIMING_VARIABLES, TrainConfig, train
    from studies.training import training_curves

    base = dict(
        dataset="digits",
        architecture="64-12-10",
        epochs=2,
        T=8,
        K=3,
        limit=120,
        lrs=[0.2, 0.05],
        beta=0.5,
        batch_size=20,
        eval_batch_size=200,
    )
    ds = training_curves(("one-sided", "symmetric"), (0, 1), base=base, progress=False)
    check_schema(ds)
    assert ds.attrs["study"] == "training-curves"
    assert ds["test_error"].dims == ("estimator", "cost", "seed", "epoch")
    assert list(ds["epoch"].values) == [1, 2]
    cfg = TrainConfig.from_flat({**base, "lrs": (0.2, 0.05)}, estimator="symmetric", seed=1)
    hist = train(cfg, quiet=True).history
    got = ds.sel(estimator="symmetric", cost="squared", seed=1, drop=True)
    for name in hist.data_vars:
        if name in TIMING_VARIABLES:
            continue
        np.testing.assert_array_equal(got[name].values, hist[name].values, err_msg=name)
    assert float(ds["test_error"].min()) < 0.9  # better than chance somewhere
