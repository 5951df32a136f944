"""Networks: energies/primitive functions and their gradients vs finite differences."""

import numpy as np
import pytest

import eqprop as E
from eqprop.network import check_input

SMOOTH = [
    (kind, act, cost)
    for kind in ("hopfield", "prototypical")
    for act in ("sigmoid", "tanh", "shifted-sigmoid")
    for cost in ("squared", "cross-entropy")
]


def _setup(kind, act, cost, seed=0, sizes=(5, 4, 3, 2), B=3):
    rng = np.random.default_rng(seed)
    net = E.init_network(sizes, kind=kind, activation=act, cost=cost, dtype="float64", seed=seed)
    for b in net.biases:
        b[:] = rng.normal(scale=0.5, size=b.shape)
    x = rng.random((B, sizes[0]))
    s = rng.normal(scale=0.7, size=(B, net.n_state))
    d = np.eye(sizes[-1])[rng.integers(0, sizes[-1], B)]
    return net, x, s, d


@pytest.mark.parametrize(("kind", "act", "cost"), SMOOTH)
@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_state_gradient_matches_central_differences(kind, act, cost, beta):
    net, x, s, d = _setup(kind, act, cost)
    g = E.state_gradient(net, x, s, d, beta)
    h = 1e-6
    fd = np.empty_like(s)
    for j in range(net.n_state):
        sp, sm = s.copy(), s.copy()
        sp[:, j] += h
        sm[:, j] -= h
        fd[:, j] = (E.energy(net, x, sp, d, beta) - E.energy(net, x, sm, d, beta)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("kind", "act", "cost"), SMOOTH)
def test_parameter_gradient_matches_central_differences(kind, act, cost):
    net, x, s, d = _setup(kind, act, cost, seed=1)
    beta = 0.6
    G = E.parameter_gradient(net, x, s, d, beta)
    theta = net.packed()
    fd = np.empty_like(theta)
    h = 1e-6
    for j in range(theta.size):
        old = theta[j]
        theta[j] = old + h
        ep = E.energy(net, x, s, d, beta).mean()
        theta[j] = old - h
        em = E.energy(net, x, s, d, beta).mean()
        theta[j] = old
        fd[j] = (ep - em) / (2 * h)
    np.testing.assert_allclose(G.flat(), fd, rtol=1e-6, atol=1e-8)
    assert [w.shape for w in G.dW] == [w.shape for w in net.weights]
    assert [b.shape for b in G.db] == [b.shape for b in net.biases]


HAND_ACTIVATIONS = {
    "hardsigmoid": lambda v: np.minimum(np.maximum(v, 0.0), 1.0),
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
    "tanh": lambda v: (np.exp(v) - np.exp(-v)) / (np.exp(v) + np.exp(-v)),
    "shifted-sigmoid": lambda v: 1.0 / (1.0 + np.exp(-4.0 * (v - 0.5))),
}


@pytest.mark.parametrize("act", E.network.ACTIVATIONS)
def test_activation_kernels_match_hand_formulas(act):
    """Kernel rho (Numba) and activation_functions (NumPy) against the written formula;
    f' and f'' against central differences of f away from the hard sigmoid's kinks."""
    net = E.init_network((3, 4, 2), kind="hopfield", activation=act, dtype="float64")
    v = np.linspace(-2.3, 2.7, 24).reshape(4, 6)
    v[np.isclose(v, 0.0) | np.isclose(v, 1.0)] += 0.01
    expected = HAND_ACTIVATIONS[act](v)
    np.testing.assert_allclose(E.activities(net, v), expected, rtol=1e-13, atol=1e-15)
    f, df, d2f, _ = E.network.activation_functions(act)
    np.testing.assert_allclose(f(v), expected, rtol=1e-13, atol=1e-15)
    h = 1e-5
    np.testing.assert_allclose(df(v), (f(v + h) - f(v - h)) / (2 * h), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d2f(v), (df(v + h) - df(v - h)) / (2 * h), rtol=1e-6, atol=1e-8)


def test_shifted_sigmoid_has_the_hard_sigmoids_centre_and_slope():
    f, df, _, _ = E.network.activation_functions("shifted-sigmoid")
    assert f(np.array(0.5)) == 0.5
    assert df(np.array(0.5)) == 1.0


def test_unknown_activation_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="shifted-sigmoid"):
        E.network.activation_functions("relu")


