"""Smooth-activation kernels (sigmoid, shifted sigmoid, tanh) against NumPy written here.

The chain kernels evaluate smooth activations and their derivatives in row loops, with a
vectorised float32 exponential when the network is float32 (issue #11). These tests
compute one step of the dynamics (map, vector field, dF/ds), the activations, and a
fused phase with NumPy in float64 from the same inputs, straight from the energy /
primitive-function formulas, and require float64 kernels to agree to 1e-12 and float32
kernels to within float32 rounding (a few ulp of the values involved).
"""

import numpy as np
import pytest

import eqprop as E
from eqprop import kernels as K

SMOOTH = ("sigmoid", "shifted-sigmoid", "tanh")
EPS32 = float(np.finfo(np.float32).eps)


def _rho(act, v):
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-v))
    if act == "shifted-sigmoid":
        return 1.0 / (1.0 + np.exp(-4.0 * (v - 0.5)))
    return np.tanh(v)


def _rhop(act, v):
    # derivatives written from the formulas, not from the cached value
    if act == "sigmoid":
        return np.exp(-v) / (1.0 + np.exp(-v)) ** 2
    if act == "shifted-sigmoid":
        e = np.exp(-4.0 * (v - 0.5))
        return 4.0 * e / (1.0 + e) ** 2
    return 1.0 / np.cosh(v) ** 2


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _reference(kind, act, cost, nudge, W, b, x, s, d, beta, eps, sizes):
    """(map, field, dF/ds) in float64. Hopfield: E = |s|^2/2 - sum_l rho(s_l).(rho(s_{l-1})
    W_l + b_l); prototypical: g = sigma(dPhi/ds) with Phi = sum_l s_l.(s_{l-1} W_l + b_l);
    squared cost on the last layer or a softmax readout W_L on the top state layer."""
    L = len(sizes) - 1
    nS = L if cost == "squared" else L - 1
    cuts = np.cumsum([0, *sizes[1 : nS + 1]])
    sl = [None] + [s[:, cuts[i] : cuts[i + 1]] for i in range(nS)]
    hop = kind == "hopfield"
    a = [x] + [_rho(act, v) if hop else v for v in sl[1:]]
    P = [None]
    for l in range(1, nS + 1):
        p = a[l - 1] @ W[l - 1] + b[l - 1]
        if l < nS:
            p = p + a[l + 1] @ W[l].T
        P.append(p)
    top = sl[nS]
    if cost == "squared":
        Q = d - top  # -dC/ds
    else:
        o = _softmax(a[nS] @ W[L - 1] + b[L - 1])
        Q = (d - o) @ W[L - 1].T
        if hop:
            Q = Q * _rhop(act, top)
    if hop:
        dF = [sl[l] - _rhop(act, sl[l]) * P[l] for l in range(1, nS + 1)]
        dF[-1] = dF[-1] - beta * Q
        dF = np.hstack(dF)
        return s - eps * dF, -dF, dF
    Pn = [p.copy() for p in P[1:]]
    if nudge == "inside":
        Pn[-1] = Pn[-1] + beta * Q
    g = [_rho(act, p) for p in Pn]
    if nudge == "outside":
        g[-1] = g[-1] + beta * Q
    g = np.hstack(g)
    Pg = [p.copy() for p in P[1:]]
    Pg[-1] = Pg[-1] + beta * Q
    return g, g - s, -np.hstack(Pg)


CASES = [
    (kind, act, cost, nudge)
    for kind in ("hopfield", "prototypical")
    for act in SMOOTH
    for cost in ("squared", "cross-entropy")
    for nudge in (("inside",) if kind == "hopfield" else ("inside", "outside"))
]


def _problem(kind, act, cost, dtype, seed=0, sizes=(12, 9, 7, 5), B=4):
    rng = np.random.default_rng(seed)
    net = E.init_network(sizes, kind=kind, activation=act, cost=cost, dtype=dtype, seed=seed)
    for bb in net.biases:
        bb[:] = rng.normal(scale=0.5, size=bb.shape)
    x = rng.random((B, sizes[0])).astype(dtype)
    # states spread over the activations' curved parts and tails
    s = rng.normal(0.3, 1.5, size=(B, net.n_state)).astype(dtype)
    d = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], B)]
    return net, x, s, d


