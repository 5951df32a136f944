"""Recurrent backprop and EP on a small conv network (conv -> max pool -> dense -> output).

Recurrent backprop (eqprop.graph.backprop, per-sample Jacobians with the max-pool
routing) against central differences of the loss at the free equilibrium; the symmetric
EP estimate at small beta against recurrent backprop (cosine >= 0.999 per parameter).
"""

import numpy as np
import pytest

from eqprop.graph import Coupling, GraphNetwork, Layer
from eqprop.graph import backprop as BP
from eqprop.graph import reference as R
from eqprop.graph.conv import ConvSpec


def conv_net(kind, pool, seed=0):
    rng = np.random.default_rng(seed)
    hshape = (3, 7, 7) if pool is None else (3, 3, 3)
    n_h = int(np.prod(hshape))
    return GraphNetwork(
        [
            Layer("x", role="input", shape=(2, 7, 7)),
            Layer("h", activation="sigmoid", bias=rng.normal(scale=0.2, size=3), shape=hshape),
            Layer("y", 3, role="output", activation="sigmoid", bias=rng.normal(scale=0.2, size=3)),
        ],
        [
            Coupling(
                "x",
                "h",
                rng.normal(scale=0.5, size=(3, 2, 3, 3)),
                type="conv2d",
                conv=ConvSpec(padding=1, pool=pool),
            ),
            Coupling("h", "y", rng.normal(scale=1.5 / np.sqrt(n_h), size=(n_h, 3))),
        ],
        kind=kind,
    )


def two_conv_net(seed=1):
    """Two conv layers in the state (the feedback of a conv coupling between state
    layers, with max pooling, enters the Jacobian)."""
    rng = np.random.default_rng(seed)
    return GraphNetwork(
        [
            Layer("x", role="input", shape=(1, 8, 8)),
            Layer("h1", activation="sigmoid", bias=rng.normal(scale=0.2, size=2), shape=(2, 4, 4)),
            Layer("h2", activation="sigmoid", bias=rng.normal(scale=0.2, size=3), shape=(3, 2, 2)),
            Layer("y", 2, role="output", activation="sigmoid", bias=np.zeros(2)),
        ],
        [
            Coupling(
                "x",
                "h1",
                rng.normal(scale=0.6, size=(2, 1, 3, 3)),
                type="conv2d",
                conv=ConvSpec(padding=1, pool="max"),
            ),
            Coupling(
                "h1",
                "h2",
                rng.normal(scale=0.4, size=(3, 2, 3, 3)),
                type="conv2d",
                conv=ConvSpec(padding=1, pool="max"),
            ),
            Coupling("h2", "y", rng.normal(scale=0.5, size=(12, 2))),
        ],
        kind="prototypical",
    )


EPS = {"hopfield": 0.5, "prototypical": 0.5}


def _equilibrium(net, x, d=None, beta=0.0, s0=None):
    s = net.zero_state(x.shape[0]) if s0 is None else np.array(s0)
    for _ in range(20000):
        g = R.fixed_point_map(net, x, s, d, beta, eps=EPS[net.kind])
        if np.max(np.abs(g - s)) <= 1e-14:
            return g
        s = g
    raise AssertionError("no equilibrium")


def _cosine(a, b):
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))


CASES = [("prototypical", "max"), ("hopfield", "max"), ("prototypical", "avg"), ("hopfield", None)]


def _net(case):
    return two_conv_net() if case == "two-conv" else conv_net(*case)


@pytest.mark.parametrize("case", [*CASES, "two-conv"])
def test_recurrent_backprop_matches_finite_differences(case):
    net = _net(case)
    rng = np.random.default_rng(3)
    x = rng.random((2, net.n_in))
    d = rng.random((2, net.n_out))
    s = _equilibrium(net, x)
    res = BP.recurrent_backprop(net, x, d, s, eps=EPS[net.kind])
    h = 1e-5
    for name, p in net.parameters().items():
        picks = [np.unravel_index(k, p.shape) for k in rng.choice(p.size, min(p.size, 8), False)]
        for idx in picks:
            vals = []
            for sign in (1, -1):
                q = np.array(p)
                q[idx] += sign * h
                other = net.with_parameters({name: q})
                vals.append(BP.loss(other, x, _equilibrium(other, x, s0=s), d))
            fd = (vals[0] - vals[1]) / (2 * h)
            assert abs(res.grads[name][idx] - fd) <= 1e-7 + 1e-5 * abs(fd), (name, idx)


@pytest.mark.parametrize("case", [*CASES, "two-conv"])
def test_symmetric_ep_estimate_matches_recurrent_backprop(case):
    net = _net(case)
    rng = np.random.default_rng(4)
    x = rng.random((3, net.n_in))
    d = rng.random((3, net.n_out))
    s = _equilibrium(net, x)
    rbp = BP.recurrent_backprop(net, x, d, s, eps=EPS[net.kind]).grads
    beta = 1e-3
    sp = _equilibrium(net, x, d, beta, s)
    sm = _equilibrium(net, x, d, -beta, s)
    gp = R.parameter_gradient(net, x, sp, d, beta)
    gm = R.parameter_gradient(net, x, sm, d, -beta)
    for name in rbp:
        ep = (gp[name] - gm[name]) / (2 * beta)
        assert _cosine(ep, rbp[name]) >= 0.999, name
        np.testing.assert_allclose(ep, rbp[name], rtol=0, atol=1e-5 * np.abs(rbp[name]).max())


def test_coupling_matrix_refuses_conv_couplings():
    with pytest.raises(ValueError, match=r"h1->h2.*coupling_matrices"):
        BP.coupling_matrix(two_conv_net())
