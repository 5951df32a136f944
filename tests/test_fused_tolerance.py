"""``Dynamics(method="fused", fixed_steps=False)``: the fused path's synchronous steps,
stopped after the first step at which every sample of the batch meets the tolerance,
and ``DynamicsConfig.early_free`` (the free phases before ``free_from_epoch``).

The reference is naive: a Python loop of one ``method="fixed"`` step at a time, the
residual of each step computed in NumPy, the first step where all samples meet ``atol``.
"""

from __future__ import annotations

import numpy as np
import pytest

import solvers
from eqprop import Dynamics
from eqprop.config import DynamicsConfig, TrainConfig
from eqprop.network import init_network
from eqprop.phases import free_phase, nudged_phase, run_phase


def _net(dtype="float32", seed=0):
    return init_network((30, 20, 15, 10), dtype=dtype, seed=seed, activation="hardsigmoid")


def _x(net, B=7, seed=1):
    return np.random.default_rng(seed).random((B, net.sizes[0])).astype(net.dtype)


def _reference(net, x, atol, rtol, damping, cap):
    """(steps, state, residuals) by stepping one step at a time: method='fixed', or
    damped, one fused fixed step (the fused damped update ``(1 - a) s + a g(s)`` rounds
    differently from the solvers' Picard, in the last bits)."""
    one = Dynamics(T=1, method="fixed" if damping == 1.0 else "fused", damping=damping)
    s = net.zero_state(x.shape[0])
    for n in range(1, cap + 1):
        new = free_phase(net, x, one, s0=s).state
        r = np.abs(new.astype(np.float64) - s.astype(np.float64)).max(axis=1) / damping
        tol = atol + rtol * np.abs(new.astype(np.float64)).max(axis=1)
        s = new
        if np.all(r <= tol):
            return n, s, r
    return cap, s, r


@pytest.mark.parametrize(
    ("dtype", "atol", "rtol", "damping"),
    [
        ("float32", 1e-3, 0.0, 1.0),
        ("float64", 1e-4, 0.0, 1.0),
        ("float64", 1e-5, 1e-4, 1.0),
        ("float32", 1e-3, 0.0, 0.7),
    ],
)
def test_stops_at_the_first_step_where_the_whole_batch_converged(dtype, atol, rtol, damping):
    net = _net(dtype)
    x = _x(net)
    cap = 400
    n_ref, s_ref, r_ref = _reference(net, x, atol, rtol, damping, cap)
    assert 3 < n_ref < cap  # the case stops early, after more than a few steps
    dyn = Dynamics(T=cap, method="fused", fixed_steps=False, atol=atol, rtol=rtol, damping=damping)
    ph = free_phase(net, x, dyn)
    res = ph.result
    assert res.status == solvers.Status.CONVERGED
    assert res.converged.all() and not res.failed.any()
    np.testing.assert_array_equal(res.n_iter, np.full(x.shape[0], n_ref))
    assert res.nfev == n_ref
    np.testing.assert_array_equal(ph.state, s_ref)
    # bitwise the state of method="fixed" (and fused fixed steps) for that many steps
    if damping == 1.0:
        fixed = free_phase(net, x, Dynamics(T=n_ref, method="fixed"))
        np.testing.assert_array_equal(ph.state, fixed.state)
    fused = free_phase(net, x, Dynamics(T=n_ref, method="fused", damping=damping))
    np.testing.assert_array_equal(ph.state, fused.state)
    np.testing.assert_allclose(res.residual[n_ref - 1], r_ref, rtol=1e-12, atol=0)
    # one step fewer: some sample did not meet the tolerance yet
    _, _, r_before = _reference(net, x, atol, rtol, damping, n_ref - 1)
    s_before = free_phase(net, x, Dynamics(T=n_ref - 1, method="fused", damping=damping)).state
    tol_before = atol + rtol * np.abs(s_before.astype(np.float64)).max(axis=1)
    assert not np.all(r_before <= tol_before)


def test_per_sample_flags_and_mixed_batch():
    """Samples converge at different steps; the batch runs until the last one, every
    sample's flag is that of the final step."""
    net = _net("float64")
    x = _x(net, B=9, seed=3)
    n_ref, s_ref, r_ref = _reference(net, x, 1e-6, 0.0, 1.0, 1000)
    per_sample = [_reference(net, x[b : b + 1], 1e-6, 0.0, 1.0, 1000)[0] for b in range(9)]
    assert n_ref == max(per_sample) and min(per_sample) < n_ref
    ph = free_phase(net, x, Dynamics(T=1000, method="fused", fixed_steps=False, atol=1e-6))
    np.testing.assert_array_equal(ph.result.n_iter, n_ref)
    np.testing.assert_array_equal(ph.result.converged, r_ref <= 1e-6)
    np.testing.assert_array_equal(ph.state, s_ref)


