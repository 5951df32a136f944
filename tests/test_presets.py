"""Each paper preset takes one training step exactly as the authors' released code does.

For every preset, one minibatch step of :class:`eqprop.train.Trainer` (the preset's
dynamics, nudging, estimator, rates, particles; a small network of the preset's depth,
float64) is checked against a NumPy transcription of the released code's update, written
here with the code's own hyperparameters and conventions:

* Scellier & Bengio (2017), github.com/bscellier/Towards-a-Biologically-Plausible-Backprop
  (commit 36ad1f6): ``train_model.py`` dictionaries ``net1``-``net3`` and ``model.py``:
  cost ``((y - d)**2).sum(1)`` (no 1/2), projected steps
  ``s <- clip(s - epsilon dF/ds, 0, 1)`` of ``F = E + beta C``, free phase from the
  persistent particles, nudged phase from the free state at a random sign of beta, and
  ``theta -= alpha d[(mean E(s^beta) - mean E(s^0)) / beta]/dtheta``;
* Ernoult et al. (2019), github.com/ernoult/updatesEPgradientsBPTT, README command for
  P-1h and ``netClasses.py`` (``EPdisc``): ``s <- s + dt (-s + sigma(...) [+ beta (d - y)
  on the output])`` from zero, ``W += lr (s^beta s^beta - s^0 s^0) / (beta B)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_rules import _relax_by_hand

from eqprop.data import DatasetSplits, Split
from eqprop.presets import PRESETS
from eqprop.train import TrainConfig, Trainer

#: The released script's hyperparameters (train_model.py, net1 / net2 / net3).
SCELLIER_SCRIPT = {
    "scellier2017-1h": {
        "hidden_sizes": 1,
        "n_it_neg": 20,
        "n_it_pos": 4,
        "epsilon": 0.5,
        "beta": 0.5,
        "alphas": (0.1, 0.05),
        "n_epochs": 25,
    },
    "scellier2017-2h": {
        "hidden_sizes": 2,
        "n_it_neg": 150,
        "n_it_pos": 6,
        "epsilon": 0.5,
        "beta": 1.0,
        "alphas": (0.4, 0.1, 0.01),
        "n_epochs": 60,
    },
    "scellier2017-3h": {
        "hidden_sizes": 3,
        "n_it_neg": 500,
        "n_it_pos": 8,
        "epsilon": 0.5,
        "beta": 1.0,
        "alphas": (0.128, 0.032, 0.008, 0.002),
        "n_epochs": 500,
    },
}

#: Ernoult et al.'s README command for P-1h, with main.py's defaults for the rest.
ERNOULT_P1H = {
    "size_tab": (10, 512, 784),  # output first
    "lr_tab": (0.04, 0.08),  # output first
    "epochs": 30,
    "T": 40,
    "Kmax": 15,
    "beta": 0.1,
    "batch_size": 20,
    "dt": 1.0,  # EPdisc's default at commit ec9c1b1 (main.py passes no dt there)
}

SMALL = {1: "6-5-3", 2: "6-5-4-3", 3: "6-5-4-4-3"}  # the preset's depth, small widths
BATCH = 20


def _data(n_features, n_classes, n_train, n_valid, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        x = rng.uniform(0.0, 1.0, (n, n_features)).astype(np.float32)
        return Split(x, rng.integers(0, n_classes, n).astype(np.int64), n_classes)

    return DatasetSplits(split(n_train), split(n_valid), split(4), name="synthetic")


def _trainer(name, architecture, **extra):
    settings = PRESETS[name].config.to_flat()
    settings.update(architecture=architecture, dtype="float64", **extra)
    sizes = [int(v) for v in architecture.split("-")]
    cfg = TrainConfig.from_dict(settings)
    n_valid = 8
    n_train = BATCH - n_valid if cfg.to_flat()["train_on_valid"] else BATCH  # one minibatch
    data = _data(sizes[0], sizes[-1], n_train, n_valid)
    trainer = Trainer(cfg, data, quiet=True)
    rng = np.random.default_rng(4)
    for w, b in zip(trainer.net.weights, trainer.net.biases, strict=True):
        if cfg.to_flat()["kind"] == "hopfield":
            # drives near 1/2: most units inside the box, so that the nudge reaches every
            # layer within K steps and every layer's update is tested
            w *= 0.5
            b[:] = 0.5 - 0.5 * w.sum(axis=0) + rng.normal(0.0, 0.1, b.shape)
        else:
            w *= 2.0
            b[:] = rng.normal(0.0, 0.3, b.shape)
    return trainer


@pytest.mark.parametrize("name", sorted(SCELLIER_SCRIPT))
def test_scellier_preset_step_equals_the_released_script(name):
    script = SCELLIER_SCRIPT[name]
    preset = PRESETS[name].config.to_flat()
    assert preset["T"] == script["n_it_neg"] and preset["K"] == script["n_it_pos"]
    assert preset["eps"] == script["epsilon"] and preset["epochs"] == script["n_epochs"]
    assert preset["batch_size"] == BATCH and preset["persistent"]
    assert not preset["shuffle"] and preset["eval_persistent"]
    trainer = _trainer(name, SMALL[script["hidden_sizes"]])
    net = trainer.net
    x = trainer.x_train.copy()
    d = trainer.d_train.copy()
    # persistent particles: each sample's stored state (here a random state in the box)
    particles = np.random.default_rng(5).uniform(0.0, 1.0, trainer.particles.shape)
    trainer.particles[:] = particles
    Ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    trainer.train_epoch()

    # the script, in NumPy: free phase from the particles (n_it_neg steps)
    off = net.offsets
    L = len(Ws)
    h0 = [particles[:, off[k] : off[k + 1]] for k in range(L)]
    eps = script["epsilon"]
    free = _relax_by_hand(x, h0, Ws, bs, script["n_it_neg"], eps)
    np.testing.assert_allclose(trainer.particles, np.concatenate(free, axis=1), atol=1e-12)
    candidates = []
    for sign in (1.0, -1.0):
        beta_s = sign * script["beta"]
        # F = E + beta ((y - d)**2).sum(): dF/dy gets 2 beta (y - d)
        nudged = _relax_by_hand(x, free, Ws, bs, script["n_it_pos"], eps, 2 * beta_s, d)
        r0 = [x] + [np.clip(h, 0, 1) for h in free]
        rb = [x] + [np.clip(h, 0, 1) for h in nudged]
        new_W, new_b = [], []
        for k, alpha in enumerate(script["alphas"]):
            # d mean E / dW_k = -mean(rho(s_{k})^T rho(s_{k+1})), d mean E / db_k = -mean rho
            dW = -(rb[k].T @ rb[k + 1] - r0[k].T @ r0[k + 1]) / BATCH / beta_s
            db = -(rb[k + 1] - r0[k + 1]).mean(axis=0) / beta_s
            new_W.append(Ws[k] - alpha * dW)
            new_b.append(bs[k] - alpha * db)
        candidates.append((new_W, new_b))

    def distance(cand):
        return max(
            float(np.abs(a - b).max())
            for a, b in zip([*net.weights, *net.biases], [*cand[0], *cand[1]], strict=True)
        )

    dist = [distance(c) for c in candidates]
    assert min(dist) <= 1e-12, dist  # one of the two signs, to rounding
    assert max(dist) > 1e-4, dist  # and the sign matters
    assert min(float(np.abs(w - w0).max()) for w, w0 in zip(net.weights, Ws)) > 1e-4


def test_ernoult_p1h_preset_step_equals_the_readme_command():
    cmd = ERNOULT_P1H
    preset = PRESETS["ernoult2019-p1h"].config.to_flat()
    assert preset["architecture"] == "-".join(str(n) for n in reversed(cmd["size_tab"]))
    assert preset["lrs"] == tuple(reversed(cmd["lr_tab"]))
    assert (preset["T"], preset["K"], preset["beta"]) == (cmd["T"], cmd["Kmax"], cmd["beta"])
    assert (preset["epochs"], preset["batch_size"]) == (cmd["epochs"], cmd["batch_size"])
    assert preset["damping"] == cmd["dt"] and preset["train_on_valid"]
    trainer = _trainer("ernoult2019-p1h", "6-5-3")
    net = trainer.net
    x = trainer.x_train.copy()
    d = trainer.d_train.copy()
    Ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    trainer.train_epoch()

    # EPdisc, output first: s = [y, h], w[0]: h -> y (out, in), w[-1]: x -> h
    def rho(v):  # main.py 'sigm'
        return 1 / (1 + np.exp(-(4 * (v - 0.5))))

    W_yh, b_y = Ws[1].T, bs[1]  # nn.Linear(512, 10).weight is (10, 512)
    W_hx, b_h = Ws[0].T, bs[0]

    def stepper(s, beta=0.0):
        y, h = s
        dy = -y + rho(h @ W_yh.T + b_y)
        if beta > 0:
            dy = dy + beta * (d - y)
        dh = -h + rho(x @ W_hx.T + b_h + y @ W_yh)
        return [y + cmd["dt"] * dy, h + cmd["dt"] * dh]

    s = [np.zeros((BATCH, 3)), np.zeros((BATCH, 5))]  # initHidden: zeros every batch
    for _ in range(cmd["T"]):
        s = stepper(s)
    seq = [v.copy() for v in s]
    for _ in range(cmd["Kmax"]):
        s = stepper(s, cmd["beta"])
    beta, B = cmd["beta"], BATCH
    lr_y, lr_h = cmd["lr_tab"]
    W_yh_new = W_yh + lr_y * (s[0].T @ s[1] - seq[0].T @ seq[1]) / (beta * B)
    b_y_new = b_y + lr_y * (s[0] - seq[0]).sum(0) / (beta * B)
    W_hx_new = W_hx + lr_h * ((s[1] - seq[1]).T @ x) / (beta * B)
    b_h_new = b_h + lr_h * (s[1] - seq[1]).sum(0) / (beta * B)
    # the trainer's batch is a permutation of the same 20 samples: same means
    np.testing.assert_allclose(net.weights[1], W_yh_new.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.biases[1], b_y_new, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.weights[0], W_hx_new.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.biases[0], b_h_new, rtol=0, atol=1e-12)
    assert min(float(np.abs(w - w0).max()) for w, w0 in zip(net.weights, Ws)) > 1e-4


def test_every_preset_has_a_source_and_notes_where_it_departs_from_the_paper():
    for name, p in PRESETS.items():
        if name == "digits":
            continue
        assert p.citation and "github.com" in p.citation, name
        assert p.notes and any("paper" in n for n in p.notes), name
