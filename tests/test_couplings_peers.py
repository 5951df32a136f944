"""Peer models that the chain could not express, checked against their papers' equations
written out in NumPy here.

* Scellier, Ernoult, Kendall & Kumar (2023, NeurIPS, "Energy-based learning algorithms
  for analog computing: a comparative study"): the deep Hopfield network with hard-sigmoid
  hidden layers and a **linear output layer**,
  E(s) = sum_k 1/2 |s_k|^2 - sum_k s_{k-1} W_k s_k - sum_k b_k s_k (s_0 = x), hidden
  states constrained to [0, 1]; its fixed-point sweep sets each layer to the exact
  minimiser of E given its neighbours, s_k <- clip(b_k + s_{k-1} W_k + s_{k+1} W_{k+1}^T)
  (hidden) and s_L <- b_L + s_{L-1} W_L (linear output), synchronously or by parity
  (odd layers, then even layers).
* Laborieux, Ernoult, Scellier, Bengio, Grollier & Querlioz (2021, Front. Neurosci.
  15:633674), P_MLP with the cross-entropy criterion: the primitive function
  Phi = sum_k s_k . (s_{k-1} W_k + b_k) - beta CE(s_L, d) with CE on the softmax of the
  **linear output layer's state**; the dynamics s_k <- sigma(dPhi/ds_k) for hidden layers
  and s_L <- dPhi/ds_L for the output (their code's ``neurons[-1] = grads[-1]``).
"""

import numpy as np

from eqprop.graph import Coupling, GraphNetwork, Layer
from eqprop.graph import reference as R


def _dhn(sizes=(6, 5, 4, 3), seed=0):
    rng = np.random.default_rng(seed)
    names = ["x"] + [f"h{i}" for i in range(1, len(sizes) - 1)] + ["y"]
    layers = [Layer("x", sizes[0], role="input")]
    for i in range(1, len(sizes)):
        last = i == len(sizes) - 1
        layers.append(
            Layer(
                names[i],
                sizes[i],
                role="output" if last else "hidden",
                activation="identity" if last else "hardsigmoid",
                box=None if last else (0.0, 1.0),
                bias=rng.normal(scale=0.3, size=sizes[i]),
            )
        )
    couplings = [
        Coupling(names[i - 1], names[i], rng.normal(scale=0.5, size=(sizes[i - 1], sizes[i])))
        for i in range(1, len(sizes))
    ]
    return GraphNetwork(layers, couplings, kind="hopfield", cost="squared")


def _dhn_params(net):
    W = [c.W for c in net.couplings]
    b = [la.bias for la in net.layers[1:]]
    return W, b


def _dhn_state(net, rng, batch=4):
    x = rng.random((batch, net.n_in))
    sizes = [la.size for la in net.state_layers]
    parts = [rng.random((batch, n)) for n in sizes[:-1]] + [rng.normal(size=(batch, sizes[-1]))]
    return x, parts


def test_scellier2023_dhn_energy_with_linear_output():
    net = _dhn()
    W, b = _dhn_params(net)
    rng = np.random.default_rng(1)
    x, parts = _dhn_state(net, rng)
    d = np.eye(3)[rng.integers(0, 3, 4)]
    s_list = [x, *parts]
    E = sum(0.5 * np.sum(s**2, axis=1) for s in parts)
    E -= sum(np.sum((s_list[k - 1] @ W[k - 1]) * s_list[k], axis=1) for k in range(1, 4))
    E -= sum(s_list[k] @ b[k - 1] for k in range(1, 4))
    beta = 0.5
    F = E + beta * 0.5 * np.sum((parts[-1] - d) ** 2, axis=1)
    np.testing.assert_allclose(R.energy(net, x, np.hstack(parts), d, beta), F, rtol=1e-13)


def _dhn_layer_update(W, b, s_list, k, L):
    u = b[k - 1] + s_list[k - 1] @ W[k - 1]
    if k < L:
        u = u + s_list[k + 1] @ W[k].T
        return np.clip(u, 0.0, 1.0)
    return u  # the linear output: no clip


