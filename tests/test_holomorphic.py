"""Holomorphic EP (Laborieux & Zenke 2022) on graph networks: eqprop.graph.holomorphic.

Checked against recurrent backprop at the same free state (exact gradient), the centered
real-beta estimate written here with the reference map, and the Fourier aliasing of a
polynomial written here.
"""

import itertools

import numpy as np
import pytest

from eqprop.graph import chain
from eqprop.graph import holomorphic as H
from eqprop.graph import reference as R
from eqprop.graph.backprop import free_equilibrium, recurrent_backprop

NETS = {
    "hopfield-sigmoid": dict(activation="sigmoid"),
    "prototypical-sigmoid": dict(activation="sigmoid", kind="prototypical"),
    "cross-entropy-linear-output": dict(
        activation="sigmoid", output_activation="identity", cost="cross-entropy"
    ),
}


def _problem(case="hopfield-sigmoid"):
    net = chain([4, 6, 3], seed=1, **NETS[case])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    d = rng.uniform(0.0, 1.0, size=(3, 3))
    if net.cost == "cross-entropy":
        d = d / d.sum(axis=1, keepdims=True)
    s = free_equilibrium(net, x)
    ref = recurrent_backprop(net, x, d, s).grads
    return net, x, d, s, ref


def _picard(net, x, d, beta, s0, atol=1e-14, count=False):
    """A plain nudged relaxation written here (independent of H.relax)."""
    s = np.array(s0)
    for it in range(1, 100001):
        g = R.fixed_point_map(net, x, s, d, beta)
        done = np.max(np.abs(g - s)) <= atol
        s = g
        if done:
            return (s, it) if count else s
    raise AssertionError("the test's relaxation did not converge")


@pytest.mark.parametrize("case", ["hopfield-sigmoid", "prototypical-sigmoid"])
def test_error_falls_geometrically_with_points(case):
    net, x, d, s, ref = _problem(case)
    Ns = (2, 4, 8, 16, 32)
    err = {
        n: H.relative_error(H.holomorphic_ep(net, x, d, points=n, beta=0.5, s_free=s).grads, ref)
        for n in Ns
    }
    floor = 1e-12
    for a, b in itertools.pairwise(Ns):
        if err[a] < floor:
            break
        assert err[b] < err[a]
        if err[b] > floor:  # doubling N about squares the error (aliasing of c_{N+1})
            assert 1.5 < np.log(err[b]) / np.log(err[a]) < 2.7, (a, err[a], b, err[b])
    assert min(err.values()) < 1e-8
    assert err[2] > 1e-3  # finite |beta|: the centered estimate is visibly biased


def test_below_1e8_with_a_readout_cost():
    net, x, d, s, ref = _problem("cross-entropy-linear-output")
    est = H.holomorphic_ep(net, x, d, points=32, beta=0.5, s_free=s).grads
    assert H.relative_error(est, ref) < 1e-8


def test_two_points_equal_the_centered_real_estimate():
    net, x, d, s, _ = _problem()
    beta = 0.5
    sp = _picard(net, x, d, beta, s)
    sm = _picard(net, x, d, -beta, s)
    gp = R.parameter_gradient(net, x, sp, d, beta)
    gm = R.parameter_gradient(net, x, sm, d, -beta)
    centered = {k: (gp[k] - gm[k]) / (2 * beta) for k in gp}
    for start in H.START_MODES:
        est = H.holomorphic_ep(net, x, d, points=2, beta=beta, s_free=s, start=start)
        assert H.relative_error(est.grads, centered) < 1e-12
        assert est.info["max_imag"] == 0.0
        assert all(v.dtype == np.float64 for v in est.grads.values())
    assert H.relative_error(H.real_beta_ep(net, x, d, beta=beta, s_free=s), centered) < 1e-12


def test_one_sided_real_estimate():
    net, x, d, s, _ = _problem()
    beta = 0.3
    sp = _picard(net, x, d, beta, s)
    gp = R.parameter_gradient(net, x, sp, d, beta)
    g0 = R.parameter_gradient(net, x, s, d, 0.0)
    want = {k: (gp[k] - g0[k]) / beta for k in gp}
    got = H.real_beta_ep(net, x, d, beta=beta, s_free=s, estimator="one-sided")
    assert H.relative_error(got, want) < 1e-12