def _tol(dtype, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    return 1e-12 * scale if dtype == "float64" else 16 * EPS32 * scale


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("kind", "act", "cost", "nudge"), CASES)
def test_one_step_equals_numpy(kind, act, cost, nudge, dtype):
    """Map, vector field and dF/ds of one evaluation (all columns) vs the NumPy formulas,
    with the reference computed in float64 from the kernel's own (rounded) inputs."""
    net, x, s, d = _problem(kind, act, cost, dtype)
    beta, eps = 0.7, 0.5
    lay = net.layout(nudge)
    cx = E.clamp(net, x)
    sc = np.array([beta, eps], dtype=dtype)
    W = [np.asarray(w, np.float64) for w in net.weights]
    bs = [np.asarray(v, np.float64) for v in net.biases]
    f64 = (x.astype(np.float64), s.astype(np.float64), d.astype(np.float64))
    refs = _reference(kind, act, cost, nudge, W, bs, *f64, beta, eps, net.sizes)
    for mode, ref in enumerate(refs):
        out = np.full_like(s, np.nan)
        work = K.make_work(lay, s.shape[0], net.dtype)
        K.evaluate(s, out, cx.theta, lay, cx.drive, d, sc, work, 0, s.shape[1], mode)
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_allclose(out, ref, rtol=0, atol=_tol(dtype, ref), err_msg=f"mode {mode}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", SMOOTH)
def test_activations_equal_numpy_within_a_few_ulp(act, dtype):
    """rho over [-80, 80] (tails, where 1 + exp(-v) and e / (e + 2) round hardest, and
    around 0, where tanh must stay accurate relative to its tiny values)."""
    net = E.init_network((3, 4, 2), kind="hopfield", activation=act, dtype=dtype)
    v = np.concatenate([np.linspace(-80, 80, 20001), np.geomspace(1e-30, 1.0, 2001)])
    v = np.concatenate([v, -v]).astype(dtype).reshape(2, -1)
    got = E.activities(net, v)
    ref = _rho(act, v.astype(np.float64))
    assert got.dtype == np.dtype(dtype)
    if dtype == "float64":
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-300)
        return
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    err = np.abs(got - ref) / ulp
    keep = np.abs(ref) > 1e-37  # below: float32 denormals, absolute error < 1e-38
    assert err[keep].max() <= 4.0, f"{act}: {err[keep].max():.2f} ulp"
    assert np.abs(got - ref).max() <= 1e-7


@pytest.mark.parametrize("act", SMOOTH)
def test_float32_activations_keep_nan_and_saturate_at_infinities(act):
    net = E.init_network((3, 4, 2), kind="hopfield", activation=act, dtype="float32")
    v = np.array([[np.nan, np.inf, -np.inf, 200.0, -200.0, 0.0]], np.float32)
    got = E.activities(net, v)
    lo = -1.0 if act == "tanh" else 0.0
    assert np.isnan(got[0, 0])
    np.testing.assert_allclose(got[0, 1:5], [1.0, lo, 1.0, lo], rtol=0, atol=1e-30)
    assert got[0, 5] == pytest.approx(_rho(act, 0.0), abs=EPS32)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
@pytest.mark.parametrize("act", SMOOTH)
def test_fused_phase_equals_numpy_iteration(act, kind, dtype):
    """A nudged fused phase of 15 steps (damping 0.8) vs the NumPy map iterated."""
    net, x, s0, d = _problem(kind, act, "squared", dtype, seed=3)
    s0 = (0.3 * s0).astype(dtype)
    beta, eps, n, damp = 0.5, 0.4, 15, 0.8
    dyn = E.Dynamics(T=n, K=n, eps=eps, method="fused", damping=damp)
    got = E.nudged_phase(net, x, d, beta, dyn, s0=s0).state
    W = [np.asarray(w, np.float64) for w in net.weights]
    bs = [np.asarray(v, np.float64) for v in net.biases]
    xs, s, ds = x.astype(np.float64), s0.astype(np.float64), d.astype(np.float64)
    for _ in range(n):
        g = _reference(kind, act, "squared", "inside", W, bs, xs, s, ds, beta, eps, net.sizes)[0]
        s = (1.0 - damp) * s + damp * g
    tol = 1e-12 if dtype == "float64" else 64 * EPS32
    np.testing.assert_allclose(got, s, rtol=0, atol=tol * max(1.0, np.abs(s).max()))