@pytest.mark.parametrize("cap_by", ["T", "max_iter"])
def test_the_cap_runs_min_T_max_iter_steps_and_equals_fixed(cap_by):
    net = _net()
    x = _x(net)
    T, max_iter = (25, 1000) if cap_by == "T" else (1000, 25)
    dyn = Dynamics(T=T, max_iter=max_iter, method="fused", fixed_steps=False, atol=0.0)
    ph = free_phase(net, x, dyn)
    assert ph.result.status == solvers.Status.MAX_ITER
    np.testing.assert_array_equal(ph.result.n_iter, 25)
    assert ph.result.nfev == 25 and not ph.result.converged.any()
    assert "stopped after 25 of at most 25 steps" in ph.result.message
    ref = free_phase(net, x, Dynamics(T=25, method="fixed"))
    np.testing.assert_array_equal(ph.state, ref.state)
    np.testing.assert_array_equal(ph.result.residual[24], ref.result.residual[24])


def test_nudged_phase_and_steps_override_cap():
    net = _net()
    x = _x(net)
    d = np.eye(10, dtype=net.dtype)[np.arange(7) % 10]
    s0 = free_phase(net, x, Dynamics(T=40, method="fused")).state
    dyn = Dynamics(K=6, method="fused", fixed_steps=False, atol=0.0)
    ph = nudged_phase(net, x, d, 1.0, dyn, s0=s0)
    np.testing.assert_array_equal(ph.result.n_iter, 6)
    ref = nudged_phase(net, x, d, 1.0, Dynamics(K=6, method="fixed"), s0=s0)
    np.testing.assert_array_equal(ph.state, ref.state)


def test_refuses_what_it_cannot_honour():
    with pytest.raises(ValueError, match="cannot record the energy"):
        Dynamics(method="fused", fixed_steps=False, record_energy=True)
    # a diverging sample: failure reported, raise_on_failure raises
    net = init_network((4, 3, 2), dtype="float64", seed=0)
    net.weights[0][0, :] = np.nan  # input unit 0 drives every hidden unit with NaN
    x = np.ones((2, 4))
    dyn = Dynamics(T=200, method="fused", fixed_steps=False, atol=1e-6)
    with np.errstate(all="ignore"):
        ph = free_phase(net, x, dyn)
    assert ph.result.status == solvers.Status.FAILED and ph.result.failed.all()
    assert not ph.result.converged.any()
    np.testing.assert_array_equal(ph.result.n_iter, 200)  # NaN never meets the tolerance
    with np.errstate(all="ignore"), pytest.raises(solvers.SolverFailure):
        free_phase(net, x, Dynamics(**{**dyn.__dict__, "raise_on_failure": True}))


# ------------------------------------------------------------------ early_free config
def _cfg(**kw):
    base = dict(
        dataset="digits",
        architecture="64-32-10",
        T=100,
        K=4,
        lrs=(0.1, 0.05),
        epochs=2,
        seed=1,
        limit=200,
        persistent=True,
        method="fused",
        atol=1e-3,
        max_iter=100,
        free_method="gauss-seidel-parity",
        free_eps=1.0,
        free_damping=1.5,
        free_from_epoch=2,
    )
    base.update(kw)
    return TrainConfig.from_flat(base)


def test_early_free_config_validates_and_round_trips():
    with pytest.raises(ValueError, match=r"DynamicsConfig.early_free: unknown Dynamics field"):
        DynamicsConfig(early_free={"steps": 3})
    with pytest.raises(ValueError, match="early_free_T is 0"):
        _cfg(early_free_T=0)
    with pytest.raises(ValueError, match="unknown method 'nope' \\(early_free_method\\)"):
        _cfg(early_free_method="nope")
    cfg = _cfg(early_free_fixed_steps=False).validate()
    assert cfg.dynamics.early_free == {"fixed_steps": False}
    assert cfg.dynamics.free == {"method": "gauss-seidel-parity", "eps": 1.0, "damping": 1.5}
    flat = cfg.to_flat()
    assert flat["early_free_fixed_steps"] is False and flat["early_free_eps"] is None
    assert TrainConfig.from_flat({k: v for k, v in flat.items() if v is not None}) == cfg
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert cfg.replace(early_free_fixed_steps=None).dynamics.early_free == {}
    assert (
        TrainConfig().dynamics.early_free == {}
        and TrainConfig().to_flat()["early_free_fixed_steps"] is None
    )


