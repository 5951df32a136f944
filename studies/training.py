"""Training-curves study: train/test error per epoch for estimators, costs and seeds.

Each point trains one network with :func:`eqprop.train.train` (the trainer of ``eqprop
train``) from a base :class:`eqprop.train.TrainConfig` (given as the JSON-able mapping
of :meth:`~eqprop.config.TrainConfig.to_dict`, parts and/or flat names, which the sweep
records) with ``estimator``, ``cost`` and ``seed`` replaced, and keeps its per-epoch
history (``train_error``, ``test_error``, ``valid_error``, losses, convergence and
timing variables; see :data:`eqprop.train.HISTORY_VARIABLES`).

Dataset: dims ``estimator``, ``cost``, ``seed``, ``epoch``; attribute
``study="training-curves"``. Timing variables (``train_time``, ``eval_time``,
``samples_per_second``) depend on the machine; everything else is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from .sweep import sweep

__all__ = ["QUICK", "training_curves", "training_point"]


def _quick() -> dict[str, Any]:
    from eqprop.config import (
        DataConfig,
        DynamicsConfig,
        NetworkConfig,
        OptimizerConfig,
        RuleConfig,
        RunConfig,
        TrainConfig,
        train_dynamics,
    )

    config = TrainConfig(
        network=NetworkConfig("64-32-10", dtype="float32"),
        dynamics=DynamicsConfig(train_dynamics(T=15, K=4)),
        rule=RuleConfig("ep", {"beta": 0.5, "estimator": "random-sign"}),
        optimizer=OptimizerConfig((0.2, 0.05)),
        data=DataConfig("digits"),
        run=RunConfig(epochs=5, batch_size=20),
    )
    return config.to_dict()


#: A small configuration that trains in seconds (digits, one hidden layer), as
#: :meth:`eqprop.config.TrainConfig.to_dict`.
QUICK: dict[str, Any] = _quick()


def training_point(
    estimator: str, cost: str, seed: int, *, base: Mapping[str, Any] | None = None
) -> xr.Dataset:
    """Train once and return the per-epoch history (provenance attributes dropped)."""
    from eqprop.train import TrainConfig, train

    config = TrainConfig.from_dict(base or {})
    config = config.replace(estimator=estimator, cost=cost, seed=int(seed), output=None)
    result = train(config, quiet=True, command="studies.training.training_point")
    return result.history.drop_attrs(deep=False)


def training_curves(
    estimators: Sequence[str] = ("one-sided", "random-sign", "symmetric"),
    seeds: Sequence[int] = (0, 1, 2),
    costs: Sequence[str] = ("squared",),
    *,
    base: Mapping[str, Any] | None = None,
    **sweep_kwargs: Any,
) -> xr.Dataset:
    """Train every (estimator, cost, seed) and stack the histories.

    Parameters
    ----------
    estimators, seeds, costs : sequence
        Grid of the study (``cost`` in ``("squared", "cross-entropy")``).
    base : dict, optional
        :class:`eqprop.train.TrainConfig` settings shared by all runs, as
        :meth:`~eqprop.config.TrainConfig.from_dict` reads them (parts and/or flat names;
        default :data:`QUICK`); ``estimator``, ``cost``, ``seed`` and ``output`` are set
        per point (the rule must be EP).
    **sweep_kwargs
        Passed to :func:`studies.sweep.sweep` (``out_dir``, ``path``, ``workers``, ...).

    Returns
    -------
    xarray.Dataset
        ``study="training-curves"``.
    """
    base = dict(QUICK if base is None else base)
    if "lrs" in base:
        base["lrs"] = [float(v) for v in base["lrs"]]
    return sweep(
        training_point,
        {
            "estimator": list(estimators),
            "cost": list(costs),
            "seed": [int(s) for s in seeds],
        },
        fixed={"base": base},
        title="Training curves of EP: error per epoch for estimators, costs and seeds",
        study="training-curves",
        seeds=[int(s) for s in seeds],
        **sweep_kwargs,
    )
