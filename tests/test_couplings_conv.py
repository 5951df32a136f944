"""conv2d couplings with pooling (eqprop.graph.conv / pool) against naive loops (float64).

Independent routes: a convolution, transposed convolution, pooling and weight gradient
written here with explicit loops over output positions; the adjoint identity; central
finite differences of the energy; the energy along its gradient flow.
"""

import numpy as np
import pytest

from eqprop.graph import Coupling, GraphNetwork, Layer
from eqprop.graph import conv as CV
from eqprop.graph import reference as R
from eqprop.graph.build import conv_chain
from eqprop.graph.conv import ConvSpec


# ----------------------------------------------------------------------------- naive loops
def naive_conv(x, W, stride, pad):
    B, C, H, Wd = x.shape
    O, _, kh, kw = W.shape
    xp = np.zeros((B, C, H + 2 * pad, Wd + 2 * pad))
    xp[:, :, pad : pad + H, pad : pad + Wd] = x
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (Wd + 2 * pad - kw) // stride + 1
    out = np.zeros((B, O, Ho, Wo))
    for b in range(B):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[b, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    out[b, o, i, j] = np.sum(patch * W[o])
    return out


def naive_conv_transpose(g, W, hw, stride, pad):
    B, O, Ho, Wo = g.shape
    _, C, kh, kw = W.shape
    H, Wd = hw
    xp = np.zeros((B, C, H + 2 * pad, Wd + 2 * pad))
    for b in range(B):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    xp[b, :, i * stride : i * stride + kh, j * stride : j * stride + kw] += (
                        g[b, o, i, j] * W[o]
                    )
    return xp[:, :, pad : pad + H, pad : pad + Wd]


def naive_pool(z, kind, size, stride):
    """Pooled z and the 0/1 (max) or 1/size^2 (avg) weights of each window's inputs."""
    B, C, H, Wd = z.shape
    Hp, Wp = (H - size) // stride + 1, (Wd - size) // stride + 1
    out = np.zeros((B, C, Hp, Wp))
    weights = np.zeros((B, C, Hp, Wp, H, Wd))
    for b in range(B):
        for c in range(C):
            for i in range(Hp):
                for j in range(Wp):
                    win = z[b, c, i * stride : i * stride + size, j * stride : j * stride + size]
                    if kind == "max":
                        p, q = np.unravel_index(np.argmax(win), win.shape)
                        out[b, c, i, j] = win[p, q]
                        weights[b, c, i, j, i * stride + p, j * stride + q] = 1.0
                    else:
                        out[b, c, i, j] = win.mean()
                        weights[
                            b,
                            c,
                            i,
                            j,
                            i * stride : i * stride + size,
                            j * stride : j * stride + size,
                        ] = 1.0 / size**2
    return out, weights


def naive_weight_gradient(x, gz, W, stride, pad):
    """-(1/B) sum_b sum_ij gz[b, o, i, j] * patch(x)[b, :, i, j] (gz at conv positions)."""
    B, C, H, Wd = x.shape
    xp = np.zeros((B, C, H + 2 * pad, Wd + 2 * pad))
    xp[:, :, pad : pad + H, pad : pad + Wd] = x
    kh, kw = W.shape[2:]
    G = np.zeros_like(W)
    for b in range(B):
        for i in range(gz.shape[2]):
            for j in range(gz.shape[3]):
                patch = xp[b, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                G += gz[b, :, i, j][:, None, None, None] * patch[None]
    return -G / B


# (C_in, H, W, C_out, kh, kw, stride, padding, pool, pool_size, pool_stride)
GEOMETRIES = [
    (2, 7, 5, 3, 3, 2, 2, 1, None, 2, None),  # odd sizes, stride, padding, rectangular kernel
    (1, 6, 6, 2, 3, 3, 1, 0, "max", 2, None),
    (3, 9, 7, 2, 2, 3, 1, 2, "avg", 2, None),
    (2, 8, 7, 3, 3, 3, 1, 1, "max", 3, 2),  # overlapping max windows, odd conv output
    (2, 9, 9, 2, 5, 5, 2, 2, "avg", 3, 1),
]


def _coupling(geom, rng):
    cin, H, Wd, cout, kh, kw, stride, pad, pool, psz, pst = geom
    spec = ConvSpec(stride=stride, padding=pad, pool=pool, pool_size=psz, pool_stride=pst)
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (Wd + 2 * pad - kw) // stride + 1
    if pool is not None:
        step = psz if pst is None else pst
        Ho, Wo = (Ho - psz) // step + 1, (Wo - psz) // step + 1
    src = Layer("a", role="input", shape=(cin, H, Wd))
    dst = Layer("b", role="output", shape=(cout, Ho, Wo))
    c = Coupling("a", "b", rng.normal(size=(cout, cin, kh, kw)), type="conv2d", conv=spec)
    net = GraphNetwork([src, dst], [c])
    return net.couplings[0], src, dst


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_drive_feedback_and_weight_gradient_match_naive_loops(geom):
    rng = np.random.default_rng(1)
    c, src, dst = _coupling(geom, rng)
    cin, H, Wd, _, _, _, stride, pad, pool, psz, pst = geom
    step = psz if pst is None else pst
    B = 3
    x = rng.normal(size=(B, src.size))
    y = rng.normal(size=(B, dst.size))
    z = naive_conv(x.reshape(B, cin, H, Wd), c.W, stride, pad)
    if pool is None:
        fwd, weights = z, None
        gz = y.reshape(z.shape)
    else:
        fwd, weights = naive_pool(z, pool, psz, step)
        gz = np.einsum("bcij,bcijpq->bcpq", y.reshape(fwd.shape), weights)
    np.testing.assert_allclose(CV.forward_drive(c, x), fwd.reshape(B, -1), rtol=0, atol=1e-12)
    back = naive_conv_transpose(gz, c.W, (H, Wd), stride, pad).reshape(B, -1)
    np.testing.assert_allclose(CV.feedback_drive(c, y, x), back, rtol=0, atol=1e-12)
    G = naive_weight_gradient(x.reshape(B, cin, H, Wd), gz, c.W, stride, pad)
    np.testing.assert_allclose(CV.weight_gradient(c, x, y), G, rtol=0, atol=1e-12)
    E = -np.sum(fwd.reshape(B, -1) * y, axis=1)
    np.testing.assert_allclose(CV.energy_term(c, x, y), E, rtol=0, atol=1e-12)


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_feedback_is_the_adjoint_of_the_drive(geom):
    """<f_at(x), y> = <x, f_at^T(y)> with the max-pool routing fixed at ``at``."""
    rng = np.random.default_rng(2)
    c, src, dst = _coupling(geom, rng)
    B = 4
    at, x = rng.normal(size=(2, B, src.size))
    y = rng.normal(size=(B, dst.size))
    lhs = np.sum(CV.forward_drive(c, x, at=at) * y)
    rhs = np.sum(x * CV.feedback_drive(c, y, at))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))
    img = x.reshape(B, *src.shape)
    spec = c.conv
    z = CV.conv2d(img, c.W, spec.stride, spec.padding)
    g = rng.normal(size=z.shape)
    back = CV.conv2d_transpose(g, c.W, src.shape[1:], spec.stride, spec.padding)
    assert abs(np.sum(z * g) - np.sum(img * back)) <= 1e-10 * max(1.0, abs(np.sum(z * g)))


