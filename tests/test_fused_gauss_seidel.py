"""The fused red-black kernel equals the solvers' reusing Gauss-Seidel bit for bit (#16).

``run_phase`` with ``method="gauss-seidel-parity"`` on a map whose second parity group
ignores its own layers runs :func:`eqprop.kernels.fused_gauss_seidel_parity` instead of
``solvers.solve_fixed_point(..., GaussSeidel(last_group_independent=True))``. The
reference here is that solvers call, made directly: the states, the residual rows, the
per-sample verdicts and iterations and the evaluation counts must be identical, on
random layered problems (both kinds, depths 2-3, both dtypes, damping 1 and 1.5, from
zero and from persistent-like states, to tolerance and in fixed-steps mode) and on the
784-500-500-10 network of the ``--fast`` preset.
"""

from __future__ import annotations

import dataclasses

import benchmark_script
import numpy as np
import pytest

import solvers
from eqprop import kernels as K
from eqprop.network import init_network
from eqprop.phases import Dynamics, clamp, parity_map_ignores_own_layers, run_phase


def _reference(net, x, dyn, s0, beta=0.0):
    """The solvers' iteration of the same phase (what run_phase ran before the kernel)."""
    cx = clamp(net, x)
    lay = net.layout(dyn.nudge)
    B = x.shape[0]
    args = (
        cx.theta,
        lay,
        cx.drive,
        np.zeros((B, net.n_out), dtype=net.dtype),
        np.array([beta, dyn.eps], dtype=net.dtype),
        K.make_work(lay, B, net.dtype),
    )
    off = [int(o) for o in net.offsets]
    layers = [(off[i], off[i + 1]) for i in range(len(off) - 1)]
    method = solvers.GaussSeidel(
        groups=(tuple(layers[0::2]), tuple(layers[1::2])),
        damping=dyn.damping,
        last_group_independent=True,
    )
    start = net.zero_state(B) if s0 is None else s0
    fixed = dyn.T if dyn.is_fixed_steps else None
    return solvers.solve_fixed_point(
        K.fixed_point_map,
        start,
        args,
        method=method,
        g_block=K.fixed_point_block,
        atol=dyn.atol,
        rtol=dyn.rtol,
        max_iter=max(dyn.max_iter, dyn.T) if fixed else dyn.max_iter,
        fixed_steps=fixed,
        bounds=net.bounds,
    )


def _assert_same(phase, ref):
    res = phase.result
    assert res.method.endswith("(fused red-black kernel)")  # the kernel ran, not the driver
    np.testing.assert_array_equal(phase.state, ref.x)
    np.testing.assert_array_equal(res.residual, ref.residual)  # NaN where stopped, both
    np.testing.assert_array_equal(res.residual_rel, ref.residual_rel)
    for name in ("n_iter", "converged", "failed", "failure_iter"):
        np.testing.assert_array_equal(getattr(res, name), getattr(ref, name), err_msg=name)
    assert res.status == ref.status
    assert (res.nfev, res.nfev_block) == (ref.nfev, ref.nfev_block)
    assert res.message == ref.message


CASES = [
    # sizes, kind, dtype, damping, gain, fixed_steps
    ((12, 9, 7, 4), "hopfield", "float64", 1.5, 1.0, False),
    ((12, 9, 7, 4), "hopfield", "float32", 1.0, 2.0, False),
    ((10, 8, 6, 5, 3), "hopfield", "float32", 1.5, 1.5, False),
    ((10, 8, 6, 5, 3), "hopfield", "float64", 1.2, 3.0, True),
    ((12, 9, 7, 4), "prototypical", "float64", 1.0, 1.0, False),
    ((10, 8, 6, 5, 3), "prototypical", "float32", 1.3, 2.0, True),
]