def test_both_starting_modes_give_the_same_estimate():
    net, x, d, s, _ = _problem()
    a = H.holomorphic_ep(net, x, d, points=6, beta=0.5, s_free=s, start="previous")
    b = H.holomorphic_ep(net, x, d, points=6, beta=0.5, s_free=s, start="free")
    assert H.relative_error(a.grads, b.grads) < 1e-11
    assert [p.start for p in a.phases] == ["free"] + ["previous"] * 5
    assert [p.start for p in b.phases] == ["free"] * 6
    # the phases really start where they say: relaxing phase k here from phase k-1's
    # state (previous) or from the free state takes the iterations each mode reports
    cnet = H.as_complex(net)
    n_prev, n_free = [], []
    for k in range(1, 6):
        sk, n = _picard(cnet, x, d, a.phases[k].beta, a.states[k - 1], atol=1e-13, count=True)
        assert np.max(np.abs(sk - a.states[k])) < 1e-12
        n_prev.append(n)
        n_free.append(_picard(cnet, x, d, b.phases[k].beta, s, atol=1e-13, count=True)[1])
    assert n_prev != n_free
    assert (a.info["iterations"][1:], b.info["iterations"][1:]) == (n_prev, n_free)
    assert a.info["max_imag"] < 1e-12


def test_combine_aliases_the_taylor_series():
    """For g(beta) = sum_n c_n beta^n, the N-point estimate is c_1 + c_{N+1} r^N + ..."""
    rng = np.random.default_rng(3)
    c = rng.normal(size=(12, 2, 3))
    r = 0.7

    def g(beta):
        return {"w": sum(c[n] * beta**n for n in range(12))}

    for n in (2, 3, 4, 5):
        phases = H.plan(n, r)
        est = H.combine(phases, [g(p.beta) for p in phases], g(0.0))["w"]
        want = sum(c[m] * r ** (m - 1) for m in range(1, 12) if m % n == 1)
        np.testing.assert_allclose(est, want, rtol=1e-12, atol=1e-12)


def test_circle_points():
    b = H.circle_points(8, 0.5)
    np.testing.assert_allclose(np.abs(b), 0.5, rtol=1e-15)
    np.testing.assert_allclose(b**8, 0.5**8, atol=1e-15)
    assert b[0] == 0.5 and b[2] == 0.5j and b[4] == -0.5 and b[6] == -0.5j
    assert list(H.circle_points(2, 1.0)) == [1.0, -1.0]


def test_complex_network_gives_complex_estimate():
    net, x, d, s, ref = _problem()
    cnet = H.as_complex(net)
    assert cnet.dtype == np.complex128
    est = H.holomorphic_ep(cnet, x, d, points=16, beta=0.5, s_free=s).grads
    assert all(v.dtype == np.complex128 for v in est.values())
    assert H.relative_error({k: v.real for k, v in est.items()}, ref) < 1e-4


def test_bad_input():
    net, x, d, s, _ = _problem()
    with pytest.raises(ValueError, match="'hardsigmoid', which is not holomorphic"):
        H.holomorphic_ep(chain([4, 6, 3]), x, d, points=4, beta=0.5)
    for points in (1, 0, -2, 2.5, True):
        with pytest.raises(ValueError, match="points must be an integer >= 2"):
            H.holomorphic_ep(net, x, d, points=points, beta=0.5)
    for beta in (0.0, -0.5, np.nan, np.inf):
        with pytest.raises(ValueError, match=r"\|beta\| must be finite and > 0"):
            H.holomorphic_ep(net, x, d, points=4, beta=beta)
    with pytest.raises(ValueError, match="unknown start 'zero'"):
        H.holomorphic_ep(net, x, d, points=4, beta=0.5, start="zero")
    with pytest.raises(ValueError, match="feedback 'free'"):
        H.holomorphic_ep(
            chain([4, 6, 3], activation="sigmoid", feedback="free"), x, d, points=4, beta=0.5
        )
    with pytest.raises(ValueError, match="unknown estimator"):
        H.real_beta_ep(net, x, d, beta=0.5, estimator="symmetric-ish")
    with pytest.raises(ValueError, match="no fixed point"):
        H.relax(H.as_complex(net), x, d, 0.5j, s0=s, max_iter=3)
