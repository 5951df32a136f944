"""Numerics of the general graph path against independent routes.

Central finite differences of F for the state and parameter gradients (skip couplings,
linear outputs, a readout fed by two layers), the complex step for holomorphic networks,
and a naive NumPy formula of the vector field with untied feedback written out here.
"""

import numpy as np
import pytest

from eqprop.graph import Coupling, GraphNetwork, Layer, chain
from eqprop.graph import reference as R


def _randomise_biases(net, rng, scale=0.5):
    for layer in net.layers:
        if layer.bias is not None:
            layer.bias[:] = rng.normal(scale=scale, size=layer.size)


def _skip_net(kind, cost, out_act, seed=0, dtype="float64"):
    net = chain(
        [5, 4, 3, 3],
        kind=kind,
        activation="tanh",
        output_activation=out_act,
        cost=cost,
        skip=[(0, 2), (1, 3)],
        seed=seed,
        dtype=dtype,
    )
    _randomise_biases(net, np.random.default_rng(seed + 10))
    return net


def _readout_net(kind, seed=0):
    """h1 and h2 both feed the softmax readout (a skip coupling into the readout)."""
    rng = np.random.default_rng(seed)
    layers = [
        Layer("x", 4, role="input"),
        Layer("h1", 5, activation="sigmoid", bias=rng.normal(size=5)),
        Layer("h2", 3, activation="shifted-sigmoid", bias=rng.normal(size=3)),
        Layer("o", 3, role="readout", bias=rng.normal(size=3)),
    ]
    couplings = [
        Coupling("x", "h1", rng.normal(size=(4, 5))),
        Coupling("h1", "h2", rng.normal(size=(5, 3))),
        Coupling("h2", "o", rng.normal(size=(3, 3))),
        Coupling("h1", "o", rng.normal(size=(5, 3))),
    ]
    return GraphNetwork(layers, couplings, kind=kind, cost="cross-entropy")


NETS = [
    ("skip-hop-sq-linear", lambda: _skip_net("hopfield", "squared", "identity")),
    ("skip-hop-ce-linear", lambda: _skip_net("hopfield", "cross-entropy", "identity")),
    ("skip-proto-sq-sigmoid", lambda: _skip_net("prototypical", "squared", "sigmoid")),
    ("skip-proto-ce-linear", lambda: _skip_net("prototypical", "cross-entropy", "identity")),
    ("readout-hop", lambda: _readout_net("hopfield")),
    ("readout-proto", lambda: _readout_net("prototypical")),
]


def _batch(net, seed=3, B=3):
    rng = np.random.default_rng(seed)
    x = rng.random((B, net.n_in))
    s = rng.normal(0.3, 0.8, size=(B, net.n_state))
    d = np.eye(net.n_out)[rng.integers(0, net.n_out, B)]
    return x, s, d