def test_max_pool_feedback_routes_through_the_argmax():
    """Only the argmax of each window of conv(a_src) gets feedback: a 1x1 identity kernel
    makes conv the identity, so the feedback is a_dst placed at each window's maximum."""
    x = np.array([[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 9.0, 1.0]]).reshape(1, 8)
    net = GraphNetwork(
        [Layer("a", role="input", shape=(1, 2, 4)), Layer("b", role="output", shape=(1, 1, 2))],
        [Coupling("a", "b", np.ones((1, 1, 1, 1)), type="conv2d", conv=ConvSpec(pool="max"))],
    )
    c = net.couplings[0]
    np.testing.assert_array_equal(CV.forward_drive(c, x), [[5.0, 9.0]])
    fb = CV.feedback_drive(c, np.array([[10.0, 20.0]]), x)
    np.testing.assert_array_equal(fb, [[0, 10.0, 0, 0, 0, 0, 20.0, 0]])


# ----------------------------------------------------------------------------- small net
def small_net(kind="prototypical", activation="sigmoid", pool="max", scale=0.3, seed=0):
    """conv (2x7x7 -> 3x7x7, pad 1) -> 2x2 pool (3x3x3; none: 3x7x7) -> dense -> output (4)."""
    rng = np.random.default_rng(seed)
    hshape = (3, 7, 7) if pool is None else (3, 3, 3)
    return GraphNetwork(
        [
            Layer("x", role="input", shape=(2, 7, 7)),
            Layer(
                "h",
                activation=activation,
                bias=rng.normal(scale=0.2, size=3),
                shape=hshape,
            ),
            Layer("y", 4, role="output", activation=activation, bias=rng.normal(scale=0.2, size=4)),
        ],
        [
            Coupling(
                "x",
                "h",
                rng.normal(scale=scale, size=(3, 2, 3, 3)),
                type="conv2d",
                conv=ConvSpec(padding=1, pool=pool),
            ),
            Coupling("h", "y", rng.normal(scale=scale, size=(int(np.prod(hshape)), 4))),
        ],
        kind=kind,
    )


