"""Continual EP (Ernoult et al. 2020): one trainer step against the update written out in
NumPy, the telescoped sum against EP, the GDU tracking property as the learning rate falls,
and bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import eqprop as E
from eqprop.cli import main
from eqprop.gdu import gdu
from eqprop.presets import get_preset
from eqprop.rules import ContinualEP, EquilibriumPropagation, make_rule
from eqprop.train import TrainConfig, Trainer
from studies.beta import make_batch


def _naive_continual(net, x, d, s, beta, eps, lrs, K):
    """K nudged steps of the Hopfield dynamics (make_step), each followed by
    W_l -= lr_l (1/beta) <-(a_{l-1}' a_l' - a_{l-1} a_l)> and b_l -= lr_l (1/beta) <-(a_l' - a_l)>
    with a = rho(s) (x for layer 0), written out layer by layer."""
    from eqprop.gradients import make_step

    net = net.copy()
    off = np.concatenate([[0], np.cumsum(net.sizes[1:])])
    rho = lambda v: np.clip(v, 0.0, 1.0)  # noqa: E731  hardsigmoid
    B = x.shape[0]
    for _ in range(K):
        s_new = make_step(net, x, beta=beta, d=d, eps=eps)(s)
        a_old = [x] + [rho(s[:, off[l] : off[l + 1]]) for l in range(len(off) - 1)]
        a_new = [x] + [rho(s_new[:, off[l] : off[l + 1]]) for l in range(len(off) - 1)]
        for l in range(1, len(net.sizes)):
            gW = -(a_new[l - 1].T @ a_new[l] - a_old[l - 1].T @ a_old[l]) / B / beta
            gb = -(a_new[l] - a_old[l]).mean(axis=0) / beta
            net.weights[l - 1] -= lrs[l - 1] * gW
            net.biases[l - 1] -= lrs[l - 1] * gb
        s = s_new
    return net


def test_one_trainer_step_is_the_continual_update_written_out():
    config = get_preset("digits").config.replace(
        rule="continual",
        beta=0.5,
        K=3,
        epochs=1,
        limit=16,
        batch_size=16,
        dtype="float64",
        persistent=False,
    )
    trainer = Trainer(config, quiet=True)
    c = SimpleNamespace(**trainer.config.to_flat())
    net0 = trainer.net.copy()
    x, d = trainer.x_train, trainer.d_train  # one minibatch: the whole (limited) set
    s0 = E.free_phase(net0, x, trainer.free_dyn).state
    ref = _naive_continual(net0, x, d, s0, c.beta, c.eps, c.lrs, c.K)
    trainer.train_epoch()
    assert trainer.optimizer.n_steps == c.K  # one optimizer step per nudged step
    for l in range(len(c.lrs)):
        np.testing.assert_allclose(trainer.net.weights[l], ref.weights[l], rtol=0, atol=1e-13)
        np.testing.assert_allclose(trainer.net.biases[l], ref.biases[l], rtol=0, atol=1e-13)
    assert np.abs(ref.weights[0] - net0.weights[0]).max() > 1e-4  # the step moved the weights
    # EP applied once at the end (fixed parameters during the phase) is not the same update
    ep = EquilibriumPropagation(c.beta).estimate(net0, x, d, trainer.dyn, s0=None)
    once = net0.weights[-1] - c.lrs[-1] * ep.gradient.dW[-1]
    assert np.abs(once - ref.weights[-1]).max() > 1e-8


def test_without_updates_the_steps_telescope_to_one_sided_ep():
    net = E.init_network((6, 5, 3), dtype="float64", seed=1)
    x, d = make_batch((6, 5, 3), 4, 3, None, "float64")
    dyn = E.Dynamics(T=30, K=6, eps=0.5)
    applied = []
    step = ContinualEP(0.3).estimate(net, x, d, dyn, apply=lambda n, g: applied.append(g))
    ep = EquilibriumPropagation(0.3).estimate(net, x, d, dyn)
    assert len(applied) == dyn.K
    np.testing.assert_allclose(step.gradient.flat(), ep.gradient.flat(), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(step.phases["nudged+"].state, ep.phases["nudged+"].state)


def test_continual_updates_track_bptt_as_the_learning_rate_falls():
    # toy GDU setting: the extra error of continual EP over EP's grows as lr / beta
    net = E.init_network(
        (5, 20, 4), kind="hopfield", activation="tanh", cost="squared", dtype="float64", seed=0
    )
    x, d = make_batch((5, 20, 4), 2, 7919, None, "float64")
    kw = dict(beta=1e-3, T=3000, K=40, eps=0.08)
    lrs = np.array([1e-5, 1e-6, 1e-7])
    ep_err = float(gdu(net, x, d, **kw).rel_rmse.sel(quantity="weights").max())
    err = np.array(
        [
            float(gdu(net, x, d, continual_lr=lr, **kw).rel_rmse.sel(quantity="weights").max())
            for lr in lrs
        ]
    )
    assert ep_err < 1e-3  # EP itself follows BPTT at this beta
    assert np.all(np.diff(err) < 0), err
    slope = np.polyfit(np.log(lrs), np.log(err - ep_err), 1)[0]
    assert abs(slope - 1) < 0.15, (slope, err)
    assert err[-1] < 3e-3  # small: step by step within 0.3 % of BPTT
    cum = gdu(net, x, d, continual_lr=1e-7, **kw).cum_rel_rmse.sel(quantity="weights")
    assert float(cum.isel(t=-1).max()) < 1e-3  # the accumulated updates too


def test_continual_refuses_what_it_cannot_do(capsys):
    net = E.init_network((6, 5, 3), dtype="float64", seed=1)
    x, d = make_batch((6, 5, 3), 4, 3, None, "float64")
    rule = make_rule("continual", beta=0.5)
    with pytest.raises(ValueError, match=r"apply=optimizer\.step"):
        rule.estimate(net, x, d, E.Dynamics(T=10, K=2))
    with pytest.raises(ValueError, match="fixed-step dynamics"):
        rule.estimate(net, x, d, E.Dynamics(method="picard", fixed_steps=False), apply=print)
    with pytest.raises(ValueError, match="finite beta"):
        ContinualEP(0.0)
    ce = E.init_network((6, 5, 3), dtype="float64", seed=1, cost="cross-entropy")
    with pytest.raises(ValueError, match="cost='squared'"):
        rule.estimate(ce, x, d, E.Dynamics(T=10, K=2), apply=print)
    with pytest.raises(ValueError, match="needs fixed steps"):
        TrainConfig().replace(rule="continual", method="anderson").validate()
    assert main(["train", "--preset", "digits", "--rule", "continual", "--estimator",
                 "symmetric", "-q"]) == 2  # fmt: skip
    assert "--estimator applies to --rule ep, not to --rule continual" in capsys.readouterr().err


def test_study_gdu_takes_the_continual_learning_rate(tmp_path):
    import xarray as xr

    out = tmp_path / "gdu.nc"
    argv = ["study", "gdu", "--setting", "none", "--sizes", "4-6-3", "-T", "400", "-K", "6"]
    argv += ["--betas", "0.01", "--seeds", "0", "--continual-lr", "1e-6", "-o", str(out), "-q"]
    assert main(argv) == 0
    ds = xr.open_dataset(out)
    assert "continual EP (learning rate 1e-06)" in ds.attrs["title"]
    assert float(ds.cum_rel_rmse.sel(quantity="weights").max()) < 0.05
    assert main([*argv[:-4], "--continual-lr", "0", "-o", str(tmp_path / "x.nc"), "-q"]) == 2