@pytest.mark.parametrize(("label", "make"), NETS, ids=[n[0] for n in NETS])
@pytest.mark.parametrize("beta", [0.0, 0.8])
def test_state_gradient_matches_central_differences(label, make, beta):
    net = make()
    x, s, d = _batch(net)
    g = R.state_gradient(net, x, s, d, beta)
    h = 1e-6
    fd = np.empty_like(s)
    for j in range(net.n_state):
        sp, sm = s.copy(), s.copy()
        sp[:, j] += h
        sm[:, j] -= h
        fd[:, j] = (R.energy(net, x, sp, d, beta) - R.energy(net, x, sm, d, beta)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize(("label", "make"), NETS, ids=[n[0] for n in NETS])
def test_parameter_gradient_matches_central_differences(label, make):
    net = make()
    x, s, d = _batch(net, seed=4)
    beta = 0.7
    G = R.parameter_gradient(net, x, s, d, beta)
    params = net.parameters()
    assert set(G) == set(params)
    h = 1e-6
    for name, p in params.items():
        fd = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            ep = R.energy(net, x, s, d, beta).mean()
            p[idx] = old - h
            em = R.energy(net, x, s, d, beta).mean()
            p[idx] = old
            fd[idx] = (ep - em) / (2 * h)
        np.testing.assert_allclose(G[name], fd, rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
@pytest.mark.parametrize("cost", ["squared", "cross-entropy"])
def test_complex_states_holomorphic_gradient_obeys_cauchy_riemann(kind, cost):
    """For holomorphic F, (F(s + h e) - F(s - h e)) / 2h is the same complex number for a
    real step h and an imaginary step i h (Cauchy-Riemann), and equals dF/ds."""
    net = _skip_net(kind, cost, "identity", dtype="complex128")
    net.layer("h1").activation = "sigmoid"  # a mix of holomorphic activations
    rng = np.random.default_rng(5)
    x, s_re, d = _batch(net, seed=5)
    s = s_re + 0.3j * rng.normal(size=s_re.shape)
    beta = 0.5 - 0.2j
    g = R.state_gradient(net, x, s, d, beta)
    assert g.dtype == np.complex128 and np.abs(g.imag).max() > 1e-3
    for step in (1e-6, 1e-6j):
        fd = np.empty_like(s)
        for j in range(net.n_state):
            sp, sm = s.copy(), s.copy()
            sp[:, j] += step
            sm[:, j] -= step
            fd[:, j] = (R.energy(net, x, sp, d, beta) - R.energy(net, x, sm, d, beta)) / (2 * step)
        np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-8)
    G = R.parameter_gradient(net, x, s, d, beta)
    W = net.coupling("h1->y").W
    old = W[1, 2]
    W[1, 2] = old + 1e-6j
    ep = R.energy(net, x, s, d, beta).mean()
    W[1, 2] = old - 1e-6j
    em = R.energy(net, x, s, d, beta).mean()
    W[1, 2] = old
    np.testing.assert_allclose(G["h1->y.W"][1, 2], (ep - em) / 2e-6j, rtol=1e-7)


# --------------------------------------------------------------------- untied feedback
def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _naive_field(net, x, s, d, beta, eps, nudge):
    """ds/dt written out for the 5-4-3-3 skip chain with tanh hidden, sigmoid output.

    Layers x -> h1 -> h2 -> y plus skips x -> h2 and h1 -> y; F_c(a) is what coupling c
    feeds back: W^T, gamma W^T or B.
    """
    c = {cc.name: cc for cc in net.couplings}

    def fb(name, a):
        cc = c[name]
        if cc.feedback == "tied":
            return a @ cc.W.T
        if cc.feedback == "scaled":
            return cc.gamma * a @ cc.W.T
        return a @ cc.B

    s1, s2, s3 = s[:, :4], s[:, 4:7], s[:, 7:10]
    b1, b2, b3 = (net.layer(n).bias for n in ("h1", "h2", "y"))
    if net.kind == "hopfield":
        a1, a2, a3 = np.tanh(s1), np.tanh(s2), _sig(s3)
    else:
        a1, a2, a3 = s1, s2, s3
    u1 = x @ c["x->h1"].W + b1 + fb("h1->h2", a2) + fb("h1->y", a3)
    u2 = a1 @ c["h1->h2"].W + x @ c["x->h2"].W + b2 + fb("h2->y", a3)
    u3 = a2 @ c["h2->y"].W + a1 @ c["h1->y"].W + b3
    if net.kind == "hopfield":
        f1 = -(s1 - (1 - np.tanh(s1) ** 2) * u1)
        f2 = -(s2 - (1 - np.tanh(s2) ** 2) * u2)
        f3 = -(s3 - _sig(s3) * (1 - _sig(s3)) * u3 - beta * (d - s3))
        return np.concatenate([f1, f2, f3], axis=1)
    n3 = np.tanh(u2)
    if nudge == "inside":
        y = _sig(u3 + beta * (d - s3))
    else:
        y = _sig(u3) + beta * (d - s3)
    return np.concatenate([np.tanh(u1) - s1, n3 - s2, y - s3], axis=1)


@pytest.mark.parametrize("feedback", ["scaled", "free", "random"])
@pytest.mark.parametrize(
    ("kind", "nudge"),
    [("hopfield", "inside"), ("prototypical", "inside"), ("prototypical", "outside")],
)
def test_untied_vector_field_equals_naive_formula(feedback, kind, nudge):
    net = chain(
        [5, 4, 3, 3],
        kind=kind,
        activation="tanh",
        output_activation="sigmoid",
        feedback=feedback,
        gamma=0.3 if feedback == "scaled" else 1.0,
        skip=[(0, 2), (1, 3)],
        seed=7,
    )
    rng = np.random.default_rng(8)
    _randomise_biases(net, rng)
    for cc in net.couplings:
        if cc.feedback == "free":
            cc.B[...] = rng.normal(size=cc.B.shape)  # a learned B is no longer W^T
    x, s, d = _batch(net, seed=9)
    beta, eps = 0.6, 0.4
    want = _naive_field(net, x, s, d, beta, eps, nudge)
    np.testing.assert_allclose(
        R.vector_field(net, x, s, d, beta, nudge=nudge), want, rtol=1e-13, atol=1e-13
    )
    g = R.fixed_point_map(net, x, s, d, beta, eps=eps, nudge=nudge)
    step = s + eps * want if kind == "hopfield" else want + s
    np.testing.assert_allclose(g, step, rtol=1e-13, atol=1e-13)
