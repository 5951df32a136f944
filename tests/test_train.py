"""Trainer: learning on digits, exact resume, history file, config round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqprop.train import (
    HISTORY_VARIABLES,
    TIMING_VARIABLES,
    TrainConfig,
    Trainer,
    load_checkpoint,
    parse_architecture,
)


@pytest.fixture(scope="module")
def digits():
    from eqprop.data import load_dataset

    return load_dataset("digits")


def _small(**kw):
    base = dict(
        dataset="digits",
        architecture="64-32-10",
        kind="hopfield",
        activation="hardsigmoid",
        T=15,
        K=4,
        eps=0.5,
        beta=1.0,
        estimator="random-sign",
        lrs=(0.1, 0.05),
        batch_size=20,
        epochs=4,
        seed=3,
        persistent=True,
    )
    base.update(kw)
    return TrainConfig.from_flat(base)


def test_training_lowers_test_error_far_below_chance(digits):
    """Chance is 90 % error on 10 balanced classes; 6 epochs of EP must get below 20 %."""
    trainer = Trainer(_small(epochs=6), digits, quiet=True)
    before, _ = trainer.evaluate(digits.test)
    assert before > 0.6  # untrained network: near chance
    result = trainer.run()
    err = result.history["test_error"].values
    assert err.shape == (6,)
    assert err[-1] < 0.20, err
    assert err[-1] < before - 0.4
    # training error measured during the epoch decreases too
    assert result.history["train_error"].values[-1] < result.history["train_error"].values[0]


@pytest.mark.parametrize("persistent", [True, False])
def test_resume_is_bit_identical(tmp_path, digits, persistent):
    cfg = _small(momentum=0.5, weight_decay=1e-4, limit=120, epochs=4, persistent=persistent)
    full = Trainer(cfg.replace(output=str(tmp_path / "full")), digits, quiet=True)
    full.run()

    part = Trainer(cfg.replace(epochs=2, output=str(tmp_path / "part")), digits, quiet=True)
    part.run()
    ckpt = tmp_path / "part" / "checkpoint.npz"
    resumed = Trainer.from_checkpoint(
        ckpt, digits, overrides={"epochs": 4, "output": str(tmp_path / "part")}, quiet=True
    )
    assert resumed.epoch == 2
    resumed.run()

    for a, b in zip(full.net.weights + full.net.biases, resumed.net.weights + resumed.net.biases):
        np.testing.assert_array_equal(a, b)
    for k in HISTORY_VARIABLES:
        if k not in TIMING_VARIABLES:
            np.testing.assert_array_equal(full.history[k], resumed.history[k], err_msg=k)
    if persistent:
        np.testing.assert_array_equal(full.particles, resumed.particles)
    assert full.optimizer.vW is not None
    for a, b in zip(full.optimizer.vW, resumed.optimizer.vW):
        np.testing.assert_array_equal(a, b)
    assert full.rng.bit_generator.state == resumed.rng.bit_generator.state
    # files get the usual mode (not mkstemp's 0600); no temporary files left behind
    import os

    umask = os.umask(0)
    os.umask(umask)
    for name in ("checkpoint.npz", "config.json", "history.nc"):
        assert (tmp_path / "part" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert sorted(p.name for p in (tmp_path / "part").iterdir()) == [
        "checkpoint.npz",
        "config.json",
        "history.nc",
    ]


def test_checkpoint_contents_and_bad_resume(tmp_path, digits):
    cfg = _small(limit=60, epochs=1, output=str(tmp_path))
    Trainer(cfg, digits, quiet=True).run()
    config, arrays = load_checkpoint(tmp_path / "checkpoint.npz")
    assert config == cfg
    assert all(a.dtype != object for a in arrays.values())
    assert int(arrays["epoch"]) == 1
    assert arrays["particles"].shape == (60, 42)
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as npz:
        assert "rng_state" in npz.files
    with pytest.raises(ValueError, match="cannot change"):
        Trainer.from_checkpoint(tmp_path / "checkpoint.npz", digits, overrides={"beta": 0.5})
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(tmp_path / "junk.npz")


def test_history_netcdf_roundtrip_recreates_config(tmp_path, digits):
    from eqprop.provenance import open_netcdf

    cfg = _small(limit=80, epochs=2, output=str(tmp_path), momentum=0.3)
    trainer = Trainer(cfg, digits, quiet=True, command=["eqprop", "train", "--x"])
    result = trainer.run()
    ds = open_netcdf(tmp_path / "history.nc")
    assert list(ds["epoch"].values) == [1, 2]
    for k in HISTORY_VARIABLES:
        np.testing.assert_array_equal(ds[k].values, result.history[k].values)
        assert ds[k].attrs["long_name"] and ds[k].attrs["units"]
    assert TrainConfig.from_json(ds.attrs["config"]) == cfg
    assert ds.attrs["history"] == "eqprop train --x"
    for key in ("created_at", "eqprop_version", "numpy_version", "numba_version"):
        assert key in ds.attrs
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.to_dict()


def test_config_json_roundtrip_and_validation():
    cfg = _small(lrs=(0.3, 0.2), eval_T=50, limit=7, data_dir="/x")
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert parse_architecture("784-500-10") == (784, 500, 10)
    with pytest.raises(ValueError, match="learning rate"):
        _small(lrs=(0.1,)).validate()
    with pytest.raises(ValueError, match="beta = 0"):
        _small(beta=0.0).validate()
    with pytest.raises(ValueError, match="architecture"):
        _small(architecture="64-x-10").validate()
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({"betta": 1.0})


def test_bad_data_is_rejected_before_training(digits):
    with pytest.raises(ValueError, match="input layer of 784"):
        Trainer(_small(architecture="784-32-10"), digits, quiet=True)
    from eqprop.data import DatasetSplits, Split

    x = digits.train.x.copy()
    x[3, 5] = np.nan
    bad = DatasetSplits(Split(x, digits.train.labels.copy()), digits.valid, digits.test)
    with pytest.raises(ValueError, match="NaN"):
        Trainer(_small(), bad, quiet=True)


def test_free_solver_settings_reach_the_free_phases_only(digits):
    """free_method/free_eps/free_damping: the training and evaluation free phases run
    block Gauss-Seidel to atol (fewer iterations than T), the nudged phases keep K
    fixed steps, and training follows the run with T fixed steps (T = 40 reaches the
    same equilibria); the settings round-trip through JSON and bad ones are rejected."""
    cfg = _small(epochs=3, T=40, free_method="gauss-seidel-parity", free_eps=1.0, free_damping=1.5)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    trainer = Trainer(cfg, digits, quiet=True)
    assert trainer.free_dyn.method == "gauss-seidel-parity"
    assert (trainer.free_dyn.eps, trainer.free_dyn.damping) == (1.0, 1.5)
    assert not trainer.free_dyn.is_fixed_steps
    assert trainer.eval_dyn.method == "gauss-seidel-parity"
    assert (trainer.dyn.method, trainer.dyn.eps, trainer.dyn.damping) == ("fixed", 0.5, 1.0)
    h = trainer.run().history
    plain = Trainer(_small(epochs=3, T=40), digits, quiet=True).run().history
    assert (h["free_converged"].values == 1.0).all()
    assert (h["free_iterations"].values < 20).all()
    assert (plain["free_iterations"].values == 40).all()
    np.testing.assert_allclose(h["test_error"].values, plain["test_error"].values, atol=0.03)
    assert h["test_error"].values[-1] < 0.45
    with pytest.raises(ValueError, match="damping applies"):
        Trainer(_small(free_method="rk4", free_damping=1.5), digits, quiet=True)
    with pytest.raises(ValueError, match="free_eps"):
        _small(free_eps=0.0).validate()


def test_resume_may_switch_the_free_phase_solver(tmp_path, digits):
    """The free-phase solver settings may change on resume (announced, not exact): the
    continued run uses the new solver, the other settings and the state come from the
    checkpoint."""
    import io

    cfg = _small(limit=200, epochs=1, T=40, output=str(tmp_path))
    Trainer(cfg, digits, quiet=True).run()
    stream = io.StringIO()
    changes = {"epochs": 2, "free_method": "gauss-seidel-parity", "free_eps": 1.0}
    ckpt = tmp_path / "checkpoint.npz"
    t = Trainer.from_checkpoint(ckpt, digits, overrides=changes, stream=stream)
    assert "changed solver settings" in stream.getvalue() and "free_method" in stream.getvalue()
    f = t.config.to_flat()
    assert (
        f["free_method"],
        f["free_eps"],
        f["T"],
    ) == ("gauss-seidel-parity", 1.0, 40)
    assert t.free_dyn.method == "gauss-seidel-parity" and t.dyn.method == "fixed"
    h = t.run().history
    assert h["free_iterations"].values[0] == 40 and h["free_iterations"].values[1] < 40
    # settings equal to the checkpoint's (now the resumed run's) are not a change
    stream = io.StringIO()
    same = {"free_method": "gauss-seidel-parity", "free_eps": 1.0, "atol": cfg.to_flat()["atol"]}
    Trainer.from_checkpoint(tmp_path / "checkpoint.npz", digits, overrides=same, stream=stream)
    assert "changed solver" not in stream.getvalue()


def test_script_protocol_options_no_shuffle_and_eval_particles(tmp_path, digits):
    """shuffle=False visits the data in order (the generator is not drawn from);
    eval_persistent=True starts each evaluation free phase from the sample's state at the
    previous evaluation, and a resumed run continues it bit-identically."""
    from eqprop.phases import free_phase

    cfg = _small(
        limit=120, epochs=1, estimator="one-sided", shuffle=False, eval_persistent=True, T=5
    )
    t = Trainer(cfg, digits, quiet=True)
    state0 = json.dumps(t.rng.bit_generator.state)
    t.train_epoch()
    assert json.dumps(t.rng.bit_generator.state) == state0  # nothing drawn: data order kept
    shuffled = Trainer(cfg.replace(shuffle=True), digits, quiet=True)
    shuffled.train_epoch()
    assert json.dumps(shuffled.rng.bit_generator.state) != state0

    valid = t.data.valid
    p = t.eval_particles["valid"]
    assert p.shape == (valid.x.shape[0], t.net.n_state) and not p.any()
    t.evaluate(valid, p)
    first = p.copy()
    expected = free_phase(t.net, valid.x.astype(np.float32), t.eval_dyn).state
    np.testing.assert_array_equal(first, expected)  # from zero the first time
    t.evaluate(valid, p)
    np.testing.assert_array_equal(p, free_phase(t.net, valid.x, t.eval_dyn, s0=first).state)
    assert not np.array_equal(p, first)  # T=5 steps more: the particles moved on

    # exact resume with evaluation particles
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    full = Trainer(cfg.replace(epochs=3, output=str(out_a)), digits, quiet=True).run()
    Trainer(cfg.replace(epochs=2, output=str(out_b)), digits, quiet=True).run()
    resumed = Trainer.from_checkpoint(
        out_b / "checkpoint.npz", digits, overrides={"epochs": 3}, quiet=True
    ).run()
    np.testing.assert_array_equal(
        full.history["valid_error"].values, resumed.history["valid_error"].values
    )
    _, arr_a = load_checkpoint(out_a / "checkpoint.npz")
    _, arr_b = load_checkpoint(out_b / "checkpoint.npz")
    for key in ("valid_particles", "test_particles", "W0", "particles"):
        np.testing.assert_array_equal(arr_a[key], arr_b[key])


def test_train_on_valid_trains_on_both_splits(tmp_path, digits):
    """train_on_valid: the training set is train + valid in that order (Ernoult et al.
    2019 train on all 60,000 MNIST images), the validation error is NaN, the particles
    cover every training sample, and the setting cannot change on resume."""
    cfg = _small(epochs=1, train_on_valid=True, output=str(tmp_path))
    t = Trainer(cfg, digits, quiet=True)
    n_tr, n_va = digits.train.x.shape[0], digits.valid.x.shape[0]
    assert t.x_train.shape[0] == n_tr + n_va
    np.testing.assert_array_equal(t.x_train[n_tr:], digits.valid.x)
    np.testing.assert_array_equal(t.y_train[:n_tr], digits.train.labels)
    assert t.particles is not None and t.particles.shape[0] == n_tr + n_va
    h = t.run().history
    assert np.isnan(h["valid_error"].values).all()
    assert np.isfinite(h["test_error"].values).all()
    assert (h.attrs["n_train"], h.attrs["n_valid"]) == (n_tr + n_va, 0)
    with pytest.raises(ValueError, match="train_on_valid"):
        Trainer.from_checkpoint(
            tmp_path / "checkpoint.npz", digits, overrides={"train_on_valid": False}
        )


def test_stuck_output_units_are_counted_and_reported(digits):
    """An output unit clipped for every test input (bias far below 0 or above 1) is
    counted in the history and named once in a warning line; a healthy run reports 0."""
    import io

    cfg = _small(epochs=2, lrs=(1e-6, 1e-6))
    stream = io.StringIO()
    t = Trainer(cfg, digits, stream=stream)
    t.net.biases[-1][3] = -50.0  # unit 3 dead: its drive is far below 0 for every input
    t.net.biases[-1][7] = 50.0  # unit 7 saturated at 1
    h = t.run().history
    assert t.stuck_output_units() == ([3], [7])
    np.testing.assert_array_equal(h["stuck_outputs"].values, [2.0, 2.0])
    warnings = [line for line in stream.getvalue().splitlines() if "warning:" in line]
    assert len(warnings) == 1, warnings
    assert "unit(s) 3 at 0" in warnings[0] and "unit(s) 7 at 1" in warnings[0]
    healthy = Trainer(_small(epochs=1), digits, quiet=True).run().history
    np.testing.assert_array_equal(healthy["stuck_outputs"].values, [0.0])
    # a class missing from the evaluated samples is no evidence of a dead unit
    few = Trainer(_small(epochs=0, lrs=(1e-6, 1e-6)), digits, quiet=True)
    few.net.biases[-1][3] = -50.0
    keep = digits.test.labels != 3
    from eqprop.data import Split

    without_3 = Split(np.ascontiguousarray(digits.test.x[keep]), digits.test.labels[keep], 10)
    few.evaluate(without_3)
    assert few.stuck_output_units() == ([], [])
    few.evaluate(digits.test)
    assert few.stuck_output_units()[0] == [3]


# ------------------------------------------------------------------------------------
# failed phases stop training loudly; missed tolerances warn (issue #10)


@pytest.mark.parametrize("method", ["picard", "fused"])
def test_a_diverging_phase_stops_training_naming_phase_epoch_and_settings(digits, method):
    """tanh with eps = 5 blows the free state up (|s| > 1e7 within 20 steps): training
    must stop at the first minibatch with PhaseDiverged (a ValueError) naming the phase,
    epoch, minibatch, the failed sample count and the settings that control it, and
    must not blame the learning rates (the weights are still the initial ones)."""
    from eqprop.train import PhaseDiverged, TrainingDiverged

    cfg = _small(activation="tanh", eps=5.0, method=method, epochs=3, limit=100)
    trainer = Trainer(cfg, digits, quiet=True)
    with pytest.raises(PhaseDiverged) as info:
        trainer.run()
    assert isinstance(info.value, ValueError) and isinstance(info.value, TrainingDiverged)
    msg = str(info.value)
    for needle in (
        "free phase of epoch 1, minibatch 1",
        "20 of 20 samples failed",
        "divergence bound",
        "eps=5.0",
        f"method={method!r}",
        "damping=1.0",
        "activation='tanh'",
    ):
        assert needle in msg, (needle, msg)
    assert "learning rate" not in msg and "lrs" not in msg
    assert trainer.epoch == 0 and trainer.history["test_error"] == []


@pytest.mark.parametrize("estimator", ["one-sided", "symmetric"])
def test_nan_weights_on_the_fused_path_name_the_free_phase_and_the_parameter(digits, estimator):
    """A NaN weight makes the fused free phase's state NaN: training must stop with the
    free phase's TrainingDiverged naming the parameter, not with a nudged phase's
    complaint about its start state (``s0 contains NaN``), which it gave before."""
    from eqprop.train import PhaseDiverged, TrainingDiverged

    cfg = _small(kind="prototypical", method="fused", estimator=estimator, persistent=False)
    trainer = Trainer(cfg.replace(epochs=1, limit=40), digits, quiet=True)
    trainer.net.weights[1][0, 0] = np.nan
    with pytest.raises(TrainingDiverged) as info:
        trainer.train_epoch()
    msg = str(info.value)
    assert not isinstance(info.value, PhaseDiverged), msg
    assert "free phase of epoch 1, minibatch 1" in msg and "W2" in msg, msg
    assert "s0" not in msg, msg


@pytest.mark.parametrize("rule", ["ep", "continual"])
def test_a_free_phase_ending_in_nan_is_refused_before_any_nudged_phase(rule):
    """LearningRule.estimate raises FreePhaseFailed (a ValueError) carrying the failed
    free phase, and runs no nudged phase from the NaN state (no update is applied)."""
    from eqprop.network import init_network
    from eqprop.phases import Dynamics
    from eqprop.rules import ContinualEP, EquilibriumPropagation, FreePhaseFailed

    net = init_network((4, 3, 2), kind="prototypical", dtype="float64", seed=0)
    net.weights[0][0, 0] = np.nan
    x = np.ones((5, 4))
    d = np.zeros((5, 2))
    dyn = Dynamics(T=5, K=2, method="fused")
    applied = []
    with pytest.raises(FreePhaseFailed) as info:
        if rule == "ep":
            EquilibriumPropagation(beta=0.5).estimate(net, x, d, dyn)
        else:
            ContinualEP(0.5).estimate(net, x, d, dyn, apply=lambda *a: applied.append(a))
    assert applied == []
    assert info.value.phase.state.shape == (5, net.n_state)
    assert "5 of 5 samples" in str(info.value)


def test_a_phase_that_misses_its_tolerance_warns_once_per_epoch(digits):
    """Phases solved to a tolerance (picard) that stop at max_iter before atol: one
    warning line per epoch with the fractions, which the history records; fixed-step
    runs (the papers' T/K steps) get no such warning."""
    import io

    stream = io.StringIO()
    cfg = _small(method="picard", max_iter=3, atol=1e-9, epochs=2, limit=60)
    h = Trainer(cfg, digits, stream=stream).run().history
    warnings = [ln for ln in stream.getvalue().splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2, stream.getvalue()
    assert "epoch 1:" in warnings[0] and "epoch 2:" in warnings[1]
    assert (
        "free phase (picard, atol=1e-09, rtol=0, max_iter=3) missed its tolerance on "
        "60 of 60 training samples (100%)" in warnings[0]
    ), warnings[0]
    assert "nudged phase (picard, atol=1e-09" in warnings[0]
    assert "100% of the nudged phases' samples" in warnings[0]
    np.testing.assert_array_equal(h["free_converged"].values, [0.0, 0.0])
    np.testing.assert_array_equal(h["nudged_converged"].values, [0.0, 0.0])
    stream = io.StringIO()
    Trainer(_small(epochs=1, limit=60), digits, stream=stream).run()
    assert "warning:" not in stream.getvalue()


def test_tolerance_warning_counts_the_few_misses_with_the_free_phase_own_settings(digits):
    """One free phase in 60 missing its tolerance is "1 of 60" (1.67 %), not a met
    share rounded to "100.0%"; the free phase's line names its own atol and max_iter
    (here changed by DynamicsConfig.free), the nudged phases' theirs; a phase that met
    its tolerance everywhere is not mentioned."""
    cfg = _small(
        method="picard", atol=1e-4, max_iter=40, free_atol=1e-3, free_max_iter=7, epochs=1, limit=60
    )
    trainer = Trainer(cfg, digits, quiet=True)
    trainer.epoch = 1
    row = {"free_converged": 59 / 60, "nudged_converged": 1.0}
    line = trainer._tolerance_warning(row)
    assert line.startswith(
        "warning: epoch 1: the free phase (picard, atol=0.001, rtol=0, "
        "max_iter=7) missed its tolerance on 1 of 60 training samples "
        "(1.67%)"
    ), line
    assert "nudged" not in line.split("(history")[0]
    row = {"free_converged": 1.0, "nudged_converged": 0.9995}
    line = trainer._tolerance_warning(row)
    assert (
        "the nudged phase (picard, atol=0.0001, rtol=0, max_iter=40) missed its "
        "tolerance on 0.05% of the nudged phases' samples" in line
    ), line
    assert "free phase" not in line
    assert trainer._tolerance_warning({"free_converged": 1.0, "nudged_converged": 1.0}) == ""


def test_cli_issue_case_fails_loudly_with_exit_2(capsys):
    """The command of issue #10 ran 3 epochs at loss 2.8e14 and exited 0."""
    from eqprop.cli import main

    argv = "train --preset digits --epochs 3 --activation tanh --method picard --eps 5"
    rc = main(argv.split())
    _, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.startswith("eqprop: error:")]
    assert rc == 2, err
    assert len(lines) == 1 and "free phase of epoch 1" in lines[0] and "eps=5.0" in lines[0]


# ------------------------------------------------------------------------------------
# thread counts chosen on purpose (issue #10)


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize(("threads", "expected"), [(None, 1), (2, 2)])
def test_run_sets_the_blas_threads_then_restores_them(digits, threads, expected):
    """Inside the epochs every loaded BLAS library (numpy's and scipy's OpenBLAS) runs
    the chosen count: 1 by default for minibatches of 20, or --threads; afterwards the
    caller's setting is back. The choice is printed once."""
    import io

    from threadpoolctl import threadpool_limits

    from eqprop.train import choose_threads

    seen: list[list[int]] = []
    stream = io.StringIO()
    with threadpool_limits(limits=3, user_api="blas"):
        t = Trainer(_small(epochs=2, limit=40, threads=threads), digits, stream=stream)
        epoch = t.train_epoch

        def spy():
            seen.append(_blas_threads())
            return epoch()

        t.train_epoch = spy  # type: ignore[method-assign]
        t.run()
        after = _blas_threads()
    assert len(seen) == 2 and len(seen[0]) >= 2  # numpy's and scipy's copies
    assert all(n == expected for row in seen for n in row), seen
    assert all(n == 3 for n in after)
    lines = [ln for ln in stream.getvalue().splitlines() if ln.startswith("threads:")]
    assert len(lines) == 1 and f"threads: {expected} BLAS thread(s)" in lines[0], lines
    assert choose_threads(_small(batch_size=1000))[0] >= 1
    assert choose_threads(_small(threads=5)) == (5, "threads setting (--threads)")
    with pytest.raises(ValueError, match="threads is 0"):
        _small(threads=0).validate()


def test_first_epoch_line_reports_numba_compilation(digits):
    """A kernel compiled during epoch 1 shows as "(of which X s Numba compilation)" on
    that epoch's line and in history.compile_time; epoch 2 compiles nothing."""
    import io

    import numba

    @numba.njit(cache=False)
    def fresh(a):  # compiled at its first call, inside epoch 1
        return a.sum() * 2.0

    stream = io.StringIO()
    t = Trainer(_small(epochs=2, limit=40), digits, stream=stream)
    epoch = t.train_epoch

    def with_fresh_kernel():
        fresh(np.ones(3))
        return epoch()

    t.train_epoch = with_fresh_kernel  # type: ignore[method-assign]
    h = t.run().history
    lines = [ln for ln in stream.getvalue().splitlines() if ln.startswith("epoch ")]
    assert "Numba compilation)" in lines[0], lines
    assert "Numba compilation" not in lines[1], lines
    compile_time = h["compile_time"].values
    assert compile_time[0] >= 0.05 and compile_time[1] < 0.05


# ------------------------------------------------------------------------------------
# faults: stale temporary files, output folders (issue #10)


def test_stale_checkpoint_temporaries_are_removed_by_the_next_write(tmp_path, digits):
    """A checkpoint temporary left by a killed writer (unlocked) goes at the next write;
    one a live writer holds (flock) and files not of eqprop's pattern stay."""
    import fcntl
    import os

    stale = tmp_path / ".checkpoint.npz.ab_cd123.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / ".checkpoint.npz.live0000.tmp"
    live.write_bytes(b"being written")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    foreign = [tmp_path / ".checkpoint.npz.short.tmp", tmp_path / "notes.tmp"]
    for p in foreign:
        p.write_text("not eqprop's")
    try:
        Trainer(_small(epochs=1, limit=40, output=str(tmp_path)), digits, quiet=True).run()
        assert not stale.exists()
        assert live.exists() and all(p.exists() for p in foreign)
    finally:
        os.close(fd)
    from eqprop._files import remove_stale_temporaries

    assert remove_stale_temporaries(tmp_path / "checkpoint.npz") == [live]  # lock released


def test_kill_9_during_a_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    """A real SIGKILL inside atomic_path (the checkpoint writer) leaves its temporary
    file; the kernel drops the writer's lock, so the next write removes it."""
    import signal
    import subprocess
    import sys
    import time

    from eqprop._files import atomic_path

    target = tmp_path / "checkpoint.npz"
    code = (
        "import sys, time\n"
        "from eqprop._files import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'x' * 1000)\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        left = list(tmp_path.glob(".checkpoint.npz.*.tmp"))
        assert len(left) == 1
        from eqprop._files import remove_stale_temporaries

        assert remove_stale_temporaries(target) == []  # its writer is alive: kept
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(0.05)
    assert left[0].exists() and not target.exists()
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_an_output_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path, digits):
    from eqprop.train import OutputExists, train

    cfg = _small(epochs=1, limit=40, output=str(tmp_path / "run"))
    train(cfg, digits, quiet=True)
    with pytest.raises(OutputExists) as info:
        Trainer(cfg.replace(architecture="64-16-10"), digits, quiet=True)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "--resume" in msg and "--overwrite" in msg and str(tmp_path / "run") in msg
    # its own checkpoint may be resumed into it
    resumed = train(cfg.replace(epochs=2), digits, resume=tmp_path / "run" / "checkpoint.npz")
    assert resumed.history.sizes["epoch"] == 2
    # overwrite: the old run's files are replaced by the new run's
    other = cfg.replace(architecture="64-16-10")
    train(other, digits, quiet=True, overwrite=True)
    config, arrays = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert config.to_flat()["architecture"] == "64-16-10" and int(arrays["epoch"]) == 1


@pytest.mark.parametrize("where", ["file", "below_file"])
def test_an_output_that_is_a_file_is_a_clear_error(tmp_path, digits, where):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "run"
    with pytest.raises(ValueError, match="is a file") as info:
        Trainer(_small(epochs=1, limit=20, output=str(out)), digits, quiet=True)
    assert str(out) in str(info.value) and "Errno" not in str(info.value)


def test_cli_output_checks_exit_2(tmp_path, capsys):
    from eqprop.cli import main

    run = tmp_path / "run"
    base = ["train", "--preset", "digits", "--epochs", "1", "--limit", "40", "-q"]
    assert main([*base, "-o", str(run)]) == 0
    capsys.readouterr()
    assert main([*base, "-o", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and err.count("eqprop: error:") == 1
    assert main([*base, "-o", str(run), "--overwrite"]) == 0
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    assert main([*base, "-o", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Errno" not in err


# ------------------------------------------------------------------------------------
# persistent particles (Scellier & Bengio 2017): stored, and used as the next start


def _spy_on_estimates(trainer):
    """Record (s0, x, free state) of every rule.estimate call of ``trainer``."""
    calls = []
    estimate = trainer.rule.estimate

    def spy(net, x, d, dyn, rng=None, s0=None, free_dyn=None):
        step = estimate(net, x, d, dyn, rng=rng, s0=s0, free_dyn=free_dyn)
        calls.append((None if s0 is None else s0.copy(), x.copy(), step.free.state.copy()))
        return step

    trainer.rule.estimate = spy
    return calls


def _epoch_order(trainer) -> np.ndarray:
    """The permutation the next epoch will draw (a copy of the training generator)."""
    g = np.random.Generator(np.random.PCG64())
    g.bit_generator.state = trainer.rng.bit_generator.state
    return g.permutation(trainer.x_train.shape[0])


def test_persistent_particles_store_each_free_state_and_start_the_next_epoch(digits):
    """After an epoch, particle i equals the free state sample i reached in that epoch
    (shuffled order), and the next epoch's free phase of sample i starts from it; the
    first epoch starts from zero."""
    t = Trainer(_small(epochs=2, limit=60, T=3), digits, quiet=True)
    bs = t.config.to_flat()["batch_size"]
    calls = _spy_on_estimates(t)
    order1 = _epoch_order(t)
    t.train_epoch()
    assert len(calls) == 3
    stored = np.zeros_like(t.particles)
    for k, (s0, x, free) in enumerate(calls):
        idx = order1[k * bs : (k + 1) * bs]
        np.testing.assert_array_equal(x, t.x_train[idx])  # the order is the one predicted
        assert s0 is not None and not s0.any()  # epoch 1: from zero
        stored[idx] = free
    assert stored.any()
    np.testing.assert_array_equal(t.particles, stored)
    calls.clear()
    order2 = _epoch_order(t)
    assert not np.array_equal(order1, order2)
    t.train_epoch()
    for k, (s0, _, _) in enumerate(calls):
        np.testing.assert_array_equal(s0, stored[order2[k * bs : (k + 1) * bs]])
    # without persistence every free phase starts from zero (s0 None)
    plain = Trainer(_small(epochs=1, limit=40, persistent=False), digits, quiet=True)
    plain_calls = _spy_on_estimates(plain)
    plain.train_epoch()
    assert plain.particles is None and all(s0 is None for s0, _, _ in plain_calls)
