r"""Alignment study: learning without weight symmetry, per layer and epoch.

Trains a hopfield chain with separate feedback weights :math:`B_l` on a subset of a dataset
(MNIST by default; digits for quick checks) with :class:`eqprop.train.Trainer` (the
trainer of ``eqprop train``) and, before the first epoch and after every epoch, measures
on one fixed batch (the first ``ref_batch`` training samples):

* ``angle`` (run, epoch, layer): the angle in degrees between :math:`W_l^\top` and
  :math:`B_l`, :math:`\arccos\frac{\langle W_l^\top, B_l\rangle_F}{\|W_l\|_F\|B_l\|_F}`
  (NaN for the coupling from the input, which sends no feedback);
* ``cosine``: the cosine between the rule's estimate of :math:`\partial\mathcal L/\partial
  W_l` (its contrastive part, without the homeostasis term) and the exact gradient of the
  loss at the same free state, recurrent backprop through the asymmetric dynamics
  (:func:`eqprop.graph.backprop.recurrent_backprop`, dense adjoint, float64); ``W_l``
  only (the bias is left out);
* ``update_cosine``: the same for the update the optimizer gets (homeostasis term
  included; equal to ``cosine`` without homeostasis);
* ``penalty`` (run, epoch): the homeostatic penalty :math:`H` of
  :mod:`eqprop.rules.homeostasis` at the batch's free state;
* ``train_error`` (run, epoch): the trainer's training error of the epoch (NaN at epoch 0);
* ``free_residual`` (run, epoch): the largest final residual of the batch's free phase;
* ``test_error`` (run, epoch): after each epoch, on the first ``n_test`` test samples.

The measurements run every phase to the tolerance ``atol`` (``method``) from zero; the
training itself uses the trainer's fixed ``T``/``K`` steps with persistent particles.

Runs (:data:`RUNS`), all from the same initial :math:`W` and the same random :math:`B`
(the feedback that ``feedback="random"`` draws from ``seed``, copied into the learned
``B`` of the ``free`` runs, so that no run starts aligned):

* ``vf-ep``: vector-field EP (Scellier et al. 2018), :math:`W` and :math:`B` learned;
* ``vf-ep+homeostasis``: the same plus the Jacobian homeostasis penalty (Laborieux &
  Zenke 2024) of strength ``homeostasis``;
* ``feedback-alignment``: :math:`B` fixed (Lillicrap et al. 2016), :math:`W` learned by
  the same phases with one-sided EP's rule.

Dataset: dims ``architecture``, ``run``, ``epoch``, ``layer`` (``"W1"``, ... ; the
coupling's name in the ``coupling`` coordinate); attribute ``study="alignment"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from eqprop.provenance import variable

from .sweep import sweep

__all__ = [
    "DEFAULTS",
    "RUNS",
    "AlignmentSetup",
    "MeasurementSetup",
    "TrainingSetup",
    "alignment_point",
    "alignment_study",
    "feedback_angle",
]

RUNS = ("vf-ep", "vf-ep+homeostasis", "feedback-alignment")

#: Training settings per architecture (TrainConfig fields), the ``base`` default.
DEFAULTS: dict[str, dict[str, Any]] = {
    "784-500-10": {"T": 20, "K": 4, "lrs": [0.2, 0.1]},
    "784-500-500-10": {"T": 60, "K": 8, "lrs": [0.2, 0.05, 0.005]},
    "64-32-10": {"T": 20, "K": 4, "lrs": [0.2, 0.1]},
    "64-16-16-10": {"T": 40, "K": 8, "lrs": [0.4, 0.1, 0.02]},
}


def _at_least(name: str, value: Any, low: int) -> int:
    if int(value) < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


@dataclass(frozen=True)
class TrainingSetup:
    """The training of every run: data, epochs, nudging, homeostasis, seed, base settings.

    Attributes
    ----------
    dataset : str
        Data set of :func:`eqprop.data.load_dataset`.
    n_train, n_test : int
        The first ``n_train`` training samples (and as many of the validation split,
        unused) and ``n_test`` test samples (>= 1).
    epochs : int
        Training epochs (>= 0).
    beta : float
        Nudging of every run (one-sided).
    homeostasis : float
        Strength of the ``vf-ep+homeostasis`` run.
    seed : int
        Weights, random feedback, shuffling.
    base : dict
        ``{architecture: {TrainConfig field: value}}`` replacing :data:`DEFAULTS`.
    """

    dataset: str = "mnist"
    n_train: int = 2000
    n_test: int = 2000
    epochs: int = 3
    beta: float = 1.0
    homeostasis: float = 300.0
    seed: int = 0
    base: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_train", _at_least("n_train", self.n_train, 1))
        object.__setattr__(self, "n_test", _at_least("n_test", self.n_test, 1))
        object.__setattr__(self, "epochs", _at_least("epochs", self.epochs, 0))
        object.__setattr__(self, "beta", float(self.beta))
        object.__setattr__(self, "homeostasis", float(self.homeostasis))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "base", {k: dict(v) for k, v in (self.base or {}).items()})


@dataclass(frozen=True)
class MeasurementSetup:
    """The measurement after every epoch: a fixed batch, phases to a tolerance.

    Attributes
    ----------
    ref_batch : int
        Size of the fixed measurement batch (the first training samples, >= 1).
    atol, max_iter, method
        Solver of the measurements' phases (from zero, tolerance mode).
    """

    ref_batch: int = 32
    atol: float = 1e-9
    max_iter: int = 20000
    method: str = "anderson"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ref_batch", _at_least("ref_batch", self.ref_batch, 1))
        object.__setattr__(self, "atol", float(self.atol))
        object.__setattr__(self, "max_iter", int(self.max_iter))

    def dynamics(self, eps: float) -> Any:
        """The measurements' :class:`eqprop.phases.Dynamics` at the trainer's step ``eps``."""
        from eqprop.phases import Dynamics

        return Dynamics(
            eps=eps,
            method=self.method,
            fixed_steps=False,
            atol=self.atol,
            max_iter=self.max_iter,
        )


@dataclass(frozen=True)
class AlignmentSetup:
    """What every (architecture, run) point of the alignment study shares."""

    training: TrainingSetup = field(default_factory=TrainingSetup)
    measurement: MeasurementSetup = field(default_factory=MeasurementSetup)


def feedback_angle(W: np.ndarray, B: np.ndarray) -> float:
    """Angle in degrees between ``W.T`` and ``B`` (Frobenius inner product)."""
    num = float(np.sum(W.T * B))
    den = float(np.linalg.norm(W) * np.linalg.norm(B))
    return float(np.degrees(np.arccos(np.clip(num / den, -1.0, 1.0)))) if den > 0 else np.nan


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.sum(a * b) / (na * nb)) if na > 0 and nb > 0 else np.nan


def _config(architecture: str, run: str, training: TrainingSetup) -> Any:
    from eqprop.train import TrainConfig

    settings: dict[str, Any] = dict(DEFAULTS.get(architecture, {}))
    settings.update(training.base.get(architecture, {}))
    settings.update(
        dataset=training.dataset,
        architecture=architecture,
        activation=settings.get("activation", "hardsigmoid"),
        beta=training.beta,
        seed=training.seed,
        output=None,
        epochs=0,
    )
    if "lrs" in settings:
        settings["lrs"] = tuple(float(v) for v in settings["lrs"])
    if run == "feedback-alignment":
        settings.update(rule="ep", estimator="one-sided", feedback="random")
    elif run in ("vf-ep", "vf-ep+homeostasis"):
        settings.update(rule="vf-ep", feedback="free")
        if run == "vf-ep+homeostasis":
            settings["homeostasis"] = training.homeostasis
    else:
        raise ValueError(f"unknown run {run!r}; choose from {', '.join(RUNS)}")
    return TrainConfig.from_flat(settings)


def alignment_point(architecture: str, run: str, setup: AlignmentSetup | None = None) -> xr.Dataset:
    """Train one ``run`` on one ``architecture`` and measure it every epoch (module
    docstring), with the training and the measurements of ``setup`` (default
    ``AlignmentSetup()``).

    Returns
    -------
    xarray.Dataset
        ``angle``, ``cosine``, ``update_cosine`` (epoch, layer); ``penalty``,
        ``train_error``, ``test_error``, ``free_residual`` (epoch).
    """
    from eqprop.data import load_dataset
    from eqprop.graph.backprop import recurrent_backprop
    from eqprop.graph.gradient import GraphGradient
    from eqprop.phases import free_phase
    from eqprop.rules.homeostasis import homeostasis_gradient, homeostasis_penalty
    from eqprop.train import Trainer

    setup = setup or AlignmentSetup()
    n_train, n_test = setup.training.n_train, setup.training.n_test
    epochs, ref_batch = setup.training.epochs, setup.measurement.ref_batch
    config = _config(architecture, run, setup.training)
    flat = config.to_flat()
    data = load_dataset(flat["dataset"], data_dir=flat["data_dir"], limit=max(n_train, n_test))
    rest = [getattr(data, f.name) for f in dataclasses.fields(data)][3:]
    data = type(data)(
        data.train.head(n_train), data.valid.head(ref_batch), data.test.head(n_test), *rest
    )
    trainer = Trainer(config, data=data, quiet=True, command="studies.alignment")
    net = trainer.net
    if run != "feedback-alignment":  # start from the random feedback the FA run gets
        fa = config.replace(rule="ep", feedback="random", homeostasis=0.0).make_network()
        for c in net.couplings:
            if c.feedback == "free":
                assert c.B is not None
                c.B[...] = fa.coupling(c.name).B
    strength = float(getattr(trainer.rule, "homeostasis", 0.0))
    inner = config.replace(homeostasis=0.0).make_rule()  # the contrastive part alone
    x = np.ascontiguousarray(trainer.x_train[:ref_batch], dtype=np.float64)
    d = np.ascontiguousarray(trainer.d_train[:ref_batch], dtype=np.float64)
    dyn = setup.measurement.dynamics(flat["eps"])
    couplings = [c.name for c in net.couplings]
    layers = [f"W{i + 1}" for i in range(len(couplings))]
    E1, L = epochs + 1, len(couplings)
    out = {k: np.full((E1, L), np.nan) for k in ("angle", "cosine", "update_cosine")}
    pen, err, res = (np.full(E1, np.nan) for _ in range(3))
    for epoch in range(E1):
        if epoch > 0:
            trainer.run(epochs=epoch)
        net64 = net.copy()
        net64 = type(net64)(net64.layers, net64.couplings, net64.kind, net64.cost, "float64")
        free = free_phase(net64, x, dyn)
        res[epoch] = float(np.max(free.result.final_residual))
        exact = recurrent_backprop(
            net64, x, d, free.state, eps=flat["eps"], check_fixed_point=None
        ).grads
        est = inner.estimate(net64, x, d, dyn, s0=free.state).gradient
        assert isinstance(est, GraphGradient)
        hg = None
        if any(c.feedback != "tied" for c in net64.couplings):
            pen[epoch] = homeostasis_penalty(net64, x, free.state)
            hg = homeostasis_gradient(net64, x, free.state)
        for i, c in enumerate(net64.couplings):
            key = f"{c.name}.W"
            if c.B is not None:
                out["angle"][epoch, i] = feedback_angle(c.W, c.B)
            out["cosine"][epoch, i] = _cosine(est[key], exact[key])
            upd = est[key] + strength * hg[key] if hg is not None else est[key]
            out["update_cosine"][epoch, i] = _cosine(upd, exact[key])
    hist = trainer.history
    err[1:] = hist["train_error"]
    test = np.full(E1, np.nan)
    test[1:] = hist["test_error"]
    dims = ("epoch", "layer")
    return xr.Dataset(
        {
            "angle": variable(dims, out["angle"], "angle between W_l^T and B_l", "degree"),
            "cosine": variable(
                dims,
                out["cosine"],
                "cosine of the rule's estimate of dL/dW_l and the exact gradient (RBP)",
                "1",
            ),
            "update_cosine": variable(
                dims,
                out["update_cosine"],
                "cosine of the applied update of W_l (homeostasis included) and the exact gradient",
                "1",
            ),
            "penalty": variable(
                "epoch", pen, "homeostatic penalty (1/2n) mean ||J - J^T||_F^2", "1"
            ),
            "train_error": variable("epoch", err, "training error of the epoch", "1"),
            "free_residual": variable(
                "epoch", res, "largest final residual of the reference batch's free phase", "1"
            ),
            "test_error": variable(
                "epoch", test, "test error after the epoch (n_test samples)", "1"
            ),
        },
        coords={
            "epoch": variable("epoch", np.arange(E1), "training epoch (0: before)", "1"),
            "layer": variable("layer", layers, "weight layer W_l (into chain layer l)", "1"),
            "coupling": variable("layer", couplings, "coupling of the weight layer", "1"),
        },
    )


def alignment_study(
    architectures: Sequence[str] = ("784-500-10", "784-500-500-10"),
    runs: Sequence[str] = RUNS,
    setup: AlignmentSetup | None = None,
    **sweep_kwargs: Any,
) -> xr.Dataset:
    """Every (architecture, run) of the module docstring, one dataset.

    Parameters
    ----------
    architectures : sequence of str
        Layer sizes ``"784-500-10"`` (one hidden layer at least).
    runs : sequence of str
        From :data:`RUNS`.
    setup : AlignmentSetup, optional
        Training (:class:`TrainingSetup`) and measurements (:class:`MeasurementSetup`),
        the same at every point (default ``AlignmentSetup()``).
    **sweep_kwargs
        Passed to :func:`studies.sweep.sweep` (``out_dir``, ``path``, ``workers``, ...).

    Returns
    -------
    xarray.Dataset
        ``study="alignment"``; dims architecture, run, epoch, layer.
    """
    setup = setup or AlignmentSetup()
    for r in runs:
        if r not in RUNS:
            raise ValueError(f"unknown run {r!r}; choose from {', '.join(RUNS)}")
    for a in architectures:
        if len(str(a).split("-")) < 3:
            raise ValueError(f"architecture {a!r}: the alignment study needs a hidden layer")
    return sweep(
        alignment_point,
        {"architecture": [str(a) for a in architectures], "run": list(runs)},
        fixed={"setup": setup},
        title="Alignment of feedback and forward weights, and of updates with the exact "
        "gradient, over training",
        study="alignment",
        seeds=[setup.training.seed],
        coords={
            "architecture": {"long_name": "layer sizes", "units": "1"},
            "run": {"long_name": "training run (rule and feedback)", "units": "1"},
        },
        **sweep_kwargs,
    )