@pytest.mark.parametrize("kind", ["hopfield", "prototypical"])
def test_hardsigmoid_gradients_away_from_kinks(kind):
    net, x, _, d = _setup(kind, "hardsigmoid", "squared", seed=2)
    rng = np.random.default_rng(5)
    s = rng.uniform(0.1, 0.9, size=(3, net.n_state))
    g = E.state_gradient(net, x, s, d, 0.5)
    h = 1e-6
    for j in range(net.n_state):
        sp, sm = s.copy(), s.copy()
        sp[:, j] += h
        sm[:, j] -= h
        fd = (E.energy(net, x, sp, d, 0.5) - E.energy(net, x, sm, d, 0.5)) / (2 * h)
        np.testing.assert_allclose(g[:, j], fd, rtol=1e-6, atol=1e-7)


def test_hopfield_energy_equals_hand_formula():
    rng = np.random.default_rng(3)
    net = E.init_network((4, 3, 2), activation="sigmoid", dtype="float64", seed=3)
    for b in net.biases:
        b[:] = rng.normal(size=b.shape)
    x = rng.random((2, 4))
    s = rng.normal(size=(2, 5))
    d = rng.random((2, 2))
    rho = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, y = s[:, :3], s[:, 3:]
    W1, W2 = net.weights
    b1, b2 = net.biases
    E0 = (
        0.5 * (s**2).sum(1)
        - np.einsum("bi,ij,bj->b", x, W1, rho(h))
        - np.einsum("bi,ij,bj->b", rho(h), W2, rho(y))
        - rho(h) @ b1
        - rho(y) @ b2
    )
    C = 0.5 * ((y - d) ** 2).sum(1)
    np.testing.assert_allclose(E.energy(net, x, s, d, 0.3), E0 + 0.3 * C, rtol=1e-12)


def test_prototypical_primitive_and_cross_entropy_hand_formula():
    rng = np.random.default_rng(4)
    net = E.init_network(
        (4, 3, 2, 3),
        kind="prototypical",
        cost="cross-entropy",
        activation="sigmoid",
        dtype="float64",
        seed=4,
    )
    x = rng.random((2, 4))
    s = rng.random((2, 5))
    d = np.eye(3)[[0, 2]]
    W1, W2, W3 = net.weights
    b1, b2, b3 = net.biases
    h1, h2 = s[:, :3], s[:, 3:]
    phi = ((x @ W1 + b1) * h1).sum(1) + ((h1 @ W2 + b2) * h2).sum(1)
    z = h2 @ W3 + b3
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    ce = -(d * logp).sum(1)
    np.testing.assert_allclose(E.energy(net, x, s, d, 0.4), -phi + 0.4 * ce, rtol=1e-12)
    np.testing.assert_allclose(E.cost(net, s, d), ce, rtol=1e-12)
    np.testing.assert_allclose(E.output(net, s), np.exp(logp), rtol=1e-12)


def test_float32_kernels_agree_with_float64():
    net64, x, s, d = _setup("hopfield", "sigmoid", "cross-entropy", seed=6)
    net32 = E.Network(
        net64.sizes,
        net64.kind,
        net64.activation,
        net64.cost,
        [w.astype(np.float32) for w in net64.weights],
        [b.astype(np.float32) for b in net64.biases],
    )
    assert net32.dtype == np.float32
    e32 = E.energy(net32, x.astype(np.float32), s.astype(np.float32), d, 0.5)
    assert e32.dtype == np.float32
    np.testing.assert_allclose(e32, E.energy(net64, x, s, d, 0.5), rtol=1e-5, atol=1e-5)
    g32 = E.state_gradient(net32, x, s, d, 0.5)
    np.testing.assert_allclose(g32, E.state_gradient(net64, x, s, d, 0.5), rtol=1e-4, atol=1e-5)


