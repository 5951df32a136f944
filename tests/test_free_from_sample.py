"""``DynamicsConfig.free_from_sample``: the switch to the ``free`` settings inside epoch
``free_from_epoch``, at a minibatch boundary (docs/solvers.rst, "Switching inside the
first epoch")."""

from __future__ import annotations

import numpy as np
import pytest

from eqprop.config import TrainConfig


def _cfg(**kw):
    base = dict(
        dataset="digits",
        architecture="64-32-10",
        T=30,
        K=4,
        lrs=(0.1, 0.05),
        epochs=2,
        seed=1,
        limit=200,
        batch_size=20,
        persistent=True,
        atol=1e-3,
        max_iter=60,
        free_method="gauss-seidel-parity",
        free_eps=1.0,
        free_damping=1.5,
        free_from_epoch=1,
        free_from_sample=80,
    )
    base.update(kw)
    return TrainConfig.from_flat(base)


@pytest.fixture(scope="module")
def digits():
    from eqprop.data import load_dataset

    return load_dataset("digits", data_dir=None)


def _recording_trainer(cfg, digits):
    """A Trainer whose rule records, per training minibatch, the free Dynamics it was
    given and the free phase's iterations; its evaluation records its Dynamics."""
    from eqprop.train import Trainer

    tr = Trainer(cfg, digits, quiet=True)
    seen: list[tuple[int, object, np.ndarray]] = []
    estimate = tr.rule.estimate

    def recording(net, x, d, dyn, **kw):
        step = estimate(net, x, d, dyn, **kw)
        seen.append((tr.epoch + 1, kw["free_dyn"], step.free.result.n_iter.copy()))
        return step

    tr.rule.estimate = recording  # type: ignore[method-assign]
    evaluated: list[tuple[int, object]] = []
    free_phase = tr._free_phase

    def recording_free_phase(net, x, dyn, *a, **kw):
        evaluated.append((tr.epoch + 1, dyn))  # the epoch just trained
        return free_phase(net, x, dyn, *a, **kw)

    tr._free_phase = recording_free_phase
    return tr, seen, evaluated


def test_the_first_samples_keep_the_earlier_phase_and_the_rest_switch(digits):
    """Epoch 1, 200 samples in minibatches of 20, switch at sample 80: minibatches 1-4
    run the phases' own T fixed steps (30 iterations for every sample), 5-10 the free
    settings (Gauss-Seidel to atol, fewer iterations); epoch 2 and the evaluation after
    epoch 1 run the free settings too."""
    tr, seen, evaluated = _recording_trainer(_cfg(), digits)
    tr.run()
    epoch1 = [(dyn, it) for e, dyn, it in seen if e == 1]
    epoch2 = [dyn for e, dyn, _ in seen if e == 2]
    assert len(epoch1) == 10 and len(epoch2) == 10
    for dyn, iters in epoch1[:4]:
        assert dyn.method == "fixed" and dyn.T == 30
        np.testing.assert_array_equal(iters, 30)
    for dyn, iters in epoch1[4:]:
        assert dyn is tr.free_dyn and dyn.method == "gauss-seidel-parity"
        assert iters.max() < 30
    assert all(dyn is tr.free_dyn for dyn in epoch2)
    # the evaluation after epoch 1 has the free settings
    after1 = {dyn.method for e, dyn in evaluated if e == 1}
    assert after1 == {"gauss-seidel-parity"}, after1
    # the history's mean iterations of epoch 1 are the two parts' (80 x 30 + the rest)
    rest = sum(int(it.sum()) for _, it in epoch1[4:])
    assert float(tr.history["free_iterations"][0]) == pytest.approx((80 * 30 + rest) / 200)


def test_the_switch_in_a_later_epoch_and_the_default(digits):
    """free_from_epoch=2, free_from_sample=40: epoch 1 wholly the earlier phase, epoch 2
    its first two minibatches; the evaluation after epoch 1 is the earlier phase's.
    free_from_sample=0 (default) switches at the start of the epoch."""
    tr, seen, evaluated = _recording_trainer(_cfg(free_from_epoch=2, free_from_sample=40), digits)
    tr.run()
    methods = [(e, dyn.method) for e, dyn, _ in seen]
    assert methods[:10] == [(1, "fixed")] * 10
    assert methods[10:12] == [(2, "fixed")] * 2
    assert methods[12:] == [(2, "gauss-seidel-parity")] * 8
    assert {dyn.method for e, dyn in evaluated if e == 1} == {"fixed"}
    assert {dyn.method for e, dyn in evaluated if e == 2} == {"gauss-seidel-parity"}
    tr, seen, _ = _recording_trainer(_cfg(free_from_sample=0), digits)
    tr.run(epochs=1)
    assert {dyn.method for _, dyn, _ in seen} == {"gauss-seidel-parity"}