def _fd_params(f, net, h=1e-6):
    out = {}
    for name, p in net.parameters().items():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            plus, minus = np.array(p), np.array(p)
            plus[idx] += h
            minus[idx] -= h
            g[idx] = (
                f(net.with_parameters({name: plus})) - f(net.with_parameters({name: minus}))
            ) / (2 * h)
        out[name] = g
    return out


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
@pytest.mark.parametrize("pool", ["max", "avg", None])
def test_energy_gradients_match_central_differences(kind, pool):
    net = small_net(kind, pool=pool)
    rng = np.random.default_rng(4)
    B = 2
    x = rng.random((B, net.n_in))
    s = rng.normal(size=(B, net.n_state))
    d = rng.random((B, net.n_out))
    beta = 0.7
    g = R.state_gradient(net, x, s, d, beta)
    h = 1e-6
    fd = np.zeros_like(s)
    for b in range(B):
        for k in range(net.n_state):
            e = np.zeros_like(s)
            e[b, k] = h
            fd[b, k] = (
                R.energy(net, x, s + e, d, beta)[b] - R.energy(net, x, s - e, d, beta)[b]
            ) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-7)
    grads = R.parameter_gradient(net, x, s, d, beta)
    fdp = _fd_params(lambda n: float(np.mean(R.energy(n, x, s, d, beta))), net)
    assert set(grads) == set(fdp) == {"x->h.W", "h->y.W", "h.b", "y.b"}
    for name in grads:
        np.testing.assert_allclose(grads[name], fdp[name], rtol=0, atol=1e-7, err_msg=name)


def test_energy_does_not_increase_along_the_gradient_flow():
    """A conv Hopfield network (sigmoid, no box), Euler steps ds = -dt dF/ds."""
    net = small_net("hopfield", "sigmoid", pool="max", scale=0.8, seed=5)
    rng = np.random.default_rng(6)
    x = rng.random((3, net.n_in))
    s = rng.normal(scale=2.0, size=(3, net.n_state))
    E = [R.energy(net, x, s)]
    for _ in range(300):
        s = s - 0.02 * R.state_gradient(net, x, s)
        E.append(R.energy(net, x, s))
    E = np.array(E)
    assert np.all(np.diff(E, axis=0) <= 1e-12)
    assert np.all(E[-1] < E[0] - 1.0)  # it moved


