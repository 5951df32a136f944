"""Comparison API and ``eqprop compare``: EP -> recurrent backprop as beta -> 0, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from eqprop.compare import compare, compare_main, layer_metrics
from eqprop.gradients import ReferenceGradient
from eqprop.network import init_network
from eqprop.phases import Dynamics
from eqprop.provenance import open_netcdf, write_netcdf

BETAS = np.logspace(-3, -2, 4)  # one decade where the phases are converged (float64)


def _setup(kind="hopfield", cost="squared", activation="sigmoid", sizes=(5, 8, 4), gain=2.0):
    net = init_network(sizes, kind, activation, cost, dtype="float64", seed=3, gain=gain)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, (4, sizes[0]))
    d = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 4)]
    return net, x, d


def _slopes(ds, estimator):
    err = ds.rel_error.sel(estimator=estimator, reference="rbp").values  # (layer, beta)
    lb = np.log(ds.beta.values)
    return np.array([np.polyfit(lb, np.log(e), 1)[0] for e in err]), err


@pytest.mark.parametrize(
    "kind,cost",
    [("hopfield", "squared"), ("prototypical", "squared"), ("prototypical", "cross-entropy")],
)
def test_ep_converges_to_rbp_at_first_and_second_order(kind, cost):
    sizes = (5, 8, 6, 4) if cost == "cross-entropy" else (5, 8, 4)
    net, x, d = _setup(kind, cost, sizes=sizes)
    dyn = Dynamics(T=300, K=300, eps=0.5, nudge="inside")
    ds = compare(
        net, x, d, dyn, betas=BETAS, estimators=("one-sided", "symmetric"), references=("rbp",)
    )
    assert ds.attrs["free_phase_converged"] == 1
    one, e1 = _slopes(ds, "one-sided")
    sym, e2 = _slopes(ds, "symmetric")
    assert np.all((one > 0.8) & (one < 1.2)), one
    assert np.all((sym > 1.8) & (sym < 2.2)), sym
    assert np.all(e1[:, 0] < 5e-3) and np.all(e2[:, 0] < 1e-5)
    assert np.all(ds.cosine.sel(reference="rbp", estimator="symmetric").values > 0.999999)


def test_nudge_outside_plateaus_inside_is_exact():
    """Prototypical: nudge inside sigma -> EP exact as beta -> 0; outside -> error plateau."""
    net, x, d = _setup("prototypical")
    out = {}
    for nudge in ("inside", "outside"):
        dyn = Dynamics(T=300, K=300, nudge=nudge)
        ds = compare(net, x, d, dyn, betas=BETAS, estimators=("symmetric",), references=("rbp",))
        out[nudge] = _slopes(ds, "symmetric")
    s_in, e_in = out["inside"]
    s_out, e_out = out["outside"]
    assert np.all(s_in > 1.8) and np.all(e_in[:, 0] < 1e-5)
    assert np.all(np.abs(s_out) < 0.1), s_out  # does not shrink with beta
    assert np.all(e_out[:, 0] > 0.1), e_out  # a bias of order one remains


def test_dataset_layout_attrs_and_round_trip(tmp_path):
    net, x, d = _setup("hopfield", "cross-entropy", "tanh", sizes=(5, 7, 3), gain=1.0)
    dyn = Dynamics(T=100, K=100, eps=0.5)
    ds = compare(net, x, d, dyn, betas=(0.01, 0.1), references=("rbp", "bptt", "finite-difference"))
    assert ds.cosine.dims == ("layer", "estimator", "beta", "reference")
    assert list(ds.layer.values) == ["W1", "W2"]
    assert list(ds.estimator.values) == ["one-sided", "random-sign", "symmetric"]
    assert list(ds.reference.values) == ["rbp", "bptt", "finite-difference"]
    for name in [*ds.data_vars, *ds.coords]:
        assert "long_name" in ds[name].attrs and "units" in ds[name].attrs, name
    for key in ("title", "created_at", "eqprop_version", "numpy_version", "config", "history"):
        assert key in ds.attrs, key
    assert ds.attrs["free_phase_converged"] == 1
    # the three references agree with each other here (converged, smooth)
    c = ds.cosine.sel(estimator="symmetric", beta=0.01)
    np.testing.assert_allclose(c.sel(reference="bptt"), c.sel(reference="rbp"), atol=1e-6)
    np.testing.assert_allclose(
        c.sel(reference="finite-difference"), c.sel(reference="rbp"), atol=1e-6
    )
    # and small-beta symmetric EP matches them (the estimate is O(beta^2) off)
    assert (c.sel(reference="rbp") > 0.999).all(), c.values
    assert (ds.rel_error.sel(estimator="symmetric", beta=0.01, reference="rbp") < 1e-3).all()
    assert (ds.sign_agreement.sel(estimator="symmetric", beta=0.01) > 0.95).all()
    assert np.all(ds.sign_agreement.values <= 1) and np.all(ds.sign_agreement.values >= 0)
    path = write_netcdf(ds, tmp_path / "cmp.nc")
    back = open_netcdf(path)
    np.testing.assert_array_equal(back.cosine.values, ds.cosine.values)
    assert back.attrs["free_phase_converged"] == 1


def test_layer_metrics_by_hand():
    ref = ReferenceGradient([np.array([[1.0, 0.0]])], [np.array([0.0, 1.0])], 0.0, "x")
    g = ReferenceGradient([np.array([[1.0, 0.0]])], [np.array([0.0, -1.0])], 0.0, "x")
    m = layer_metrics(g, ref)
    assert m["cosine"][0] == pytest.approx(0.0)
    assert m["rel_error"][0] == pytest.approx(np.sqrt(4 / 2))
    assert m["sign_agreement"][0] == pytest.approx(0.75)
    bad = ReferenceGradient([np.zeros((2, 2))], [np.zeros(2)], 0.0, "x")
    with pytest.raises(ValueError, match="shapes"):
        layer_metrics(bad, ref)


def test_bad_input():
    net, x, d = _setup()
    dyn = Dynamics(T=50, K=50)
    with pytest.raises(ValueError, match="beta"):
        compare(net, x, d, dyn, betas=(0.01, 0.0))
    with pytest.raises(ValueError, match="beta"):
        compare(net, x, d, dyn, betas=(-0.01,))
    with pytest.raises(ValueError, match="shape"):
        compare(net, x[:, :4], d, dyn)
    with pytest.raises(ValueError, match="shape"):
        compare(net, x, d[:, :3], dyn)
    with pytest.raises(ValueError, match="reference"):
        compare(net, x, d, dyn, references=("autodiff",))
    with pytest.raises(ValueError, match="estimator"):
        compare(net, x, d, dyn, estimators=("two-sided",))


def test_unconverged_free_phase_is_recorded_and_warned():
    net, x, d = _setup()
    dyn = Dynamics(T=2, K=2, eps=0.5, atol=1e-8)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        ds = compare(net, x, d, dyn, betas=(0.01,), references=("rbp",))
    assert ds.attrs["free_phase_converged"] == 0
    assert not ds.free_converged.values.any()
    assert np.all(ds.free_residual.values > 1e-8)


def test_compare_main(tmp_path, capsys):
    out = tmp_path / "c.nc"
    rc = compare_main(
        [
            "--sizes",
            "4,6,3",
            "--betas",
            "0.01,0.1",
            "--T",
            "150",
            "--batch-size",
            "3",
            "--kind",
            "prototypical",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "cosine" in text and "wrote" in text
    ds = open_netcdf(out)
    assert ds.sizes["beta"] == 2 and ds.sizes["layer"] == 2
    assert "compare" in ds.attrs["history"]
    assert compare_main(["--betas", "0,0.1", "--sizes", "4,6,3"]) == 2
    assert compare_main(["--kind", "nope"]) == 2
    assert "beta" in capsys.readouterr().err


def test_compare_takes_a_graph_network_by_parameter_name():
    """A graph network (here a chain with a skip from the input) is compared per array of
    its ``parameters()``; the full graph tests are in tests/test_compare_graph.py."""
    from eqprop.graph import from_network
    from eqprop.graph.build import extend_chain

    net = init_network((5, 4, 3), dtype="float64", seed=0)
    g = extend_chain(from_network(net), skip=[(0, 2)])
    x = np.random.default_rng(0).random((2, 5))
    d = np.eye(3)[[0, 1]]
    ds = compare(g, x, d, Dynamics(T=80, K=40), betas=(0.01,), references=("rbp",))
    assert list(ds.layer.values) == list(g.parameters())
    assert "x->y.W" in list(ds.layer.values)
