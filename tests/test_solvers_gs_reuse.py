"""Red-black Gauss-Seidel that reuses the last group's block values (#16).

``solvers.GaussSeidel(last_group_independent=True)`` declares that the map's values on
the last of two groups do not depend on that group's entries; the driver then evaluates
only the first group's block at the top of each iteration (the residual check) and keeps
the last group's values from the previous sweep. These tests compare it with the plain
sweep (a full map per iteration) on random layered problems and on a 784-500-500-10
network from persistent-like states: the same iterates (always: every group is updated
from a block evaluated at the current state) and iterations, the same residuals (bitwise
where the map is exactly independent of the group's entries, to rounding otherwise),
the honest evaluation counts, and the refusals.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import solvers
from eqprop import kernels as K
from eqprop.network import init_network
from eqprop.phases import Dynamics, clamp, parity_map_ignores_own_layers, run_phase


def _parity_groups(net):
    off = [int(o) for o in net.offsets]
    layers = [(off[i], off[i + 1]) for i in range(len(off) - 1)]
    return (tuple(layers[0::2]), tuple(layers[1::2]))


def _problem(sizes, kind, activation, eps, seed, batch, gain=1.0, dtype="float64"):
    net = init_network(sizes, kind=kind, activation=activation, dtype=dtype, seed=seed, gain=gain)
    rng = np.random.default_rng(seed + 1000)
    cx = clamp(net, rng.random((batch, sizes[0])).astype(net.dtype))
    lay = net.layout("inside")
    target = np.zeros((batch, sizes[-1]), dtype=net.dtype)
    sc = np.array([0.0, eps], dtype=net.dtype)
    work = K.make_work(lay, batch, net.dtype)
    s0 = rng.random((batch, net.n_state)).astype(net.dtype)  # persistent-like: not zero
    return net, (cx.theta, lay, cx.drive, target, sc, work), s0


def _pair(net, args, s0, damping, **kw):
    """(plain, reusing) SolveResults of the parity sweep, same everything else."""
    out = []
    for reuse in (False, True):
        m = solvers.GaussSeidel(
            groups=_parity_groups(net), damping=damping, last_group_independent=reuse
        )
        out.append(
            solvers.solve_fixed_point(
                K.fixed_point_map,
                s0,
                args,
                method=m,
                g_block=K.fixed_point_block,
                bounds=net.bounds,
                **kw,
            )
        )
    return out


def _same_residuals(a, b, **tol):
    ra, rb = np.asarray(a.residual), np.asarray(b.residual)
    assert ra.shape == rb.shape
    assert np.array_equal(np.isnan(ra), np.isnan(rb))
    ok = ~np.isnan(ra)
    np.testing.assert_allclose(ra[ok], rb[ok], **tol)


# prototypical maps sigma(P_l) read only the neighbours: exactly independent, so the
# reusing sweep must give the plain sweep's numbers bit for bit
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("damping", [1.0, 1.5, 0.7])
def test_reuse_is_bitwise_the_plain_sweep_on_exactly_independent_maps(seed, damping):
    depth = 2 + seed % 3  # 2-4 hidden layers: 3-5 state layers, both groups multi-range
    sizes = (12, *([9 + seed] * depth), 4)
    act = ("hardsigmoid", "sigmoid")[seed % 2]
    net, args, s0 = _problem(sizes, "prototypical", act, 0.5, seed, batch=5, gain=1.5)
    plain, reuse = _pair(net, args, s0, damping, atol=1e-9, max_iter=300)
    assert plain.converged.any()
    np.testing.assert_array_equal(reuse.n_iter, plain.n_iter)
    np.testing.assert_array_equal(reuse.converged, plain.converged)
    np.testing.assert_array_equal(reuse.x, plain.x)
    _same_residuals(plain, reuse, rtol=0, atol=0)


# the eps = 1 hard-sigmoid Hopfield map clip(s - (s - P)) is independent of s in exact
# arithmetic only: the same iterates and iterations, residuals to rounding
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("damping", [1.0, 1.5])
def test_reuse_matches_the_plain_sweep_on_the_eps1_hopfield_map(seed, damping):
    depth = 1 + seed % 3
    sizes = (16, *([12] * depth), 5)
    net, args, s0 = _problem(sizes, "hopfield", "hardsigmoid", 1.0, seed, batch=6, gain=2.0)
    plain, reuse = _pair(net, args, s0, damping, atol=1e-7, max_iter=400)
    assert plain.converged.all()
    np.testing.assert_array_equal(reuse.n_iter, plain.n_iter)
    np.testing.assert_array_equal(reuse.x, plain.x)  # the iterates are the same
    _same_residuals(plain, reuse, rtol=0, atol=1e-12)


def test_evaluation_counts_are_reported_honestly():
    net, args, s0 = _problem((10, 8, 8, 3), "prototypical", "sigmoid", 0.5, 3, batch=4)
    plain, reuse = _pair(net, args, s0, 1.0, fixed_steps=7)
    g0, g1 = (len(g) for g in _parity_groups(net))  # (2, 1) ranges
    # plain: a full map per iteration (8 residual checks for 7 sweeps), a block per range
    # of the last group per sweep; reusing: one full map (iteration 0), then blocks only
    assert (plain.nfev, plain.nfev_block) == (8, 7 * g1)
    assert (reuse.nfev, reuse.nfev_block) == (1, 7 * g0 + 7 * g1)
    assert "last_group_independent=True" in reuse.method
    assert "last_group_independent" not in plain.method


def test_a_map_that_reads_its_last_group_gets_stale_residuals():
    """The solver cannot check the promise. The iterates never change (each group is
    updated from a block evaluated at the current state), but on the eps = 0.5 map (which
    reads s_l) the last group's reused values are stale and its residual is wrong: which
    is why eqprop sets the option only where the property holds, and why the residual
    comparisons above could fail."""
    net, args, s0 = _problem((16, 12, 12, 5), "hopfield", "hardsigmoid", 0.5, 1, batch=6)
    plain, reuse = _pair(net, args, s0, 1.0, fixed_steps=5)
    np.testing.assert_array_equal(reuse.x, plain.x)
    np.testing.assert_array_equal(reuse.residual[0], plain.residual[0])  # full map at 0
    assert np.abs(np.asarray(reuse.residual)[1:] - np.asarray(plain.residual)[1:]).max() > 1e-3


def test_the_option_is_refused_where_it_cannot_be_honoured():
    three = (((0, 2),), ((2, 4),), ((4, 6),))
    with pytest.raises(ValueError, match="exactly two groups"):
        solvers.GaussSeidel(groups=three, last_group_independent=True)
    with pytest.raises(ValueError, match="exactly two groups"):
        solvers.GaussSeidel(groups=(((0, 6),),), last_group_independent=True)
    with pytest.raises(ValueError, match="True or False"):
        solvers.GaussSeidel(groups=three[:2], last_group_independent=1)  # type: ignore[arg-type]
    net, args, s0 = _problem((10, 8, 8, 3), "prototypical", "sigmoid", 0.5, 0, batch=2)
    m = solvers.GaussSeidel(groups=_parity_groups(net), last_group_independent=True)
    with pytest.raises(ValueError, match="pass g_block"):
        solvers.solve_fixed_point(K.fixed_point_map, s0, args, method=m)


def test_eqprop_sets_it_only_where_the_parity_map_ignores_its_own_layers():
    hard = init_network((6, 5, 5, 3), activation="hardsigmoid", dtype="float64")
    smooth = init_network((6, 5, 5, 3), activation="sigmoid", dtype="float64")
    proto = init_network((6, 5, 5, 3), kind="prototypical", dtype="float64")
    one = init_network((6, 3), activation="hardsigmoid", dtype="float64")
    d1 = Dynamics(method="gauss-seidel-parity", eps=1.0)
    d05 = Dynamics(method="gauss-seidel-parity", eps=0.5)
    assert parity_map_ignores_own_layers(hard, d1, 0.0, False)
    assert not parity_map_ignores_own_layers(hard, d05, 0.0, False)  # s - eps (s - P)
    assert not parity_map_ignores_own_layers(hard, d1, 0.5, False)  # beta (d - s_L)
    assert not parity_map_ignores_own_layers(hard, d1, 0.0, True)  # clamped output
    assert not parity_map_ignores_own_layers(smooth, d1, 0.0, False)  # rho'(s) P
    assert not parity_map_ignores_own_layers(one, d1, 0.0, False)  # one group
    assert parity_map_ignores_own_layers(proto, d05, 0.0, False)  # sigma(P), any eps
    x = np.random.default_rng(0).random((3, 6))
    d = np.zeros((3, 3))
    ph = run_phase(hard, x, dataclasses.replace(d1, atol=1e-8, max_iter=200))
    assert "last_group_independent=True" in ph.result.method
    for net, dyn, beta in ((hard, d05, 0.0), (hard, d1, 0.5), (smooth, d1, 0.0)):
        ph = run_phase(net, x, dataclasses.replace(dyn, atol=1e-8, max_iter=200), beta=beta, d=d)
        assert "last_group_independent" not in ph.result.method


@pytest.fixture(scope="module")
def net_2h():
    """A scellier2017-2h-sized network (784-500-500-10, float32) and a batch of 20
    inputs with persistent-like states: the paper's free phase (eps = 0.5, T = 150)
    from zero, then the weights moved as by a training step."""
    net = init_network((784, 500, 500, 10), activation="hardsigmoid", seed=5)
    rng = np.random.default_rng(5)
    x = rng.random((20, 784)).astype(np.float32)
    s = run_phase(net, x, Dynamics(method="fused", T=150, eps=0.5)).state
    for w in net.weights:
        w += np.float32(0.01) * rng.standard_normal(w.shape).astype(np.float32) * w.std()
    return net, x, s


def test_the_2h_fast_free_phase_reuses_and_matches_the_plain_sweep(net_2h):
    net, x, s = net_2h
    dyn = Dynamics(method="gauss-seidel-parity", eps=1.0, damping=1.5, atol=1e-3, max_iter=150)
    fast = run_phase(net, x, dyn, s0=s)
    assert "last_group_independent=True" in fast.result.method
    assert fast.result.converged.all() and fast.result.nfev == 1
    # the plain sweep of the same phase, through solvers directly
    cx = clamp(net, x)
    lay = net.layout("inside")
    args = (
        cx.theta,
        lay,
        cx.drive,
        np.zeros((20, 10), np.float32),
        np.array([0.0, 1.0], np.float32),
        K.make_work(lay, 20, net.dtype),
    )
    m = solvers.GaussSeidel(groups=_parity_groups(net), damping=1.5)
    plain = solvers.solve_fixed_point(
        K.fixed_point_map,
        s,
        args,
        method=m,
        g_block=K.fixed_point_block,
        bounds=net.bounds,
        atol=1e-3,
        max_iter=150,
    )
    np.testing.assert_array_equal(fast.result.n_iter, plain.n_iter)
    np.testing.assert_array_equal(fast.state, plain.x)
    _same_residuals(plain, fast.result, rtol=0, atol=1e-5)
    sweeps = int(plain.n_iter.max())
    assert plain.nfev == sweeps + 1
    assert fast.result.nfev_block == 3 * sweeps  # (h1, output) then h2 per sweep