def test_bad_values_are_refused(digits):
    from eqprop.train import Trainer

    with pytest.raises(ValueError, match="free_from_sample is -20; give an integer >= 0"):
        _cfg(free_from_sample=-20).validate()
    with pytest.raises(ValueError, match="free_from_sample=30 is not a multiple of batch_size=20"):
        _cfg(free_from_sample=30).validate()
    with pytest.raises(ValueError, match="free_from_sample is True"):
        _cfg(free_from_sample=True).validate()
    with pytest.raises(ValueError, match="free_from_sample=200 but the run has 200 training"):
        Trainer(_cfg(free_from_sample=200), digits, quiet=True)


def test_round_trip_cli_resume_and_cuda(digits, tmp_path):
    from eqprop.cli import build_train_parser, config_from_args
    from eqprop.gpu import check_trainable
    from eqprop.presets import PRESETS, fast_settings
    from eqprop.train import Trainer

    cfg = _cfg(output=str(tmp_path / "run")).validate()
    assert cfg.to_flat()["free_from_sample"] == 80
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert TrainConfig().dynamics.free_from_sample == 0
    args = ["--preset", "scellier2017-2h", "--fast", "--free-from-epoch", "1"]
    parsed = config_from_args(
        build_train_parser().parse_args([*args, "--free-from-sample", "10000"])
    )
    assert (parsed.dynamics.free_from_epoch, parsed.dynamics.free_from_sample) == (1, 10000)
    assert "--free-from-sample" in build_train_parser().format_help()
    # a stored run keeps its switch; it cannot change on resume
    Trainer(cfg, digits, quiet=True).run(epochs=1)
    ck = tmp_path / "run" / "checkpoint.npz"
    assert Trainer.from_checkpoint(ck, digits, quiet=True).config.dynamics.free_from_sample == 80
    with pytest.raises(ValueError, match="cannot change free_from_sample when resuming"):
        Trainer.from_checkpoint(ck, digits, quiet=True, overrides={"free_from_sample": 40})
    # the CUDA epoch has no switch inside an epoch: refused, not ignored
    fast = PRESETS["scellier2017-2h"].config.replace(**fast_settings("scellier2017-2h"))
    check_trainable(fast)
    with pytest.raises(ValueError, match="device='cuda' cannot train free_from_sample=10000"):
        check_trainable(fast.replace(free_from_epoch=1, free_from_sample=10000))


def test_the_tolerance_warning_counts_only_the_samples_solved_to_the_tolerance(digits):
    """In the switched epoch the fixed steps of the first samples miss atol without
    being a failure (their tolerance is only reported): train_epoch counts the samples
    solved to the tolerance apart, and the warning names those misses alone."""
    cfg = _cfg(max_iter=3)  # Gauss-Seidel stopped after 3 sweeps: some samples miss
    tr, seen, _ = _recording_trainer(cfg, digits)
    row = tr.train_epoch()
    assert row["free_solved_to_tolerance"] == 200 - 80
    tolerance_part = [it for e, dyn, it in seen if dyn is tr.free_dyn]
    assert len(tolerance_part) == 6
    tr.epoch = 1
    # only the fixed-steps part missed: no warning; misses in the tolerance part: counted
    quiet = dict(row, free_converged=0.9, free_missed_tolerance=0)
    assert tr._tolerance_warning({**quiet, "nudged_converged": 1.0}) == ""
    loud = dict(quiet, free_missed_tolerance=3, nudged_converged=1.0)
    assert "missed its tolerance on 3 of 120 training samples (2.5%)" in tr._tolerance_warning(loud)
    missed = row["free_missed_tolerance"]
    assert 0 < missed <= 120
    assert row["free_converged"] <= 1 - missed / 200
