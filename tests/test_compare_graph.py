"""compare and ``eqprop compare`` on graph networks: a chain converted to a graph gives the
chain's dataset; free-feedback, skip-coupled and linear-output networks, where the three
references agree and EP is exact only with tied feedback; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from eqprop.compare import compare, compare_main, graph_groups
from eqprop.graph import chain, from_network
from eqprop.graph.build import chain_parameter_names
from eqprop.graph.holomorphic import as_complex
from eqprop.network import init_network
from eqprop.phases import Dynamics
from eqprop.provenance import open_netcdf

REFS = ("rbp", "bptt", "finite-difference")
VARS = ("cosine", "rel_error", "sign_agreement", "ep_norm", "ref_norm", "loss")


def _batch(n_in, n_out, batch=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch, n_in))
    return x, np.eye(n_out)[rng.integers(0, n_out, batch)]


def _biases(net, seed=7):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.bias is not None:
            layer.bias[:] = rng.normal(scale=0.3, size=layer.size)
    return net


def _free(tied=False):
    """A free-feedback chain whose B is far from W^T (``tied``: the same W, tied)."""
    net = chain([4, 5, 3], activation="sigmoid", feedback="tied" if tied else "free", gain=1.5)
    rng = np.random.default_rng(2)
    for c in net.couplings:
        if c.B is not None:
            c.B[...] = rng.uniform(-0.8, 0.8, c.B.shape)
    return _biases(net)


def _skip():
    return _biases(chain([4, 5, 3, 3], activation="tanh", skip=[(0, 2), (1, 3)], gain=0.8, seed=2))


def _linear_out():
    """Laborieux et al. 2021's P_MLP: cross-entropy on a linear output in the state."""
    net = chain(
        [4, 5, 3],
        kind="prototypical",
        activation="sigmoid",
        output_activation="identity",
        cost="cross-entropy",
        seed=3,
    )
    return _biases(net)


@pytest.mark.parametrize(
    "kind,cost,activation",
    [("hopfield", "squared", "sigmoid"), ("prototypical", "cross-entropy", "tanh")],
)
def test_a_chain_as_a_graph_gives_the_chain_dataset(kind, cost, activation):
    """The graph routes (eqprop.graph.backprop, GraphGradient) against the chain's
    (eqprop.gradients): same values to 1e-10 in float64, by parameter and by layer.
    ``fd_step=1e-3``: both finite differences compute the same function, but each
    amplifies its own round-off by 1/h (~1e-10 at h = 1e-6); their O(h^2) truncation
    is the same on both routes."""
    net = init_network((5, 6, 3), kind, activation, cost, dtype="float64", seed=3, gain=1.5)
    g = from_network(net)
    x, d = _batch(5, 3, 4)
    kw = dict(betas=(0.01, 0.1), references=REFS, fd_step=1e-3)
    dyn = Dynamics(T=40, K=20, eps=0.5)
    ours = compare(g, x, d, dyn, **kw)
    theirs = compare(net, x, d, dyn, by="parameter", **kw)
    w, b = chain_parameter_names(g)
    assert list(ours.layer.values) == w + b
    assert list(theirs.layer.values) == ["W1", "W2", "b1", "b2"]
    for v in VARS:
        np.testing.assert_allclose(ours[v].values, theirs[v].values, rtol=1e-10, atol=1e-10)
    kw["references"] = ("rbp",)
    by_layer = compare(g, x, d, dyn, by="layer", **kw)
    chain_layer = compare(net, x, d, dyn, **kw)
    assert list(by_layer.layer.values) == ["h1", "y"]
    assert list(chain_layer.layer.values) == ["W1", "W2"]
    for v in VARS:
        np.testing.assert_allclose(
            by_layer[v].values, chain_layer[v].values, rtol=1e-10, atol=1e-10
        )


