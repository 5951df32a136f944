"""Recurrent backprop on graph networks against central finite differences of the loss at
the equilibrium (re-solved for every perturbed parameter), including untied feedback
(non-symmetric Jacobian), skip couplings and linear outputs."""

import numpy as np
import pytest

from eqprop.graph import Coupling, GraphNetwork, Layer, chain
from eqprop.graph import backprop as BP
from eqprop.graph import reference as R


def _biases(net, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.bias is not None:
            layer.bias[:] = rng.normal(scale=scale, size=layer.size)
    return net


def _untied(feedback, kind="hopfield"):
    net = chain(
        [4, 5, 3, 3],
        kind=kind,
        activation="sigmoid",
        feedback=feedback,
        gamma=0.5 if feedback == "scaled" else 1.0,
        seed=1,
    )
    rng = np.random.default_rng(2)
    for c in net.couplings:
        if c.feedback == "free":
            c.B[...] = rng.uniform(-0.7, 0.7, size=c.B.shape)  # far from W^T
    return _biases(net, 3)


def _readout_skip():
    rng = np.random.default_rng(4)
    layers = [
        Layer("x", 4, role="input"),
        Layer("h1", 5, activation="tanh", bias=rng.normal(scale=0.3, size=5)),
        Layer("h2", 3, activation="sigmoid", bias=rng.normal(scale=0.3, size=3)),
        Layer("o", 3, role="readout", bias=rng.normal(scale=0.3, size=3)),
    ]
    couplings = [
        Coupling("x", "h1", rng.uniform(-0.6, 0.6, size=(4, 5))),
        Coupling(
            "h1",
            "h2",
            rng.uniform(-0.6, 0.6, size=(5, 3)),
            "random",
            B=rng.uniform(-0.6, 0.6, size=(3, 5)),
        ),
        Coupling("h2", "o", rng.uniform(-0.6, 0.6, size=(3, 3))),
        Coupling("h1", "o", rng.uniform(-0.6, 0.6, size=(5, 3))),
    ]
    return GraphNetwork(layers, couplings, kind="hopfield", cost="cross-entropy")


NETS = {
    "free-hopfield": lambda: _untied("free"),
    "random-hopfield": lambda: _untied("random"),
    "scaled-prototypical": lambda: _untied("scaled", "prototypical"),
    "free-prototypical": lambda: _untied("free", "prototypical"),
    "skip-tied-linear-out": lambda: _biases(
        chain(
            [4, 5, 3, 3],
            activation="tanh",
            output_activation="identity",
            skip=[(0, 2), (1, 3)],
            gain=0.6,
        ),
        5,
    ),
    "skip-free-hardsigmoid-linear-out": lambda: _biases(
        chain(
            [4, 5, 3, 3],
            activation="hardsigmoid",
            output_activation="identity",
            feedback="free",
            skip=[(1, 3)],
            gain=0.8,
            seed=6,
        ),
        6,
        scale=0.5,
    ),
    "p-mlp-ce-linear-out": lambda: _biases(
        chain(
            [4, 5, 3, 3],
            kind="prototypical",
            activation="sigmoid",
            output_activation="identity",
            cost="cross-entropy",
            skip=[(1, 3)],
            gain=0.8,
        ),
        7,
    ),
    "readout-skip-random": _readout_skip,
}


def _fd_grads(net, x, d, s_star, eps, h=1e-6):
    out = {}
    for name, p in net.parameters().items():
        fd = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            vals = []
            for sign in (1, -1):
                p[idx] = old + sign * h
                s = BP.free_equilibrium(net, x, eps=eps, s0=s_star, atol=1e-14)
                vals.append(BP.loss(net, x, s, d))
            p[idx] = old
            fd[idx] = (vals[0] - vals[1]) / (2 * h)
        out[name] = fd
    return out


@pytest.mark.parametrize("name", list(NETS))
def test_recurrent_backprop_matches_finite_differences_at_equilibrium(name):
    net = NETS[name]()
    rng = np.random.default_rng(8)
    x = rng.random((3, net.n_in))
    d = np.eye(net.n_out)[rng.integers(0, net.n_out, 3)]
    eps = 0.7
    s_star = BP.free_equilibrium(net, x, eps=eps, atol=1e-14)
    res = BP.recurrent_backprop(net, x, d, s_star, eps=eps)
    assert res.info["adjoint_residual"] < 1e-10
    fd = _fd_grads(net, x, d, s_star, eps)
    assert set(res.grads) == set(fd)
    for k in fd:
        np.testing.assert_allclose(res.grads[k], fd[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_untied_jacobian_is_not_symmetric_and_matches_finite_differences():
    net = NETS["free-hopfield"]()
    rng = np.random.default_rng(9)
    x = rng.random((2, net.n_in))
    s = rng.normal(0.4, 0.5, size=(2, net.n_state))
    J = BP.jacobian(net, x, s, eps=0.5)
    h = 1e-6
    fd = np.empty_like(J)
    for i in range(net.n_state):
        sp, sm = s.copy(), s.copy()
        sp[:, i] += h
        sm[:, i] -= h
        fd[:, :, i] = (
            R.fixed_point_map(net, x, sp, eps=0.5) - R.fixed_point_map(net, x, sm, eps=0.5)
        ) / (2 * h)
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-9)
    M = BP.coupling_matrix(net)
    assert np.abs(M - M.T).max() > 0.1
    tied = BP.coupling_matrix(_biases(chain([4, 5, 3, 3], activation="sigmoid", seed=1), 3))
    np.testing.assert_array_equal(tied, tied.T)


def test_rbp_refuses_a_state_that_is_not_a_fixed_point():
    net = NETS["free-hopfield"]()
    x = np.ones((1, 4))
    with pytest.raises(ValueError, match="not a fixed point"):
        BP.recurrent_backprop(net, x, np.eye(3)[:1], net.zero_state(1))
