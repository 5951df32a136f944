"""Holomorphic EP on conv networks (#14): complex states through ``conv2d`` couplings with
average pooling (or none), in the NumPy reference and the Numba graph map.

Checked against: the NumPy reference map (the compiled complex map, complex nudges);
the symmetric (centered) EP step with real nudges (N = 2 from the free state is that
step); recurrent backprop at the free fixed point (the estimate's error falls with N,
Laborieux & Zenke 2022). A max pool (its argmax needs an order, which complex states
do not have) is refused, naming the coupling and its layer.
"""

from __future__ import annotations

import numpy as np
import pytest

import eqprop as E
from eqprop.graph import backprop as BP
from eqprop.graph import holomorphic as H
from eqprop.graph import kernels as GK
from eqprop.graph import reference as R
from eqprop.graph.build import conv_chain
from eqprop.graph.model import GraphNetwork
from eqprop.presets import get_preset
from eqprop.rules.holomorphic import HolomorphicEP
from eqprop.train import TrainConfig, Trainer


def _net(pool="avg", kind="hopfield", activation="sigmoid", feedback="tied", seed=1):
    """x (1x6x5) -conv-> h1 (2x6x5) -conv, pool-> h2 -dense-> y (3); no boxes."""
    return conv_chain(
        (1, 6, 5),
        [2, 3],
        3,
        kernels=3,
        paddings=1,
        pool=pool,
        kind=kind,
        activation=activation,
        feedback=feedback,
        seed=seed,
    )


def _data(net, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(batch, net.n_in)), rng.uniform(size=(batch, net.n_out))


@pytest.mark.parametrize("pool", ["avg", None])
@pytest.mark.parametrize(
    "kind, activation, feedback",
    [
        ("hopfield", "sigmoid", "tied"),
        ("prototypical", "tanh", "tied"),
        ("hopfield", "tanh", "random"),
    ],
)
def test_complex_numba_map_equals_the_reference_map(pool, kind, activation, feedback):
    """The compiled map of a complex128 conv net (avg pooling or none, any feedback) at a
    complex state with a complex nudge equals the NumPy reference map to 1e-13."""
    cnet = H.as_complex(_net(pool, kind, activation, feedback), form="generalized")
    x, d = _data(cnet, batch=3)
    rng = np.random.default_rng(4)
    s = rng.normal(scale=0.4, size=(3, cnet.n_state)) + 0.3j * rng.normal(size=(3, cnet.n_state))
    beta = 0.3 * np.exp(0.7j)
    ref = R.fixed_point_map(cnet, x, s, d, beta)
    args = GK.make_args(cnet, x.astype(complex), beta=beta, d=d.astype(complex))
    out = np.empty_like(ref)
    GK.fixed_point_map(s, out, args)
    assert out.dtype == np.complex128
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)
    assert np.abs(out.imag).max() > 1e-3  # the complex part is carried, not dropped


def test_two_points_from_the_free_state_is_the_symmetric_ep_step():
    """N = 2 at |beta| (phases from the free state) is [g(b) - g(-b)] / 2b, the centered
    estimate of Laborieux et al. 2021, on a conv net with average pooling (1e-12)."""
    net = _net()
    x, d = _data(net)
    s = BP.free_equilibrium(net, x)
    h = H.holomorphic_ep(net, x, d, points=2, beta=0.05, s_free=s, start="free")
    c = H.real_beta_ep(net, x, d, beta=0.05, s_free=s)
    assert sorted(h.grads) == sorted(c) == sorted(net.parameters())
    for k in c:
        np.testing.assert_allclose(h.grads[k], c[k], rtol=0, atol=1e-12, err_msg=k)
    assert h.info["max_imag"] < 1e-12