@pytest.mark.parametrize("make", [_free, _skip, _linear_out], ids=["free", "skip", "linear-out"])
def test_references_agree_on_untied_skip_and_linear_output_networks(make):
    """Converged free phase: RBP, BPTT through its T steps and finite differences give the
    same reference (their ref_norm per parameter, and EP's cosine against each)."""
    net = make()
    x, d = _batch(net.n_in, net.n_out)
    dyn = Dynamics(T=120, K=120, eps=0.5)
    ds = compare(net, x, d, dyn, betas=(1e-3,), estimators=("symmetric",), references=REFS)
    assert ds.attrs["free_phase_converged"] == 1
    assert list(ds.layer.values) == list(net.parameters())
    if make is _free:
        assert "h1->y.B" in list(ds.layer.values)  # the learned feedback is compared too
    rn = ds.ref_norm
    for r in ("bptt", "finite-difference"):
        np.testing.assert_allclose(rn.sel(reference=r), rn.sel(reference="rbp"), rtol=1e-5)
        c = ds.cosine.sel(reference=r)
        np.testing.assert_allclose(c, ds.cosine.sel(reference="rbp"), atol=1e-5)


def test_ep_is_the_gradient_with_tied_feedback_only():
    """Symmetric EP at small beta matches RBP on the tied chain (the energy's gradient);
    with free feedback far from W^T it is vector-field EP's estimate, off for the
    couplings whose feedback is not W^T's transpose."""
    dyn = Dynamics(T=150, K=150, eps=0.5)
    out = {}
    for tied in (True, False):
        net = _free(tied)
        x, d = _batch(net.n_in, net.n_out)
        ds = compare(net, x, d, dyn, betas=(1e-3,), estimators=("symmetric",), references=("rbp",))
        out[tied] = ds.rel_error.sel(reference="rbp", estimator="symmetric", beta=1e-3)
    assert float(out[True].max()) < 1e-4, out[True].values
    assert float(out[False].sel(layer="x->h1.W")) > 0.5, out[False].values


def test_graph_groups_by_layer_collect_couplings_into_each_layer():
    net = _free()
    assert graph_groups(net, "layer") == [
        ("h1", ["x->h1.W", "h1.b"]),
        ("y", ["h1->y.W", "h1->y.B", "y.b"]),
    ]
    assert graph_groups(net) == [(n, [n]) for n in net.parameters()]


def test_bad_input_on_graph_networks():
    net = _free()
    x, d = _batch(net.n_in, net.n_out)
    dyn = Dynamics(T=20, K=10)
    with pytest.raises(TypeError, match="compare takes an"):
        compare(object(), x, d, dyn)
    with pytest.raises(ValueError, match="rbp_method='iterative'"):
        compare(net, x, d, dyn, rbp_method="iterative")
    with pytest.raises(ValueError, match="complex128"):
        compare(as_complex(chain([4, 5, 3], activation="sigmoid")), x, d, dyn)
    with pytest.raises(ValueError, match="by='group'"):
        compare(net, x, d, dyn, by="group")
    with pytest.raises(ValueError, match="x must have shape"):
        compare(net, x[:, :3], d, dyn)
    with pytest.raises(ValueError, match="d must have shape"):
        compare(net, x, d[:, :2], dyn)
    with pytest.raises(ValueError, match="method='anderson'"):
        compare(net, x, d, Dynamics(method="anderson", K=5), references=("bptt",))


def test_compare_main_builds_graph_networks(tmp_path, capsys):
    out = tmp_path / "g.nc"
    argv = ["--sizes", "4,5,3,3", "--feedback", "free", "--skip", "0-2"]
    argv += ["--output-activation", "identity", "--betas", "0.01", "--T", "60", "-o", str(out)]
    assert compare_main([*argv, "--batch-size", "2"]) == 0
    text = capsys.readouterr().out
    assert "h2->y.B" in text and "x->h2.W" in text
    ds = open_netcdf(out)
    assert "h1->h2.B" in list(ds.layer.values) and "x->h2.W" in list(ds.layer.values)
    assert '"feedback": "free"' in ds.attrs["config"]
    assert compare_main(["--sizes", "4,5,3", "--feedback", "sideways"]) == 2
    assert "feedback" in capsys.readouterr().err
    assert compare_main(["--sizes", "4,5,3", "--skip", "0-1"]) == 2
    assert "adjacent" in capsys.readouterr().err
    assert (
        compare_main(
            [
                "--sizes",
                "4,5,3",
                "--by",
                "layer",
                "--rbp-method",
                "iterative",
                "--feedback",
                "random",
            ]
        )
        == 2
    )
    assert "rbp_method" in capsys.readouterr().err
