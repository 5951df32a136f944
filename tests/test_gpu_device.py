"""The CUDA phases on a real GPU equal the CPU phases (issue #17); skipped without one.

Run by ``benchmarks/gpu_check.py`` on a machine with an NVIDIA GPU, CuPy and numba-cuda
(``pytest -m gpu tests/test_gpu_device.py``). The networks are the presets'
(``ernoult2019-p1h``: prototypical, shifted sigmoid; ``scellier2017-1h``: Hopfield, hard
sigmoid) with their phase lengths, at batch 20, with the ``"fixed"`` method (the
presets' ``"fused"`` runs the same iterates). Tolerances: float64 1e-10 (cuBLAS sums in
another order than NumPy's BLAS; 784-wide products); float32 rtol/atol 1e-4 on states
in [0, 1] after up to 40 steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import solvers
from eqprop import gpu, phases
from eqprop.presets import get_preset

OK, WHY = gpu.available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not OK, reason=WHY)]


def _setting(name, dtype):
    config = get_preset(name).config.replace(dtype=dtype)
    net = config.make_network()
    dyn = dataclasses.replace(config.dynamics.free_dynamics(), method="fixed")
    rng = np.random.default_rng(0)
    x = rng.random((20, net.sizes[0])).astype(net.dtype)
    d = np.eye(net.n_out, dtype=net.dtype)[rng.integers(0, net.n_out, 20)]
    return net, dyn, x, d


@pytest.mark.parametrize("name", ["ernoult2019-p1h", "scellier2017-1h"])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_preset_phases_on_the_gpu_equal_cpu(name, dtype, tol):
    net, dyn, x, d = _setting(name, dtype)
    fg = gpu.free_phase(net, x, dyn, backend="cupy")
    fc = phases.free_phase(net, x, dyn)
    np.testing.assert_allclose(fg.state, fc.state, rtol=tol, atol=tol)
    np.testing.assert_array_equal(fg.result.n_iter, fc.result.n_iter)
    assert fg.result.status == fc.result.status == solvers.Status.FIXED_STEPS
    ng = gpu.nudged_phase(net, x, d, 0.5, dyn, s0=fc.state, backend="cupy")
    nc = phases.nudged_phase(net, x, d, 0.5, dyn, s0=fc.state)
    np.testing.assert_allclose(ng.state, nc.state, rtol=tol, atol=tol)
    assert ng.state.dtype == np.dtype(dtype)


def test_tolerance_mode_and_failure_on_the_gpu():
    net, dyn, x, _ = _setting("scellier2017-1h", "float64")
    tol_dyn = dataclasses.replace(dyn, method="picard", fixed_steps=False, atol=1e-6)
    fg = gpu.free_phase(net, x, tol_dyn, backend="cupy")
    fc = phases.free_phase(net, x, tol_dyn)
    np.testing.assert_array_equal(fg.result.n_iter, fc.result.n_iter)
    np.testing.assert_array_equal(fg.result.converged, fc.result.converged)
    net.weights[1][0, 0] = np.nan
    bad = gpu.free_phase(net, x, dyn, backend="cupy")
    assert bad.result.status == solvers.Status.FAILED


@pytest.mark.parametrize("name", ["ernoult2019-p1h", "scellier2017-1h"])
def test_cuda_trainer_equals_cpu_trainer_on_the_gpu(name):
    """Two epochs of 3 minibatches of the preset's network (784 inputs) on random data:
    the CUDA trainer (cuBLAS) equals the CPU trainer in float64 to 1e-9."""
    from eqprop.data import DatasetSplits, Split
    from eqprop.train import Trainer

    rng = np.random.default_rng(0)

    def split(m):
        return Split(rng.random((m, 784)).astype(np.float32), rng.integers(0, 10, m), 10)

    data = DatasetSplits(split(60), split(20), split(20), name="toy")
    config = get_preset(name).config.replace(dtype="float64", epochs=2)
    cpu = Trainer(config, data=data, quiet=True)
    cpu.run()
    dev = Trainer(config.replace(device="cuda"), data=data, quiet=True)
    dev.run()
    for k in ("train_loss", "test_loss", "train_error", "test_error"):
        np.testing.assert_allclose(dev.history[k], cpu.history[k], rtol=1e-9, atol=1e-9)
    for a, b in zip(cpu.net.weights, dev.net.weights):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)


def test_conv_coupling_on_cupy_equals_the_cpu_reference():
    """The CIFAR network's second conv coupling (128 -> 256, 3x3, pad 1, max-pool) at
    batch 4: forward drive, feedback drive and weight gradient on cuBLAS equal
    eqprop.graph.conv in float64 (1e-9)."""
    from eqprop.gpu.conv import DeviceConv2d
    from eqprop.graph import conv as CV
    from eqprop.graph.build import conv_chain

    net = conv_chain((3, 32, 32), (128, 256, 512, 512), 10, kernels=3, paddings=1, pool="max")
    c = net.couplings[1]
    rng = np.random.default_rng(0)
    a = rng.random((4, net.layer(c.source).size))
    b = rng.random((4, net.layer(c.target).size))
    dev = DeviceConv2d(c, "cupy")
    import cupy

    ad, bd = cupy.asarray(a), cupy.asarray(b)
    for got, want in [
        (dev.forward_drive(ad), CV.forward_drive(c, a)),
        (dev.feedback_drive(bd, ad), CV.feedback_drive(c, b, a)),
        (dev.weight_gradient(ad, bd), CV.weight_gradient(c, a, b)),
    ]:
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "method,fixed",
    [("fused", None), ("gauss-seidel-parity", True), ("gauss-seidel-parity", False)],
)
def test_pconv_phases_on_the_gpu_equal_the_cpu_conv_fast_path(method, fixed):
    """ernoult2019-pconv's network (float64) at batch 4: free and nudged phases of
    eqprop.gpu.graph on cuBLAS equal the CPU conv fast path (1e-9): synchronous steps,
    red-black sweeps for fixed steps and to a tolerance (1e-6; then the iterations too)."""
    from eqprop.gpu import graph as ggraph

    config = get_preset("ernoult2019-pconv").config.replace(dtype="float64")
    net = config.make_network()
    dyn = dataclasses.replace(
        config.dynamics.phases, T=8, K=3, method=method, fixed_steps=fixed, atol=1e-6
    )
    rng = np.random.default_rng(0)
    x = rng.random((4, net.n_in))
    d = np.eye(net.n_out)[rng.integers(0, net.n_out, 4)]
    fc = phases.free_phase(net, x, dyn)
    fg = ggraph.run_phase(net, x, dyn, steps=dyn.T, backend="cupy")
    np.testing.assert_allclose(fg.state, fc.state, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(fg.result.n_iter, fc.result.n_iter)
    nc = phases.nudged_phase(net, x, d, 0.4, dyn, s0=fc.state)
    ng = ggraph.run_phase(net, x, dyn, beta=0.4, d=d, s0=fc.state, steps=dyn.K, backend="cupy")
    np.testing.assert_allclose(ng.state, nc.state, rtol=1e-9, atol=1e-9)


def test_cuda_trainer_on_a_conv_network_equals_cpu_on_the_gpu():
    """P-conv's settings on 1x28x28-c8k5-p2-c8k5-p2-10 (float64, T=20, K=4), two epochs of
    3 minibatches of random images: the CUDA trainer equals the CPU trainer (1e-9)."""
    from eqprop.data import DatasetSplits, Split
    from eqprop.train import Trainer

    rng = np.random.default_rng(0)

    def split(m):
        return Split(rng.random((m, 784)).astype(np.float32), rng.integers(0, 10, m), 10)

    data = DatasetSplits(split(60), split(20), split(20), name="toy")
    config = get_preset("ernoult2019-pconv").config.replace(
        architecture="1x28x28-c8k5-p2-c8k5-p2-10", dtype="float64", epochs=2, T=20, K=4
    )
    cpu = Trainer(config, data=data, quiet=True)
    cpu.run()
    dev = Trainer(config.replace(device="cuda"), data=data, quiet=True)
    dev.run()
    for k in ("train_loss", "test_loss"):
        np.testing.assert_allclose(dev.history[k], cpu.history[k], rtol=1e-9, atol=1e-9)
    for name, want in cpu.net.parameters().items():
        np.testing.assert_allclose(dev.net.parameters()[name], want, rtol=1e-9, atol=1e-9)
