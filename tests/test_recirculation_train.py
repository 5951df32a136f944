"""``eqprop train --rule recirculation``: one trainer step against the paper's update
written out in NumPy, the history it records, and the combinations it refuses."""

from __future__ import annotations

import numpy as np
import pytest
from rule_registry import cli_applies_to

from eqprop.cli import main
from eqprop.data import load_dataset
from eqprop.recirculation import LoopTrainer, loop_scale
from eqprop.train import TrainConfig, Trainer


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def _config(**changes):
    settings = dict(
        dataset="digits",
        architecture="64-12-64",
        rule="recirculation",
        regression=0.6,
        hidden_regression=0.8,
        lrs=(0.3, 0.2),
        batch_size=8,
        epochs=1,
        limit=8,
        shuffle=False,
    )
    settings.update(changes)
    return TrainConfig().replace(**settings)


def test_one_trainer_step_is_the_recirculation_update_written_out():
    trainer = LoopTrainer(_config(), quiet=True)
    v = trainer.x_train  # one minibatch: the whole (limited) set, in order
    B = v.shape[0]
    rng = np.random.default_rng(0)  # init_loop's draws: W0, W1, then b0, b1
    s = loop_scale((64, 12))
    enc, dec = rng.uniform(-s, s, (64, 12)), rng.uniform(-s, s, (12, 64))
    b_vis, b_hid = rng.uniform(-s, s, 64), rng.uniform(-s, s, 12)
    lam, lam_h = 0.6, 0.8
    h1 = _sig(v @ enc + b_hid)  # y_j(1)
    v2 = lam * v + (1 - lam) * _sig(h1 @ dec + b_vis)  # y_i(2)
    h3 = lam_h * h1 + (1 - lam_h) * _sig(v2 @ enc + b_hid)  # y_j(3)
    # dw_ij = eps y_j(1) [y_i(0) - y_i(2)] (decoder); dw_ji = eps y_i(2) [y_j(1) - y_j(3)]
    enc_new = enc + 0.3 * v2.T @ (h1 - h3) / B
    b_hid_new = b_hid + 0.3 * (h1 - h3).mean(axis=0)
    dec_new = dec + 0.2 * h1.T @ (v - v2) / B
    b_vis_new = b_vis + 0.2 * (v - v2).mean(axis=0)
    row = trainer.train_epoch()
    loop = trainer.loop
    for got, want in zip(
        (*loop.weights, *loop.biases), (enc_new, dec_new, b_vis_new, b_hid_new), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    assert np.abs(enc_new - enc).max() > 1e-4  # the step moved the weights
    recon = _sig(h1 @ dec + b_vis)
    assert row["train_reconstruction"] == pytest.approx(np.sum((v - recon) ** 2) / B, rel=1e-12)


def test_training_lowers_the_reconstruction_error_and_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "train", "--dataset", "digits", "--rule", "recirculation", "--sizes", "64-16-64",
            "--regression", "0.75", "--lrs", "1.0", "1.0", "--epochs", "3", "--limit", "300",
            "-o", str(out), "-q",
        ]
    )  # fmt: skip
    assert rc == 0
    assert "test reconstruction error:" in capsys.readouterr().out
    import xarray as xr

    h = xr.open_dataset(out / "history.nc")
    err = h["test_reconstruction"].values
    assert err.shape == (3,) and err[-1] < err[0]
    assert "train_error" not in h  # unsupervised: no classification error
    assert (out / "loop.npz").exists() and (out / "config.json").exists()
    split = load_dataset("digits", limit=300).test
    direct = LoopTrainer(_config(architecture="64-16-64", limit=300), quiet=True).evaluate(split)
    assert err[0] < direct  # the first epoch already improves on the initial loop


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--sizes", "64-16-10"], "is not a loop"),
        (["--sizes", "64-16-64", "--cost", "cross-entropy"], "--cost does not apply"),
        (["--sizes", "64-16-64", "--feedback", "random"], "its own loop of groups"),
        (["--sizes", "64-16-64", "--regression", "1.0"], "regression must lie in [0, 1)"),
        (["--sizes", "64-16-64", "--method", "anderson"], "--method does not apply"),
        (["--sizes", "64-16-64", "--beta", "0.5"], cli_applies_to("beta", "recirculation")),
        (["--sizes", "64-16-64", "-T", "30"], "--T does not apply to --rule recirculation"),
        (["--sizes", "64-16-64", "--momentum", "0.9"], "momentum and weight_decay"),
        (["--sizes", "64-16-64", "--visible-activation", "tanh"], "unknown visible_activation"),
    ],
)
def test_bad_combinations_are_refused_with_one_line(argv, message, capsys):
    rc = main(["train", "--dataset", "digits", "--rule", "recirculation", *argv, "-q"])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_network_trainer_refuses_a_loop(capsys):
    with pytest.raises(ValueError, match="LoopTrainer"):
        Trainer(_config(), quiet=True)
    with pytest.raises(ValueError, match="is unsupervised"):
        _config(cost="cross-entropy").validate()
    assert main(["train", "--preset", "digits", "--regression", "0.5", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--regression applies to --rule recirculation, not to --rule ep" in err