@pytest.mark.parametrize("sizes, kind, dtype, damping, gain, fixed", CASES)
@pytest.mark.parametrize("start", ["zero", "persistent"])
def test_fused_red_black_equals_the_solvers_reusing_sweep(
    sizes, kind, dtype, damping, gain, fixed, start
):
    for seed in range(4):
        net = init_network(sizes, kind=kind, dtype=dtype, seed=seed, gain=gain)
        rng = np.random.default_rng(100 + seed)
        B = 6
        x = rng.random((B, sizes[0])).astype(net.dtype)
        s0 = None if start == "zero" else rng.random((B, net.n_state)).astype(net.dtype)
        eps = 1.0 if kind == "hopfield" else 0.5  # prototypical maps reuse at any eps
        dyn = Dynamics(
            method="gauss-seidel-parity",
            eps=eps,
            damping=damping,
            T=7,
            atol=1e-5,
            max_iter=60,
            fixed_steps=fixed,
        )
        assert parity_map_ignores_own_layers(net, dyn, 0.0, False)
        phase = run_phase(net, x, dyn, s0=s0)
        _assert_same(phase, _reference(net, x, dyn, s0))
        if s0 is not None:
            assert not np.shares_memory(phase.state, s0)  # s0 not modified


def test_fused_red_black_on_the_deep_preset_network_stops_samples_apart():
    """784-500-500-10 float32 at the --fast setting from persistent-like states: samples
    converge at different sweeps (so the per-sample freezing is exercised) and every
    record equals the solvers'."""
    net = init_network((784, 500, 500, 10), dtype="float32", seed=3)
    rng = np.random.default_rng(7)
    B = 20
    x = (rng.random((B, 784)) < 0.2).astype(np.float32)
    dyn = Dynamics(
        method="gauss-seidel-parity", eps=1.0, damping=1.5, T=150, atol=1e-3, max_iter=150
    )
    s0 = run_phase(net, x, dataclasses.replace(dyn, atol=1e-2)).state
    s0 = np.clip(s0 + rng.normal(0, 0.05, s0.shape).astype(np.float32), 0, 1)
    phase = run_phase(net, x, dyn, s0=s0)
    ref = _reference(net, x, dyn, s0)
    _assert_same(phase, ref)
    assert len(set(ref.n_iter.tolist())) > 1  # the freezing matters here
    assert ref.converged.all()


def test_fused_red_black_reports_the_iteration_cap_like_the_solvers():
    net = init_network((12, 9, 7, 4), dtype="float64", seed=0, gain=2.0)
    x = np.random.default_rng(0).random((5, 12))
    dyn = Dynamics(method="gauss-seidel-parity", eps=1.0, damping=1.5, atol=0.0, max_iter=3)
    phase = run_phase(net, x, dyn)
    ref = _reference(net, x, dyn, None)
    _assert_same(phase, ref)
    assert ref.status == solvers.Status.MAX_ITER and not ref.converged.any()


def test_recorded_energy_keeps_the_solvers_path():
    net = init_network((12, 9, 7, 4), dtype="float64", seed=0)
    x = np.random.default_rng(0).random((3, 12))
    dyn = Dynamics(method="gauss-seidel-parity", eps=1.0, atol=1e-6, record_energy=True)
    phase = run_phase(net, x, dyn)
    assert "fused red-black" not in phase.result.method
    assert phase.result.observed.shape[1] == 3


@pytest.fixture
def bench():
    yield from benchmark_script.loaded("bench_fast_minibatch")


def test_benchmark_times_both_paths_on_a_small_network(bench, capsys):
    bench.main(["--sizes", "30-12-9-4", "--batch", "5", "--batches", "2", "--repeat", "1"])
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith(("fused", "solvers"))]
    assert len(rows) == 2
    assert float(rows[1].split()[-1]) == 1.0  # the reference's own ratio
    with pytest.raises(SystemExit):
        bench.main(["--repeat", "0"])
    with pytest.raises(SystemExit):  # a checkpoint brings its own network
        bench.main(["--checkpoint", "run/checkpoint.npz", "--sizes", "30-12-9-4"])
