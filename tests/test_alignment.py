"""The alignment study (studies.alignment) on digits, against independent recomputations.

* the angle between W^T and B before and after one epoch, recomputed from a network the
  test trains itself with eqprop.train.Trainer (same settings, same copied feedback);
* the cosine to the exact gradient at epoch 0, against central finite differences of the
  loss at the free fixed point (NumPy Picard iteration, eqprop.graph.backprop's
  free_equilibrium), not recurrent backprop;
* the homeostatic penalty at epoch 0, from the dense per-sample Jacobian.
"""

import dataclasses

import numpy as np
import pytest

import eqprop as E
from eqprop.data import load_dataset
from eqprop.graph import reference as R
from eqprop.graph.backprop import free_equilibrium, jacobian
from eqprop.train import TrainConfig, Trainer
from studies.alignment import (
    RUNS,
    AlignmentSetup,
    MeasurementSetup,
    TrainingSetup,
    alignment_point,
    alignment_study,
)
from studies.schema import check_schema

ARCH = "64-12-10"
SETUP = AlignmentSetup(
    TrainingSetup(dataset="digits", n_train=40, n_test=30, epochs=1, beta=0.5, homeostasis=3.0),
    MeasurementSetup(ref_batch=5),
)


@pytest.fixture(scope="module")
def points():
    return {run: alignment_point(ARCH, run, SETUP) for run in RUNS}


def _trained(run, epochs):
    """The study's network for ``run`` after ``epochs`` epochs, built here."""
    data = load_dataset("digits", limit=40)
    rest = [getattr(data, f.name) for f in dataclasses.fields(data)][3:]
    data = type(data)(data.train.head(40), data.valid.head(5), data.test.head(30), *rest)
    common = dict(dataset="digits", architecture=ARCH, beta=0.5, epochs=epochs)
    fa = TrainConfig.from_flat(rule="ep", estimator="one-sided", feedback="random", **common)
    if run == "feedback-alignment":
        config = fa
    else:
        h = 3.0 if run == "vf-ep+homeostasis" else 0.0
        config = TrainConfig.from_flat(rule="vf-ep", feedback="free", homeostasis=h, **common)
    trainer = Trainer(config, data=data, quiet=True)
    B = fa.make_network().coupling("h1->y").B
    if run != "feedback-alignment":
        trainer.net.coupling("h1->y").B[...] = B
    if epochs:
        trainer.run()
    return trainer, data


def _angle(W, B):
    c = np.sum(W.T * B) / np.sqrt(np.sum(W**2) * np.sum(B**2))
    return np.degrees(np.arccos(c))


@pytest.mark.parametrize("run", RUNS)
def test_angles_match_a_network_trained_here(points, run):
    ds = points[run]
    for epoch in (0, 1):
        trainer, _ = _trained(run, epoch)
        c = trainer.net.coupling("h1->y")
        want = _angle(c.W.astype(np.float64), c.B.astype(np.float64))
        got = float(ds["angle"].sel(epoch=epoch, layer="W2"))
        np.testing.assert_allclose(got, want, rtol=1e-9)
        if epoch == 1:
            np.testing.assert_allclose(
                float(ds["test_error"].sel(epoch=1)), trainer.history["test_error"][-1]
            )
    assert np.isnan(ds["angle"].sel(layer="W1")).all()  # the input sends no feedback
    assert list(ds["coupling"].values) == ["x->h1", "h1->y"]


def test_cosine_and_penalty_at_epoch_0_by_an_independent_route(points):
    ds = points["vf-ep"]
    trainer, data = _trained("vf-ep", 0)
    net = trainer.net
    net = type(net)(net.layers, net.couplings, net.kind, net.cost, "float64")
    x = np.asarray(data.train.x[:5], dtype=np.float64)
    d = np.eye(10)[data.train.labels[:5]]
    s = free_equilibrium(net, x, atol=1e-13)

    def loss(n):
        return float(np.mean(R.cost(n, x, free_equilibrium(n, x, s0=s, atol=1e-13), d)))

    W = net.coupling("h1->y").W
    fd = np.zeros_like(W)
    h = 1e-5
    for idx in np.ndindex(*W.shape):
        old = W[idx]
        W[idx] = old + h
        up = loss(net)
        W[idx] = old - h
        down = loss(net)
        W[idx] = old
        fd[idx] = (up - down) / (2 * h)
    step = trainer.rule.estimate(
        net,
        x,
        d,
        E.Dynamics(method="picard", fixed_steps=False, atol=1e-12),
        s0=s,
    )
    est = step.gradient["h1->y.W"]
    cos = np.sum(est * fd) / np.sqrt(np.sum(est**2) * np.sum(fd**2))
    np.testing.assert_allclose(float(ds["cosine"].sel(epoch=0, layer="W2")), cos, atol=1e-6)
    JG = jacobian(net, x, s)
    free = np.any(JG != 0, axis=2)  # units held on a bound of the box have a zero row
    assert 0 < free.sum() < free.size  # some of each here (hard sigmoid)
    J = (JG - np.eye(net.n_state)) / 0.5 * free[:, :, None] * free[:, None, :]
    A = J - np.swapaxes(J, 1, 2)
    pen = np.mean(np.sum(A**2, axis=(1, 2))) / (2 * net.n_state)
    np.testing.assert_allclose(float(ds["penalty"].sel(epoch=0)), pen, rtol=1e-6)


def test_homeostasis_aligns_and_update_cosine_differs(points):
    plain, homeo = points["vf-ep"], points["vf-ep+homeostasis"]
    a_plain = float(plain["angle"].sel(epoch=1, layer="W2"))
    a_homeo = float(homeo["angle"].sel(epoch=1, layer="W2"))
    assert a_homeo < a_plain
    np.testing.assert_array_equal(plain["cosine"].values, plain["update_cosine"].values)
    assert not np.allclose(homeo["cosine"].sel(layer="W2"), homeo["update_cosine"].sel(layer="W2"))


def test_study_dataset_and_bad_input(tmp_path):
    ds = alignment_study([ARCH], ["feedback-alignment"], SETUP, progress=False)
    assert ds.attrs["study"] == "alignment"
    check_schema(ds)
    assert dict(ds.sizes) == {"architecture": 1, "run": 1, "epoch": 2, "layer": 2}
    with pytest.raises(ValueError, match="unknown run 'bp'"):
        alignment_study([ARCH], ["bp"], SETUP)
    with pytest.raises(ValueError, match="needs a hidden layer"):
        alignment_study(["64-10"], setup=SETUP)