def test_estimate_converges_to_recurrent_backprop_with_points():
    """At |beta| = 0.05 the error against RBP falls geometrically with N (about squared
    per doubling: aliasing of the Taylor term c_{N+1}) to below 1e-9 at N = 8."""
    net = _net()
    x, d = _data(net)
    s = BP.free_equilibrium(net, x)
    exact = BP.recurrent_backprop(net, x, d, s).grads
    err = {
        n: H.relative_error(
            H.holomorphic_ep(net, x, d, points=n, beta=0.05, s_free=s, start="free").grads, exact
        )
        for n in (2, 4, 8)
    }
    assert err[2] > err[4] > err[8], err
    assert 1e-4 < err[2] < 1e-2 and err[8] < 1e-9, err


def test_generalized_form_on_conv_couplings():
    """The generalized estimator (Laborieux & Zenke 2024) takes conv couplings: on a tied
    net it tends to RBP as N grows, and on a free net at B = W (the tied dynamics) it
    splits the tied W term into its forward (W) and feedback (B) halves."""
    net = _net()
    x, d = _data(net)
    s = BP.free_equilibrium(net, x)
    exact = BP.recurrent_backprop(net, x, d, s).grads
    g = H.holomorphic_ep(net, x, d, points=8, beta=0.05, s_free=s, start="free", form="generalized")
    assert H.relative_error(g.grads, exact) < 1e-8
    free = _net(feedback="free")  # B starts equal to W (W^T for the dense coupling)
    gf = H.holomorphic_ep(
        free, x, d, points=8, beta=0.05, s_free=s, start="free", form="generalized"
    ).grads
    cv = "h1->h2"
    np.testing.assert_allclose(gf[f"{cv}.W"] + gf[f"{cv}.B"], g.grads[f"{cv}.W"], atol=1e-12)
    assert np.abs(gf[f"{cv}.B"]).max() > 1e-6


def test_rule_on_a_conv_net_equals_the_numpy_estimator():
    """HolomorphicEP (free phase real, N complex phases through solvers on the Numba
    complex map with conv records) equals the NumPy estimator at the rule's free state."""
    net = _net()
    x, d = _data(net, batch=3)
    dyn = E.Dynamics(method="anderson", fixed_steps=False, atol=1e-13, max_iter=5000, eps=0.5)
    step = HolomorphicEP(beta=0.3, points=4, start="free").estimate(net, x, d, dyn)
    ref = H.holomorphic_ep(net, x, d, points=4, beta=0.3, start="free", s_free=step.free.state)
    assert sorted(step.gradient) == sorted(ref.grads)
    for k in ref.grads:
        np.testing.assert_allclose(step.gradient[k], ref.grads[k], rtol=1e-9, atol=1e-12)
    assert step.phases["nudged1"].state.dtype == np.complex128


def test_max_pooling_is_refused_naming_the_layer():
    net = _net(pool="max")
    with pytest.raises(ValueError, match=r"coupling 'x->h1' max-pools into layer 'h1'") as info:
        H.check_holomorphic(net)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="max-pools"):
        H.as_complex(net)
    with pytest.raises(ValueError, match=r"x->h1.*max pooling is undefined for dtype complex128"):
        GraphNetwork(net.layers, net.couplings, net.kind, net.cost, "complex128")


def _config(**changes):
    settings = dict(get_preset("digits").config.to_flat())
    settings.update(
        architecture="1x8x8-c3k3p1-c4k3p1-ap2-10",
        lrs=(0.2, 0.1, 0.05),
        kind="hopfield",
        activation="sigmoid",
        rule="holomorphic",
        points=2,
        T=12,
        K=4,
        beta=0.5,
        epochs=1,
        limit=40,
    )
    settings.update(changes)
    return TrainConfig.from_dict(settings).validate()


def test_trainer_runs_holomorphic_ep_on_a_conv_net():
    res = Trainer(_config(), quiet=True).run()
    assert np.isfinite(res.history["train_loss"].values).all()


def test_config_refuses_a_max_pooled_conv_net_for_rule_holomorphic():
    with pytest.raises(ValueError, match=r"layer 'h2' is max-pooled.*ap2 instead of p2") as info:
        _config(architecture="1x8x8-c3k3p1-c4k3p1-p2-10")
    assert "\n" not in str(info.value)