def test_scellier2023_dhn_one_fixed_point_sweep():
    net = _dhn()
    W, b = _dhn_params(net)
    rng = np.random.default_rng(2)
    x, parts = _dhn_state(net, rng)
    s = np.hstack(parts)
    L = 3
    # synchronous sweep = the hopfield map at eps = 1 (the exact layer minimiser)
    s_list = [x, *parts]
    want = np.hstack([_dhn_layer_update(W, b, s_list, k, L) for k in range(1, L + 1)])
    np.testing.assert_allclose(R.fixed_point_map(net, x, s, eps=1.0), want, rtol=1e-13, atol=1e-14)
    # parity sweep (asynchronous): layers 1 and 3 from s, then layer 2 from the result
    odd = [_dhn_layer_update(W, b, s_list, k, L) for k in (1, 3)]
    s_half = [x, odd[0], parts[1], odd[1]]
    even = _dhn_layer_update(W, b, s_half, 2, L)
    want = np.hstack([odd[0], even, odd[1]])
    off = net.offsets
    got = s.copy()
    g1 = R.fixed_point_map(net, x, got, eps=1.0)
    for name in ("h1", "y"):
        got[:, slice(*off[name])] = g1[:, slice(*off[name])]
    g2 = R.fixed_point_map(net, x, got, eps=1.0)
    got[:, slice(*off["h2"])] = g2[:, slice(*off["h2"])]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


def _p_mlp(sizes=(6, 5, 4, 3), seed=3, act="sigmoid"):
    rng = np.random.default_rng(seed)
    names = ["x"] + [f"h{i}" for i in range(1, len(sizes) - 1)] + ["y"]
    layers = [Layer("x", sizes[0], role="input")]
    for i in range(1, len(sizes)):
        last = i == len(sizes) - 1
        layers.append(
            Layer(
                names[i],
                sizes[i],
                role="output" if last else "hidden",
                activation="identity" if last else act,
                bias=rng.normal(scale=0.3, size=sizes[i]),
            )
        )
    couplings = [
        Coupling(names[i - 1], names[i], rng.normal(scale=0.5, size=(sizes[i - 1], sizes[i])))
        for i in range(1, len(sizes))
    ]
    return GraphNetwork(layers, couplings, kind="prototypical", cost="cross-entropy")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_laborieux2021_p_mlp_cross_entropy_on_linear_output():
    net = _p_mlp()
    W = [c.W for c in net.couplings]
    b = [la.bias for la in net.layers[1:]]
    rng = np.random.default_rng(4)
    x = rng.random((5, 6))
    parts = [rng.random((5, 5)), rng.random((5, 4)), rng.normal(size=(5, 3))]
    s = np.hstack(parts)
    d = np.eye(3)[rng.integers(0, 3, 5)]
    beta = 0.3
    sl = [x, *parts]
    phi = sum(np.sum(sl[k] * (sl[k - 1] @ W[k - 1] + b[k - 1]), axis=1) for k in range(1, 4))
    p = _softmax(parts[-1])
    ce = -np.sum(d * np.log(p), axis=1)
    # F = -Phi_beta with Phi_beta = Phi - beta CE
    np.testing.assert_allclose(R.energy(net, x, s, d, beta), -(phi - beta * ce), rtol=1e-13)
    # one step: hidden s_k <- sigma(dPhi_beta/ds_k), output s_L <- dPhi_beta/ds_L
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    g1 = sig(x @ W[0] + b[0] + parts[1] @ W[1].T)
    g2 = sig(parts[0] @ W[1] + b[1] + parts[2] @ W[2].T)
    g3 = parts[1] @ W[2] + b[2] - beta * (p - d)
    want = np.hstack([g1, g2, g3])
    np.testing.assert_allclose(R.fixed_point_map(net, x, s, d, beta), want, rtol=1e-13, atol=1e-14)
    # the EP update's ingredient: dF/dW_L = -s_{L-1}^T s_L / batch, no readout term
    G = R.parameter_gradient(net, x, s, d, beta)
    np.testing.assert_allclose(G["h2->y.W"], -parts[1].T @ parts[2] / 5, rtol=1e-13)
    np.testing.assert_allclose(R.output(net, x, s), p, rtol=1e-13)