@pytest.fixture(scope="module")
def digits():
    from eqprop.data import load_dataset

    return load_dataset("digits", data_dir=None)


def test_trainer_applies_early_free_to_the_free_phases_before_free_from_epoch(digits, tmp_path):
    from eqprop.train import Trainer

    cfg = _cfg(early_free_fixed_steps=False, output=str(tmp_path / "run"))
    tr = Trainer(cfg, digits, quiet=True)
    early = tr._epoch_free_dynamics()
    assert (early.method, early.is_fixed_steps, early.T, early.eps) == ("fused", False, 100, 0.5)
    ev = tr._epoch_free_dynamics(evaluation=True)
    assert (ev.method, ev.is_fixed_steps, ev.T) == ("fused", False, 100)
    assert tr._epoch_free_dynamics(epoch=2).method == "gauss-seidel-parity"
    assert tr.dyn.is_fixed_steps  # the nudged phases keep the paper's K steps
    h = tr.run(epochs=1).history
    assert 10 < float(h["free_iterations"][0]) < 95  # some minibatches stop early
    paper = Trainer(_cfg(), digits, quiet=True).run(epochs=1).history
    assert float(paper["free_iterations"][0]) == 100.0
    # resume: the early free phases' settings are part of the stored run, not changeable
    ck = tmp_path / "run" / "checkpoint.npz"
    assert Trainer.from_checkpoint(ck, digits, quiet=True).config.dynamics.early_free == {
        "fixed_steps": False
    }
    with pytest.raises(ValueError, match="cannot change early_free_fixed_steps when resuming"):
        Trainer.from_checkpoint(ck, digits, quiet=True, overrides={"early_free_fixed_steps": True})


def test_cli_flag_sets_early_free():
    from eqprop.cli import build_train_parser, config_from_args

    def cfg(argv):
        return config_from_args(build_train_parser().parse_args(argv))

    fast = cfg(["--preset", "scellier2017-2h", "--fast"])
    assert fast.dynamics.early_free == {}  # --fast keeps the paper's epoch 1 (docs/solvers.rst)
    early = cfg(["--preset", "scellier2017-2h", "--fast", "--no-early-free-fixed-steps"])
    assert early.dynamics.early_free == {"fixed_steps": False}
    assert not early.dynamics.early_free_dynamics().is_fixed_steps
    paper = cfg(["--preset", "scellier2017-2h", "--fast", "--early-free-fixed-steps"])
    assert paper.dynamics.early_free == {"fixed_steps": True}
    assert paper.dynamics.early_free_dynamics() == paper.dynamics.phases.__class__(
        **{**paper.dynamics.phases.__dict__, "fixed_steps": True}
    )
    helps = build_train_parser().format_help()
    assert "--early-free-fixed-steps" in helps


def test_cuda_refuses_the_fused_tolerance_run():
    """The CUDA fused path runs fixed steps only: it refuses instead of ignoring
    fixed_steps=False (an early_free epoch 1 with device='cuda')."""
    from eqprop.gpu import check_trainable
    from eqprop.gpu.dense import check_request
    from eqprop.presets import PRESETS, fast_settings

    fast = PRESETS["scellier2017-2h"].config.replace(**fast_settings("scellier2017-2h"))
    check_trainable(fast)  # --fast's epoch 1 is the paper's T steps: runs
    with pytest.raises(ValueError, match=r"method 'fused' to a tolerance.*early-free-fixed-steps"):
        check_trainable(fast.replace(early_free_fixed_steps=False))
    check_trainable(fast.replace(early_free_fixed_steps=True))
    with pytest.raises(ValueError, match=r"fused'.*fixed steps only"):
        check_request(_net(), Dynamics(method="fused", fixed_steps=False), False)


def test_graph_networks_off_the_chain_path_refuse_the_fused_tolerance_run():
    """The graph kernels' "fused" is Picard through the solvers, whose tolerance stops
    each sample on its own: not the whole-batch stop this option promises, so it raises
    instead of running something else; a dense tied chain runs it on the chain kernels."""
    from eqprop.graph.build import chain

    x = np.random.default_rng(0).random((3, 6))
    dyn = Dynamics(method="fused", fixed_steps=False, T=40, atol=1e-6)
    skip = chain((6, 5, 4, 3), skip=[(0, 2)], dtype="float64", seed=0)
    with pytest.raises(ValueError, match=r"fused.*dense chains only.*picard"):
        run_phase(skip, x, dyn)
    plain = chain((6, 5, 4, 3), dtype="float64", seed=0)
    ph = run_phase(plain, x, dyn)  # the chain path honours it
    assert ph.result.n_iter.max() <= 40
