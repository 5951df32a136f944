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

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
SLOW = pytest.mark.slow


def _rerun_under_the_simulator(marks: str) -> None:
    """This module in a fresh process with the simulator and the test-only stand-in of
    ``device="cuda"`` (eqprop.gpu.STANDIN_ENV), selecting ``marks``."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", EQPROP_CUDA_STANDIN="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marks]
    r = subprocess.run([*cmd, __file__], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "failed" not in r.stdout, r.stdout[-3000:]


if not SIM:

    def test_gpu_kernels_under_the_simulator():
        _rerun_under_the_simulator("not slow and not benchmark")

    @pytest.mark.slow
    def test_gpu_kernels_under_the_simulator_slow_cases():
        _rerun_under_the_simulator("slow")

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
            (dict(method="anderson"), "the CUDA phases run method"),
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

    # ------------------------------------------------------------ fused and sweeps
    SWEEPS = [
        ("hopfield", "hardsigmoid", "gauss-seidel-parity", 1.0, 1.0),
        ("hopfield", "sigmoid", "gauss-seidel", 0.5, 0.8),
        pytest.param(
            "prototypical", "shifted-sigmoid", "gauss-seidel-parity", 1.0, 0.6, marks=SLOW
        ),
        pytest.param(
            "hopfield", "hardsigmoid", "gauss-seidel-parity", 1.0, 1.5, marks=SLOW
        ),  # over-relaxed
    ]

    @pytest.mark.parametrize("kind,act,method,eps,damping", SWEEPS)
    def test_layer_sweeps_equal_cpu_gauss_seidel(kind, act, method, eps, damping):
        """Red-black / layer-by-layer block sweeps equal solvers.GaussSeidel's (3 state
        layers: parity groups (1, 3) then (2)); fixed steps and to tolerance."""
        net = _net(kind, act, "float64")
        x, d = _batch(net, B=3)
        for fixed in (True, False):
            dyn = phases.Dynamics(
                T=4,
                K=3,
                eps=eps,
                method=method,
                damping=damping,
                fixed_steps=fixed,
                atol=1e-6,
                max_iter=40,
            )
            fg = dense.free_phase(net, x, dyn, backend="numpy", sync_every=2)
            fc = phases.free_phase(net, x, dyn)
            _same_result(fg, fc, 1e-12, 1e-12)
            # the counts of map and block evaluations are the CPU's: where the free map
            # of a parity ignores its own layers, both sweeps reuse the last group's
            # blocks (solvers.GaussSeidel(last_group_independent=True)): one full map,
            # then every layer once per sweep as a block
            reuse = method == "gauss-seidel-parity" and phases.parity_map_ignores_own_layers(
                net, dyn, 0.0, False
            )
            assert fg.result.nfev == fc.result.nfev
            assert fg.result.nfev_block == fc.result.nfev_block
            assert (fc.result.nfev == 1) == reuse
            assert ("last_group_independent=True" in fg.result.method) == reuse
            if reuse:
                n_state_layers = len(net.sizes) - 1  # every layer but the input
                assert fg.result.nfev_block == n_state_layers * int(fg.result.n_iter.max())
            ng = dense.nudged_phase(net, x, d, 0.7, dyn, s0=fc.state, backend="numpy")
            nc = phases.nudged_phase(net, x, d, 0.7, dyn, s0=fc.state)
            _same_result(ng, nc, 1e-12, 1e-12)
            # a nudged phase reads the top layer's own state: no reuse on either side
            assert ng.result.nfev == nc.result.nfev > 1
            assert ng.result.nfev_block == nc.result.nfev_block
            assert "last_group_independent" not in ng.result.method
        assert not fixed and fc.result.status == solvers.Status.CONVERGED

    def test_reusing_sweep_refuses_a_chain_of_another_eps():
        """The reuse predicate judges the map the chain evaluates: a DeviceChain built
        with one eps asked about Dynamics with another raises instead of guessing."""
        net = _net("hopfield", "hardsigmoid", "float64")
        x, d = _batch(net)
        be = dense.get_backend("numpy")
        chain = dense.DeviceChain(net, dense.DeviceParams(net, be), "outside", 0.5)
        chain.set_input(be.to_device(x), be.to_device(np.zeros_like(d)), 0.0)
        dyn = phases.Dynamics(T=3, eps=1.0, method="gauss-seidel-parity")
        with pytest.raises(ValueError, match=r"eps=0\.5"):
            dense.device_phase(chain, be.to_device(net.zero_state(2)), dyn, 3)
        assert not chain.parity_map_ignores_own_layers(dataclasses.replace(dyn, eps=0.5))

    def test_sweeps_differ_from_picard():
        """The comparison can fail: a parity sweep is not a synchronous step."""
        net = _net("hopfield", "hardsigmoid", "float64")
        x, _ = _batch(net)
        gs = dense.free_phase(
            net, x, phases.Dynamics(T=3, method="gauss-seidel-parity"), backend="numpy"
        )
        pc = phases.free_phase(net, x, phases.Dynamics(T=3, method="fixed"))
        assert np.abs(gs.state - pc.state).max() > 1e-3

    def test_fused_phases_equal_cpu_fused():
        net = _net("prototypical", "shifted-sigmoid", "float32")
        x, d = _batch(net, B=3)
        dyn = phases.Dynamics(T=5, K=2, method="fused", damping=0.9, nudge="outside")
        fg = dense.free_phase(net, x, dyn, backend="numpy")
        fc = phases.free_phase(net, x, dyn)
        _same_result(fg, fc, 2e-5, 1e-6)
        assert fg.result.method.startswith("fused") and fg.result.nfev == 5
        ng = dense.nudged_phase(net, x, d, 0.3, dyn, s0=fc.state, backend="numpy")
        nc = phases.nudged_phase(net, x, d, 0.3, dyn, s0=fc.state)
        _same_result(ng, nc, 2e-5, 1e-6)

    # ------------------------------------------------------------ training
    from eqprop.data import DatasetSplits, Split
    from eqprop.gpu import train as gtrain
    from eqprop.presets import get_preset
    from eqprop.train import Trainer

    def _data(n=12, nin=6, nc=3, seed=0):
        rng = np.random.default_rng(seed)

        def split(m):
            return Split(rng.random((m, nin)).astype(np.float32), rng.integers(0, nc, m), nc)

        return DatasetSplits(split(n), split(4), split(4), name="toy")

    HISTORY = (
        "train_error",
        "train_loss",
        "test_error",
        "test_loss",
        "valid_loss",
        "free_converged",
        "nudged_converged",
        "free_iterations",
    )

    def _train_both(config):
        cpu = Trainer(config, data=_data(), quiet=True)
        cpu.run()
        gpu = Trainer(config.replace(device="cuda"), data=_data(), quiet=True)
        gpu.run()
        assert isinstance(gpu._device, gtrain.DeviceRun) and cpu._device is None
        return cpu, gpu

    def _same_training(cpu, gpu, rtol, atol):
        for k in HISTORY:
            np.testing.assert_allclose(
                gpu.history[k], cpu.history[k], rtol=rtol, atol=atol, err_msg=k
            )
        for a, b in zip(cpu.net.weights + cpu.net.biases, gpu.net.weights + gpu.net.biases):
            assert b.dtype == a.dtype
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)
        assert gpu.optimizer.n_steps == cpu.optimizer.n_steps > 0
        if cpu.particles is not None:
            np.testing.assert_allclose(gpu.particles, cpu.particles, rtol=rtol, atol=atol)

    TRAIN_CASES = [
        # preset, dtype, batch (12 samples: 1 or 3 steps per epoch), epochs, changes
        ("ernoult2019-p1h", "float64", 12, 1, {}),  # one training step
        pytest.param("scellier2017-1h", "float64", 4, 2, {}, marks=SLOW),
        ("scellier2017-1h", "float32", 4, 2, {}),  # random-sign, persistent particles
        pytest.param(
            "ernoult2019-p1h",
            "float64",
            4,
            1,
            dict(
                estimator="symmetric", momentum=0.9, weight_decay=0.01, method="gauss-seidel-parity"
            ),
            marks=SLOW,
        ),
    ]

    @pytest.mark.parametrize("preset,dtype,batch,epochs,changes", TRAIN_CASES)
    def test_cuda_trainer_equals_cpu_trainer(preset, dtype, batch, epochs, changes):
        """Training steps on the device (phases, EP estimate, SGD) equal the CPU
        Trainer's: history, parameters, optimizer steps, particles."""
        c = get_preset(preset).config.replace(
            architecture="6-5-3",
            dtype=dtype,
            batch_size=batch,
            epochs=epochs,
            T=6,
            K=3,
            eval_batch_size=4,
            **changes,
        )
        cpu, gpu = _train_both(c)
        tol = 1e-12 if dtype == "float64" else 2e-5
        _same_training(cpu, gpu, tol, tol if dtype == "float64" else 1e-6)
        if changes.get("momentum"):
            np.testing.assert_allclose(gpu.optimizer.vW[0], cpu.optimizer.vW[0], rtol=1e-12)

    def test_a_wrong_ep_coefficient_is_caught(monkeypatch):
        """The comparison can fail: the estimate's coefficients off by 1 % move the
        parameters far outside the tolerance."""
        c = get_preset("ernoult2019-p1h").config.replace(
            architecture="6-5-3",
            dtype="float64",
            batch_size=12,
            epochs=1,
            T=6,
            K=3,
            eval_batch_size=4,
        )
        real = gtrain.ep_plan_coefficients

        def off(phases, estimator):
            s, b, co = real(phases, estimator)
            return s, b, [1.01 * v for v in co]

        monkeypatch.setattr(gtrain, "ep_plan_coefficients", off)
        cpu, gpu = _train_both(c)
        assert np.abs(cpu.net.weights[0] - gpu.net.weights[0]).max() > 1e-6

    @pytest.mark.parametrize(
        "changes,match",
        [
            (dict(rule="chl"), "cannot train rule 'chl'"),
            (dict(cost="cross-entropy"), "cannot train cost='cross-entropy'"),
            (dict(method="anderson"), "cannot train method 'anderson'"),
        ],
    )
    def test_cuda_trainer_refuses_what_it_cannot_run(changes, match):
        c = get_preset("scellier2017-1h").config.replace(architecture="6-5-3", **changes)
        with pytest.raises(ValueError, match=match):
            Trainer(c.replace(device="cuda"), data=_data(), quiet=True)

    def test_cuda_trainer_runs_its_products_setting():
        """products='bfloat16' / 'float16' (RunConfig.products) reach the device run's
        backend and change the run by the operands' rounding: the parameters after one
        epoch differ from the native run's, by far less than they moved (the rounding is
        that of eqprop.gpu.backend.round_operand, tested in tests/test_gpu_backend.py)."""
        c = get_preset("ernoult2019-p1h").config.replace(
            architecture="6-5-3", dtype="float32", epochs=1, T=4, K=2, batch_size=4
        )
        start = c.make_network().weights
        weights = {}
        for products in ("native", "bfloat16", "float16"):
            t = Trainer(c.replace(device="cuda", products=products), data=_data(), quiet=True)
            t.run()
            assert t._device.be.products == products
            weights[products] = t.net.weights
        moved = max(np.abs(w - w0).max() for w, w0 in zip(weights["native"], start))
        for products in ("bfloat16", "float16"):
            off = max(np.abs(w - n).max() for w, n in zip(weights[products], weights["native"]))
            assert 0.0 < off < 0.1 * moved, (products, off, moved)

    def test_cuda_trainer_raises_the_trainers_error_on_divergence():
        """A NaN weight fails the free phase of the first minibatch: the trainer's own
        PhaseDiverged (where, what, the settings), not a silent run. (The CPU trainer
        here stops one step later, with a ValueError from the nudged phase's NaN s0.)"""
        from eqprop.train import TrainingDiverged

        c = get_preset("ernoult2019-p1h").config.replace(
            architecture="6-5-3", dtype="float64", batch_size=4, epochs=1, T=6, K=3
        )
        t = Trainer(c.replace(device="cuda"), data=_data(), quiet=True)
        t._device.params.W[1][0, 0] = np.nan
        with pytest.raises(
            TrainingDiverged,
            match=r"^the free phase of epoch 1, minibatch 1 .*"
            r"4 of 4 samples failed.*parameters W2 were already NaN",
        ):
            t.train_epoch()

    # ------------------------------------------------------------ conv graph phases
    from eqprop.gpu import graph as ggraph
    from eqprop.graph import Coupling, GraphNetwork, Layer
    from eqprop.graph.conv import ConvSpec

    def _conv_net(kind="prototypical", activation="sigmoid", pool="max", dtype="float64"):
        """x (2x6x6) -conv 3x3 pad 1 (+pool)-> h (3x3x3 / 3x6x6) -dense-> y (3): a conv
        coupling from the input, a scaled dense coupling between state layers."""
        rng = np.random.default_rng(0)
        hshape = (3, 6, 6) if pool is None else (3, 3, 3)
        spec = ConvSpec(padding=1, pool=pool)
        net = GraphNetwork(
            [
                Layer("x", role="input", shape=(2, 6, 6)),
                Layer("h", activation=activation, shape=hshape, bias=rng.normal(size=3) * 0.1),
                Layer(
                    "y", size=3, role="output", activation=activation, bias=rng.normal(size=3) * 0.1
                ),
            ],
            [
                Coupling(
                    "x", "h", rng.normal(scale=0.4, size=(3, 2, 3, 3)), type="conv2d", conv=spec
                ),
                Coupling("h", "y", rng.normal(scale=0.4, size=(int(np.prod(hshape)), 3))),
            ],
            kind=kind,
            dtype=dtype,
        )
        return net

    def _conv_net2(kind="prototypical", activation="sigmoid", pool="avg", front=False):
        """A conv coupling *between state layers* (feedback through conv^T and the pool
        adjoint): x (1x6x6) -dense-> h1 (2x6x6) -conv (+pool)-> h2 -dense-> y (2).
        ``front``: one more dense layer before h1, x (36) -dense-> h0 (8) -dense-> h1,
        so that the conv coupling's source is not the first layer of a sweep and its
        feedback is evaluated in a sweep's later group."""
        rng = np.random.default_rng(2 if front else 1)
        h2 = (2, 3, 3) if pool else (2, 6, 6)
        layers = [Layer("x", role="input", size=36)]
        if front:
            layers.append(Layer("h0", activation=activation, size=8, bias=rng.normal(size=8) * 0.1))
        layers += [
            Layer("h1", activation=activation, shape=(2, 6, 6)),
            Layer("h2", activation=activation, shape=h2, bias=rng.normal(size=2) * 0.1),
            Layer("y", size=2, role="output", activation=activation),
        ]
        if front:
            couplings = [
                Coupling("x", "h0", rng.normal(scale=0.3, size=(36, 8))),
                Coupling("h0", "h1", rng.normal(scale=0.3, size=(8, 72))),
            ]
        else:
            couplings = [Coupling("x", "h1", rng.normal(scale=0.3, size=(36, 72)))]
        couplings += [
            Coupling(
                "h1",
                "h2",
                rng.normal(scale=0.5 if front else 0.4, size=(2, 2, 3, 3)),
                type="conv2d",
                conv=ConvSpec(padding=1, pool=pool),
            ),
            Coupling(
                "h2",
                "y",
                rng.normal(scale=0.4, size=(int(np.prod(h2)), 2)),
                feedback="scaled",
                gamma=0.5,
            ),
        ]
        return GraphNetwork(layers, couplings, kind=kind)

    GRAPH_CASES = [
        (lambda: _conv_net(), "inside", 1.0),
        (lambda: _conv_net("hopfield", "hardsigmoid", "avg"), "inside", 0.8),
        (lambda: _conv_net2(), "outside", 0.7),
        pytest.param(lambda: _conv_net2("hopfield", "tanh", "max"), "inside", 1.0, marks=SLOW),
    ]

    @pytest.mark.parametrize("make,nudge,damping", GRAPH_CASES)
    def test_conv_graph_phases_equal_the_cpu_conv_fast_path(make, nudge, damping):
        net = make()
        rng = np.random.default_rng(5)
        x = rng.random((2, net.n_in))
        d = np.eye(net.n_out)[[0, 1]]
        dyn = phases.Dynamics(T=4, K=3, eps=0.5, damping=damping, nudge=nudge, method="fused")
        fc = phases.free_phase(net, x, dyn)
        fg = ggraph.run_phase(net, x, dyn, steps=dyn.T, backend="numpy")
        _same_result(fg, fc, 1e-12, 1e-12)
        nc = phases.nudged_phase(net, x, d, 0.6, dyn, s0=fc.state)
        ng = ggraph.run_phase(net, x, dyn, beta=0.6, d=d, s0=fc.state, steps=dyn.K, backend="numpy")
        _same_result(ng, nc, 1e-12, 1e-12)
        assert np.abs(ng.state - fg.state).max() > 1e-6

    SWEEP_CASES = [
        # (network, method, fixed steps?, damping, nudge)
        (lambda: _conv_net2(pool="max", front=True), "gauss-seidel-parity", True, 1.0, "inside"),
        (
            lambda: _conv_net2("hopfield", "hardsigmoid", front=True),
            "gauss-seidel",
            True,
            0.8,
            "inside",
        ),
        (lambda: _conv_net2(), "gauss-seidel-parity", False, 1.0, "outside"),
        (lambda: _conv_net(), "picard", False, 0.9, "inside"),
        pytest.param(
            lambda: _conv_net2("hopfield", "tanh", "avg"),
            "gauss-seidel",
            False,
            1.1,
            "inside",
            marks=SLOW,
        ),
    ]

    @pytest.mark.parametrize("make,method,fixed,damping,nudge", SWEEP_CASES)
    def test_conv_graph_sweeps_and_tolerance_equal_the_cpu_conv_solver(
        make, method, fixed, damping, nudge
    ):
        """Whole-layer Gauss-Seidel / red-black sweeps and Picard to a tolerance on the
        device equal the CPU conv fast map's solver (FastMap.solve, solvers' semantics):
        state, per-sample iterations and flags, residual trace, nfev and nfev_block."""
        net = make()
        rng = np.random.default_rng(7)
        x = rng.random((3, net.n_in))
        d = np.eye(net.n_out)[[0, 1, 0]]
        dyn = phases.Dynamics(
            T=6, K=4, eps=0.5, damping=damping, nudge=nudge, method=method,
            fixed_steps=True if fixed else False, atol=1e-7, max_iter=200,
        )  # fmt: skip
        fc = phases.free_phase(net, x, dyn)
        fg = ggraph.run_phase(net, x, dyn, steps=dyn.T, backend="numpy")
        _same_result(fg, fc, 1e-12, 1e-12)
        assert (fg.result.nfev, fg.result.nfev_block) == (fc.result.nfev, fc.result.nfev_block)
        if method != "picard":
            assert fc.result.nfev_block > 0  # a sweep, not the synchronous map
        if not fixed:  # to a tolerance: the samples stop apart, before max_iter
            assert fc.result.converged.all() and fc.result.n_iter.max() < dyn.max_iter
        nc = phases.nudged_phase(net, x, d, 0.6, dyn, s0=fc.state)
        ng = ggraph.run_phase(net, x, dyn, beta=0.6, d=d, s0=fc.state, steps=dyn.K, backend="numpy")
        _same_result(ng, nc, 1e-12, 1e-12)
        assert (ng.result.nfev, ng.result.nfev_block) == (nc.result.nfev, nc.result.nfev_block)

    def test_conv_graph_sweeps_differ_from_synchronous_steps():
        """The red-black sweep is another iteration than the synchronous map (so the
        equality above is not the synchronous path's twice over)."""
        net = _conv_net2()
        x = np.random.default_rng(7).random((2, net.n_in))
        sync = phases.Dynamics(T=3, method="fused")
        rb = phases.Dynamics(T=3, method="gauss-seidel-parity", fixed_steps=True)
        a = ggraph.run_phase(net, x, sync, backend="numpy").state
        b = ggraph.run_phase(net, x, rb, backend="numpy").state
        assert np.abs(a - b).max() > 1e-3

    def test_conv_graph_phase_refusals():
        net = _conv_net()
        x = np.zeros((1, net.n_in))
        with pytest.raises(ValueError, match="Picard and whole-layer Gauss-Seidel"):
            ggraph.run_phase(net, x, phases.Dynamics(method="anderson"), backend="numpy")
        with pytest.raises(ValueError, match="method 'fused' runs fixed steps"):
            dyn = phases.Dynamics(method="fused", fixed_steps=False)
            ggraph.run_phase(net, x, dyn, backend="numpy")
        with pytest.raises(ValueError, match="clamp"):
            ggraph.run_phase(
                net, x, phases.Dynamics(), d=np.zeros((1, 3)), clamp_output=True, backend="numpy"
            )

    # ------------------------------------------------------------ conv training
    def _image_data(n=8, nin=144, nc=10, seed=0):
        rng = np.random.default_rng(seed)

        def split(m):
            return Split(rng.random((m, nin)).astype(np.float32), rng.integers(0, nc, m), nc)

        return DatasetSplits(split(n), split(4), split(4), name="toy")

    CONV_TRAIN = [
        ("float64", {}),
        pytest.param(
            "float64",
            dict(kind="hopfield", estimator="symmetric", momentum=0.5, weight_decay=0.01),
            marks=SLOW,
        ),
        pytest.param("float32", dict(feedback="scaled", feedback_scale=0.5), marks=SLOW),
        # Scellier et al. 2023's red-black sweeps, fixed steps, in every phase
        ("float64", dict(method="gauss-seidel-parity", fixed_steps=True)),
        # free phases to a tolerance (red-black; Picard), nudged phases fixed steps
        pytest.param(
            "float64", dict(free_method="gauss-seidel-parity", free_atol=1e-4), marks=SLOW
        ),
        pytest.param("float64", dict(free_method="picard", free_atol=1e-6), marks=SLOW),
    ]

    @pytest.mark.parametrize("dtype,changes", CONV_TRAIN)
    def test_cuda_trainer_on_a_conv_network_equals_cpu(dtype, changes):
        """P-conv's settings on a small conv architecture (two conv layers, pooling,
        per-channel biases): two epochs of two minibatches on the device equal the CPU
        Trainer (history and every parameter by name)."""
        c = get_preset("ernoult2019-pconv").config.replace(
            architecture="1x12x12-c2k5-p2-c2k3-10",
            dtype=dtype,
            batch_size=4,
            epochs=2,
            T=4,
            K=2,
            eval_batch_size=4,
            **changes,
        )
        cpu = Trainer(c, data=_image_data(), quiet=True)
        cpu.run()
        gpu = Trainer(c.replace(device="cuda"), data=_image_data(), quiet=True)
        gpu.run()
        assert isinstance(gpu._device, gtrain.GraphDeviceRun)
        tol = 1e-12 if dtype == "float64" else 2e-5
        for k in HISTORY:
            np.testing.assert_allclose(
                gpu.history[k], cpu.history[k], rtol=tol, atol=tol, err_msg=k
            )
        if "free_atol" in changes:  # the free phases ran to the tolerance, not T steps
            assert min(gpu.history["free_iterations"]) > c.dynamics.phases.T
        start = (
            get_preset("ernoult2019-pconv")
            .config.replace(architecture="1x12x12-c2k5-p2-c2k3-10", dtype=dtype, **changes)
            .make_network()
            .parameters()
        )
        for name, want in cpu.net.parameters().items():
            got = gpu.net.parameters()[name]
            # float32: an entry near zero carries the rounding of its summands, whose size
            # is the tensor's scale, not its own; so atol is relative to max |W| (a fixed
            # atol of 1e-6 failed on h1.W by 1.4e-6 after the two epochs).
            scale = float(np.abs(want).max())
            atol = tol if dtype == "float64" else tol * scale
            np.testing.assert_allclose(got, want, rtol=tol, atol=atol, err_msg=name)
            if name.endswith(".W"):  # every coupling trained
                assert np.abs(want - start[name]).max() > 0, name