# ----------------------------------------------------------------------------- layers, checks
def test_per_channel_bias_is_shared_over_positions():
    layer = Layer("h", role="output", shape=(2, 2, 3), bias=np.array([1.0, -2.0]))
    GraphNetwork([Layer("x", 3, role="input"), layer], [Coupling("x", "h", np.zeros((3, 12)))])
    assert layer.size == 12
    np.testing.assert_array_equal(layer.bias_vector(), [1.0] * 6 + [-2.0] * 6)
    np.testing.assert_array_equal(layer.bias_gradient(np.arange(12.0)), [15.0, 51.0])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda L, C: (setattr(L[1], "bias", None), setattr(L[1], "shape", None)), "x->h.*shape"),
        (lambda L, C: setattr(L[1], "shape", (3, 3, 2)), "layer 'h'.*size 27 differs"),
        (lambda L, C: setattr(C[0], "W", np.zeros((3, 1, 3, 3))), r"x->h.*W must have shape"),
        (lambda L, C: setattr(C[0], "conv", ConvSpec(padding=0, pool="max")), "target layer 'h'"),
        (lambda L, C: setattr(C[0], "conv", ConvSpec(padding=1, pool="sum")), "unknown pool"),
        (lambda L, C: setattr(C[0], "conv", ConvSpec(stride=0)), "stride must be"),
        (lambda L, C: setattr(C[0], "feedback", "random"), "x->h.*feedback 'random' needs B"),
        (lambda L, C: setattr(L[1], "bias", np.zeros(4)), "layer 'h'.*bias"),
        (lambda L, C: setattr(C[1], "conv", ConvSpec()), "conv settings apply"),
    ],
)
def test_bad_conv_networks_raise_one_line(edit, match):
    net = small_net()
    L, C = net.layers, net.couplings
    C[0].conv = ConvSpec(padding=1, pool="max")
    edit(L, C)
    with pytest.raises(ValueError, match=match):
        GraphNetwork(L, C, kind=net.kind)


def test_complex_conv_network_refuses_max_pooling_by_name():
    """Complex (holomorphic) conv networks run with average pooling or none
    (tests/test_conv_holomorphic.py checks the Numba map on them); a max pool needs an
    order of the values and is refused, naming the coupling."""
    net = small_net(pool="max")
    with pytest.raises(ValueError, match=r"x->h.*max pooling is undefined for dtype complex128"):
        GraphNetwork(net.layers, net.couplings, net.kind, net.cost, "complex128")


# ----------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("width", [1.0])
def test_laborieux_cifar_architecture_runs_a_drive_and_a_gradient(width):
    """3x32x32 -> 128-256-512-512 (3x3, paddings 1 1 1 0, 2x2 max pool) -> 10, batch 2."""
    chans = [int(c * width) for c in (128, 256, 512, 512)]
    net = conv_chain((3, 32, 32), chans, 10, kernels=3, paddings=[1, 1, 1, 0])
    assert [la.shape for la in net.layers[1:-1]] == [
        (chans[0], 16, 16),
        (chans[1], 8, 8),
        (chans[2], 4, 4),
        (chans[3], 1, 1),
    ]
    rng = np.random.default_rng(0)
    x = rng.random((2, 3 * 32 * 32))
    s = R.fixed_point_map(net, x, net.zero_state(2))  # one forward step from zero
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    s = R.fixed_point_map(net, x, s)
    d = np.eye(10)[[3, 7]]
    g = R.parameter_gradient(net, x, s, d, 0.5)
    params = net.parameters()
    assert set(g) == set(params)
    for k, v in g.items():
        assert v.shape == params[k].shape and np.all(np.isfinite(v)), k
    # the first layer's drive is its per-channel bias plus the convolution of x and the
    # feedback from h2: check the forward part against the coupling module directly
    c = net.couplings[0]
    acts = R.activities(net, x, s)
    fwd = CV.forward_drive(c, x)
    fb = CV.feedback_drive(net.couplings[1], acts["h2"], acts["h1"])
    np.testing.assert_allclose(R.drives(net, acts)["h1"], fwd + fb, rtol=0, atol=1e-10)