def test_glorot_init_bounds_seed_and_layout():
    net = E.init_network((30, 20, 10), seed=7)
    assert net.dtype == np.float32
    for w, (a, b) in zip(net.weights, [(30, 20), (20, 10)]):
        assert w.shape == (a, b) and w.flags.c_contiguous
        lim = np.sqrt(6 / (a + b))
        assert np.abs(w).max() <= lim
        assert np.abs(w).max() > 0.8 * lim  # actually uses the range
    assert all((b == 0).all() for b in net.biases)
    again = E.init_network((30, 20, 10), seed=7)
    other = E.init_network((30, 20, 10), seed=8)
    assert np.array_equal(net.packed(), again.packed())
    assert not np.array_equal(net.packed(), other.packed())
    assert net.n_state == 30 and list(net.offsets) == [0, 20, 30]
    ce = E.init_network((30, 20, 10), cost="cross-entropy", dtype="float64")
    assert ce.n_state == 20 and ce.n_out == 10 and ce.dtype == np.float64
    assert E.init_network((4, 3), dtype="float64", gain=0.0).weights[0].max() == 0


def test_packed_buffer_tracks_in_place_and_replaced_weights():
    net = E.init_network((4, 3, 2), dtype="float64")
    flat = net.packed()
    net.weights[0] -= 1.0  # in place: same buffer
    assert net.packed() is flat
    assert flat[0] == net.weights[0][0, 0]
    net.weights[1] = np.full((3, 2), 5.0)  # replaced: a fresh packed copy
    p = net.packed()
    assert p is not flat
    assert np.all(net._views(p)[0][1] == 5.0)
    c = net.copy()
    c.weights[0][0, 0] = 123.0
    assert net.weights[0][0, 0] != 123.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(kind="boltzmann"), "unknown kind"),
        (dict(activation="relu"), "unknown activation"),
        (dict(cost="hinge"), "unknown cost"),
        (dict(dtype="float16"), "dtype"),
        (dict(sizes=(4,)), "sizes"),
        (dict(sizes=(4, 2), cost="cross-entropy"), "hidden layer"),
    ],
)
def test_bad_network_arguments(kwargs, match):
    args = dict(sizes=(4, 3, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        E.init_network(**args)


def test_bad_inputs_raise_clear_errors():
    net = E.init_network((4, 3, 2))
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        check_input(net, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="2-D"):
        check_input(net, np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        check_input(net, np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="n_state"):
        E.energy(net, np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="n_out"):
        E.energy(net, np.zeros((2, 4)), np.zeros((2, 5)), d=np.zeros((2, 3)), beta=1.0)
    with pytest.raises(ValueError, match="W_1 must have shape"):
        E.Network(
            (4, 3, 2),
            "hopfield",
            "sigmoid",
            "squared",
            [np.zeros((3, 4)), np.zeros((3, 2))],
            [np.zeros(3), np.zeros(2)],
        )


def test_pickle_and_deepcopy_keep_the_packed_fast_path_consistent():
    import copy
    import pickle

    net = E.init_network((4, 3, 2), dtype="float64", seed=3)
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        np.testing.assert_array_equal(clone.packed(), net.packed())
        clone.weights[1] += 1.0  # in place, as an optimizer does
        np.testing.assert_array_equal(clone.packed()[12:18], net.weights[1].ravel() + 1.0)
        assert np.shares_memory(clone.weights[0], clone.packed())
    assert not np.shares_memory(net.packed(), clone.packed())


def test_init_schemes_draw_the_documented_distributions():
    """glorot: W ~ U(+-g sqrt(6/(n_in+n_out))), b = 0, drawn layer by layer from
    default_rng(seed); fan-in: W and b ~ U(+-g/sqrt(n_in)) (torch.nn.Linear's default)."""
    sizes = (300, 200, 10)
    g = E.init_network(sizes, dtype="float64", seed=4)
    rng = np.random.default_rng(4)
    for l, (W, b) in enumerate(zip(g.weights, g.biases, strict=True)):
        a = np.sqrt(6.0 / (sizes[l] + sizes[l + 1]))
        np.testing.assert_array_equal(W, rng.uniform(-a, a, size=W.shape))
        assert not b.any()
    f = E.init_network(sizes, dtype="float64", seed=5, gain=2.0, init="fan-in")
    for l, (W, b) in enumerate(zip(f.weights, f.biases, strict=True)):
        a = 2.0 / np.sqrt(sizes[l])
        assert max(np.abs(W).max(), np.abs(b).max()) <= a
        assert np.abs(W).max() > 0.99 * a and abs(W.mean()) < 0.02 * a  # fills U(-a, a)
        assert b.min() < 0 < b.max()
    with pytest.raises(ValueError, match="unknown init 'he'"):
        E.init_network(sizes, init="he")
