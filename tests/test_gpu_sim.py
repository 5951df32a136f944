"""The CUDA phases under Numba's CUDA simulator equal the CPU phases (issue #17).

``NUMBA_ENABLE_CUDASIM`` must be set before ``numba.cuda`` is first imported, and it
would turn every ``numba.cuda`` of the process into the simulator; so in the default
suite this module runs one test that reruns the module in a fresh process with the
variable set (the other tests of the suite never see the simulator). There, the kernels
of :mod:`eqprop.gpu.kernels` run on NumPy arrays with the NumPy stand-in of the array
backend: the same arithmetic as on a GPU, slowly, so the networks are tiny.

Reference: :mod:`eqprop.phases` (``Dynamics(method="fixed")`` / ``"picard"`` through
``solvers``), an independent route (other code, other products). Tolerances: float64
1e-12 (the simulator evaluates ``exp``/``tanh`` in float64 like the CPU kernels, the
products differ only in summation order); float32 rtol 2e-5 (the CPU kernels use their
own float32 exponential, within 4 ulp; the products round differently).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

if not SIM:

    def test_gpu_kernels_under_the_simulator():
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
        assert " passed" in r.stdout and "failed" not in r.stdout, r.stdout[-3000:]

else:
    import solvers
    from eqprop import phases
    from eqprop.gpu import dense
    from eqprop.network import init_network

    def _net(kind, act, dtype, sizes=(3, 4, 3, 2), seed=1):
        return init_network(sizes, kind=kind, activation=act, dtype=dtype, seed=seed)

    def _batch(net, B=2, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.random((B, net.sizes[0])).astype(net.dtype)
        d = rng.random((B, net.n_out)).astype(net.dtype)
        return x, d

    def _same_result(gpu, cpu, rtol, atol):
        np.testing.assert_allclose(gpu.state, cpu.state, rtol=rtol, atol=atol)
        g, c = gpu.result, cpu.result
        assert gpu.state.dtype == cpu.state.dtype
        assert gpu.state.flags.c_contiguous
        np.testing.assert_array_equal(g.n_iter, c.n_iter)
        np.testing.assert_array_equal(g.failed, c.failed)
        np.testing.assert_array_equal(g.failure_iter, c.failure_iter)
        assert g.status == c.status
        assert g.residual.shape == c.residual.shape
        np.testing.assert_allclose(g.residual, c.residual, rtol=max(rtol, 1e-9), atol=atol)
        # converged compares a residual with the tolerance: equal unless a residual
        # sits within round-off of it (not so in these cases)
        np.testing.assert_array_equal(g.converged, c.converged)

    CASES = [
        ("hopfield", "hardsigmoid", "inside", 1.0),
        ("hopfield", "sigmoid", "inside", 0.7),
        ("prototypical", "hardsigmoid", "outside", 0.5),
        ("prototypical", "tanh", "inside", 1.0),
    ]

    @pytest.mark.parametrize("kind,act,nudge,damping", CASES)
    def test_free_and_nudged_phases_equal_cpu_float64(kind, act, nudge, damping):
        net = _net(kind, act, "float64")
        x, d = _batch(net)
        dyn = phases.Dynamics(T=5, K=3, eps=0.5, damping=damping, nudge=nudge)
        fg = dense.free_phase(net, x, dyn, backend="numpy")
        fc = phases.free_phase(net, x, dyn)
        _same_result(fg, fc, 1e-12, 1e-12)
        s0 = fc.state.copy()
        ng = dense.nudged_phase(net, x, d, 0.5, dyn, s0=s0, backend="numpy")
        nc = phases.nudged_phase(net, x, d, 0.5, dyn, s0=fc.state)
        np.testing.assert_array_equal(s0, fc.state)  # s0 not written
        _same_result(ng, nc, 1e-12, 1e-12)
        assert ng.beta == 0.5 and not ng.clamped
        assert not np.allclose(ng.state, fg.state)  # the nudge does something

    @pytest.mark.parametrize(
        "kind,act", [("hopfield", "hardsigmoid"), ("prototypical", "shifted-sigmoid")]
    )
    def test_phases_equal_cpu_float32(kind, act):
        net = _net(kind, act, "float32")
        x, d = _batch(net)
        dyn = phases.Dynamics(T=4, K=2, eps=0.5, damping=0.8)
        fg = dense.free_phase(net, x, dyn, backend="numpy")
        fc = phases.free_phase(net, x, dyn)
        _same_result(fg, fc, 2e-5, 1e-6)
        ng = dense.nudged_phase(net, x, d, 1.0, dyn, s0=fc.state, backend="numpy")
        nc = phases.nudged_phase(net, x, d, 1.0, dyn, s0=fc.state)
        _same_result(ng, nc, 2e-5, 1e-6)
        assert ng.state.dtype == np.float32

    def test_tolerance_mode_stops_each_sample_where_the_cpu_does():
        net = _net("hopfield", "sigmoid", "float64", sizes=(3, 3, 2))
        x, _ = _batch(net, B=3)
        x[2] *= 4.0  # samples that need different iteration counts
        dyn = phases.Dynamics(method="picard", eps=0.5, atol=1e-4, max_iter=60)
        fg = dense.free_phase(net, x, dyn, backend="numpy", sync_every=3)
        fc = phases.free_phase(net, x, dyn)
        _same_result(fg, fc, 1e-12, 1e-12)
        assert fc.result.status == solvers.Status.CONVERGED
        assert len(set(fc.result.n_iter.tolist())) > 1

    def test_a_wrong_damping_is_caught():
        """The comparison can fail: one damping off by 0.05 is far outside the tolerance."""
        net = _net("hopfield", "hardsigmoid", "float64")
        x, _ = _batch(net)
        fg = dense.free_phase(net, x, phases.Dynamics(T=4, damping=0.75), backend="numpy")
        fc = phases.free_phase(net, x, phases.Dynamics(T=4, damping=0.7))
        assert np.abs(fg.state - fc.state).max() > 1e-4

    def test_non_finite_is_flagged_or_raised_as_on_the_cpu():
        net = _net("prototypical", "tanh", "float64", sizes=(3, 3, 2))
        net.weights[1][0, 0] = np.nan
        x, _ = _batch(net)
        dyn = phases.Dynamics(T=3)
        fg = dense.free_phase(net, x, dyn, backend="numpy")
        fc = phases.free_phase(net, x, dyn)
        assert fg.result.status == solvers.Status.FAILED and fg.result.failed.all()
        np.testing.assert_array_equal(fg.result.failure_iter, fc.result.failure_iter)
        assert "failed" in fg.result.message
        loud = phases.Dynamics(T=3, raise_on_failure=True)
        with pytest.raises(solvers.SolverFailure, match="samples failed"):
            dense.free_phase(net, x, loud, backend="numpy")

    @pytest.mark.parametrize(
        "change,match",
        [
            (dict(cost="cross-entropy"), "cost='squared' only"),
            (dict(method="anderson"), "damped Picard"),
            (dict(clamp=True), "clamp the output"),
        ],
    )
    def test_unsupported_settings_raise(change, match):
        cost = change.get("cost", "squared")
        net = init_network((3, 3, 2), activation="sigmoid", cost=cost, dtype="float64")
        x, d = _batch(net)
        dyn = phases.Dynamics(method=change.get("method", "fixed"))
        with pytest.raises(ValueError, match=match):
            dense.run_phase(
                net, x, dyn, d=d, clamp_output=change.get("clamp", False), backend="numpy"
            )
