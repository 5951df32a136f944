r"""Beta sweep: bias and variance of each EP estimator against the exact gradient.

For one network and one batch (both fixed by ``net_seed``), the exact gradient
:math:`g = \partial\mathcal L/\partial\theta` at the free fixed point is computed by
recurrent backprop (:func:`eqprop.gradients.recurrent_backprop`, dense adjoint solve in
float64). Each EP estimator (:class:`eqprop.EquilibriumPropagation`) then estimates it at
every ``beta`` of a log grid, once per ``seed`` (the seed drives the estimator's random
generator: the sign of the random-sign estimator; the one-sided and symmetric estimators
are deterministic, so their spread over seeds is zero up to round-off).

Per weight layer :math:`l` (entries of :math:`W_l` and :math:`b_l` together), with
:math:`\hat g_s` the estimate of seed :math:`s` and :math:`\bar g` their mean over the
:math:`S` seeds:

* ``rel_error`` (beta, estimator, seed, layer): :math:`\|\hat g_s - g\| / \|g\|`;
* ``cosine`` (beta, estimator, seed, layer): cosine similarity of :math:`\hat g_s` and
  :math:`g`;
* ``bias`` (beta, estimator, layer): :math:`\|\bar g - g\| / \|g\|`;
* ``variance`` (beta, estimator, layer):
  :math:`\frac1S\sum_s \|\hat g_s - \bar g\|^2 / \|g\|^2` (population variance, relative);
* ``ref_norm`` (layer): :math:`\|g\|`.

Expected behaviour as :math:`\beta \to 0` (Scellier & Bengio 2017; Laborieux et al. 2021):
one-sided bias :math:`O(\beta)`; symmetric bias :math:`O(\beta^2)`; random-sign mean
error :math:`O(\beta^2)` with a per-seed error (standard deviation) :math:`O(\beta)` —
until the solver tolerance ``atol`` dominates (error floor about ``atol / beta``).

The phases run to the tolerance ``atol`` (``Dynamics(method=..., fixed_steps=False)``),
not for fixed step counts, so that the estimates approach the exact gradient.

Dataset: dims ``beta``, ``estimator``, ``seed``, ``layer``, ``sample``;
attribute ``study="beta-sweep"``. Each sweep point is one (beta, estimator) pair with
all seeds inside (bias and variance need the full estimates, which are not stored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from eqprop.provenance import variable

from .setup import BatchSetup, NetworkSetup, SolverSetup, int_tuple, make_batch
from .sweep import sweep

__all__ = ["ESTIMATORS", "BetaSetup", "beta_point", "beta_sweep", "make_batch"]

ESTIMATORS = ("one-sided", "random-sign", "symmetric")


@dataclass(frozen=True)
class BetaSetup:
    """What every point of a beta sweep shares: network, batch, solver, seeds.

    Attributes
    ----------
    network : NetworkSetup
        The network, weights drawn from ``net_seed``.
    batch : BatchSetup
        The batch, drawn from ``net_seed + 7919`` (random data).
    solver : SolverSetup
        Every phase (tolerance mode).
    seeds : tuple of int
        Seeds of the estimators' random generator.
    net_seed : int
        Seed of the network and the batch.
    """

    network: NetworkSetup = field(default_factory=NetworkSetup)
    batch: BatchSetup = field(default_factory=BatchSetup)
    solver: SolverSetup = field(default_factory=SolverSetup)
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    net_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", int_tuple(self.seeds))
        object.__setattr__(self, "net_seed", int(self.net_seed))


def _flat_layers(g: Any) -> list[np.ndarray]:
    return [
        np.concatenate([np.ravel(w), np.ravel(b)]).astype(np.float64) for w, b in zip(g.dW, g.db)
    ]


def beta_point(beta: float, estimator: str, setup: BetaSetup | None = None) -> xr.Dataset:
    """EP estimates of one estimator at one ``beta`` for every seed, against RBP.

    Parameters
    ----------
    beta : float
        Nudging strength > 0.
    estimator : str
        From :data:`ESTIMATORS`.
    setup : BetaSetup, optional
        Network, batch, solver and seeds (default ``BetaSetup()``).

    Returns
    -------
    xarray.Dataset
        Variables of the module docstring for this (beta, estimator), plus
        ``free_residual`` (sample) and ``loss``.
    """
    from eqprop import gradients as G
    from eqprop.phases import free_phase
    from eqprop.rules import EquilibriumPropagation

    setup = setup or BetaSetup()
    seeds, eps = setup.seeds, setup.solver.eps
    net = setup.network.build(setup.net_seed)
    x, d = setup.batch.make(setup.network.sizes, setup.net_seed + 7919, net.dtype)
    dyn = setup.solver.dynamics()
    free = free_phase(net, x, dyn)
    ref = G.recurrent_backprop(
        net,
        x,
        d,
        s_star=free.state,
        eps=eps,
        method="dense",
        dtype="float64",
        check_fixed_point=None,
    )
    ref_layers = _flat_layers(ref)
    ref_norm = np.array([np.linalg.norm(r) for r in ref_layers])
    rule = EquilibriumPropagation(beta=float(beta), estimator=estimator)
    L = len(ref_layers)
    est = np.empty((len(seeds), L), dtype=object)
    for i, seed in enumerate(seeds):
        step = rule.estimate(net, x, d, dyn, rng=np.random.default_rng(int(seed)), s0=free.state)
        for l, g in enumerate(_flat_layers(step.gradient)):
            est[i, l] = g
    rel = np.empty((len(seeds), L))
    cos = np.empty((len(seeds), L))
    bias = np.empty(L)
    var = np.empty(L)
    for l in range(L):
        r = ref_layers[l]
        gs = np.stack(list(est[:, l]))
        err = gs - r
        rel[:, l] = np.linalg.norm(err, axis=1) / ref_norm[l]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos[:, l] = gs @ r / (np.linalg.norm(gs, axis=1) * ref_norm[l])
        mean = gs.mean(axis=0)
        bias[l] = np.linalg.norm(mean - r) / ref_norm[l]
        var[l] = np.mean(np.sum((gs - mean) ** 2, axis=1)) / ref_norm[l] ** 2
    res = free.result
    fres = res.final_residual if res is not None else np.zeros(setup.batch.size)
    return xr.Dataset(
        {
            "rel_error": variable(
                ("seed", "layer"), rel, "relative error ||g_EP - g|| / ||g||", "1"
            ),
            "cosine": variable(("seed", "layer"), cos, "cosine of g_EP and g", "1"),
            "bias": variable("layer", bias, "relative bias ||mean_seed(g_EP) - g|| / ||g||", "1"),
            "variance": variable(
                "layer",
                var,
                "relative variance mean_seed ||g_EP - mean g_EP||^2 / ||g||^2",
                "1",
            ),
            "ref_norm": variable("layer", ref_norm, "norm of the exact gradient (RBP)", "1"),
            "free_residual": variable("sample", fres, "last residual of the free phase", "1"),
            "loss": variable((), float(ref.loss), "batch-mean loss at the free state", "1"),
        },
        coords={
            "seed": variable("seed", np.array([int(s) for s in seeds]), "random seed", "1"),
            "layer": variable(
                "layer",
                [f"W{l}" for l in range(1, L + 1)],
                "weight layer (W_l and b_l together)",
                "1",
            ),
            "sample": np.arange(setup.batch.size),
        },
    )


def beta_sweep(
    betas: Sequence[float] = tuple(np.logspace(-3, 0, 8)),
    estimators: Sequence[str] = ESTIMATORS,
    setup: BetaSetup | None = None,
    **sweep_kwargs: Any,
) -> xr.Dataset:
    """Bias and variance of each EP estimator over a grid of beta (see module docstring).

    Parameters
    ----------
    betas : sequence of float
        Nudging strengths > 0 (default 8 values from 1e-3 to 1, log-spaced).
    estimators : sequence of str
        From ``("one-sided", "random-sign", "symmetric")``.
    setup : BetaSetup, optional
        Network, batch, solver (tolerance mode) and the estimators' seeds, the same at
        every point (default ``BetaSetup()``).
    **sweep_kwargs
        Passed to :func:`studies.sweep.sweep` (``out_dir``, ``path``, ``workers``, ...).

    Returns
    -------
    xarray.Dataset
        ``study="beta-sweep"``; dims beta, estimator, seed, layer, sample.
    """
    setup = setup or BetaSetup()
    for b in betas:
        if not float(b) > 0:
            raise ValueError(f"every beta must be > 0 (got {b}); the sign is the estimator's")
    for e in estimators:
        if e not in ESTIMATORS:
            raise ValueError(f"unknown estimator {e!r}; choose from {', '.join(ESTIMATORS)}")
    return sweep(
        beta_point,
        {"beta": [float(b) for b in betas], "estimator": list(estimators)},
        fixed={"setup": setup},
        title="Bias and variance of EP gradient estimators versus beta (reference: RBP)",
        study="beta-sweep",
        seeds=list(setup.seeds),
        **sweep_kwargs,
    )
