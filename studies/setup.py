"""The parts a study point is built from: its network, its batch and its phases' solver.

Each study composes the parts it needs into one frozen setup record
(:class:`studies.beta.BetaSetup`, :class:`studies.rules.RulesSetup`), which its point
function and its sweep both take: the sweep hashes and records the setup's fields
(:func:`studies.sweep.point_key`), the point builds what it runs from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BatchSetup", "NetworkSetup", "SolverSetup", "int_tuple", "make_batch"]


def int_tuple(values: Sequence[Any]) -> tuple[int, ...]:
    """``values`` as a tuple of Python ints (sizes, seeds)."""
    return tuple(int(v) for v in values)


def make_batch(
    sizes: Sequence[int], batch: int, seed: int, data: str | None = None, dtype: Any = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x`` (batch, sizes[0]) and one-hot targets ``d`` (batch, sizes[-1]).

    ``data=None``: uniform random inputs in [0, 1) and random classes (seeded).
    ``data="digits"`` / ``"mnist"`` / ``"fashion-mnist"``: the first ``batch`` training
    samples of :func:`eqprop.data.load_dataset` (``sizes[0]`` must match the data).
    """
    n_in, n_out = int(sizes[0]), int(sizes[-1])
    if data is None:
        rng = np.random.default_rng(seed)
        x = rng.random((batch, n_in))
        labels = rng.integers(0, n_out, size=batch)
    else:
        from eqprop.data import load_dataset

        train = load_dataset(data, limit=batch).train
        x, labels = np.asarray(train.x)[:batch], np.asarray(train.labels)[:batch]
        if x.shape[1] != n_in:
            raise ValueError(f"data {data!r} has {x.shape[1]} features but sizes[0]={n_in}")
    d = np.zeros((batch, n_out))
    d[np.arange(batch), labels % n_out] = 1.0
    return np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(d, dtype=dtype)


@dataclass(frozen=True)
class NetworkSetup:
    """A layered network: ``init_network(sizes, kind=, activation=, cost=, dtype=, seed=)``.

    Attributes
    ----------
    sizes : tuple of int
        Layer sizes, input first.
    kind, activation, cost, dtype : str
        As :func:`eqprop.network.init_network`.
    """

    sizes: tuple[int, ...] = (20, 16, 5)
    kind: str = "hopfield"
    activation: str = "hardsigmoid"
    cost: str = "squared"
    dtype: str = "float64"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", int_tuple(self.sizes))

    def build(self, seed: int) -> Any:
        """The network with weights drawn from ``seed``."""
        from eqprop.network import init_network

        return init_network(
            self.sizes,
            kind=self.kind,
            activation=self.activation,
            cost=self.cost,
            dtype=self.dtype,
            seed=seed,
        )


@dataclass(frozen=True)
class BatchSetup:
    """A batch of :func:`make_batch`: ``size`` samples, random (``data=None``) or of a data set.

    Attributes
    ----------
    size : int
        Samples in the batch.
    data : str or None
        ``None`` (uniform random inputs, random classes), ``"digits"``, ``"mnist"`` or
        ``"fashion-mnist"`` (its first training samples).
    """

    size: int = 8
    data: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", int(self.size))

    def make(self, sizes: Sequence[int], seed: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and one-hot targets for layer ``sizes``, drawn from ``seed`` (random data)."""
        return make_batch(sizes, self.size, seed, self.data, dtype)


@dataclass(frozen=True)
class SolverSetup:
    """Every phase of a point runs to the tolerance ``atol`` (not for fixed step counts).

    Attributes
    ----------
    eps : float
        Step of the hopfield kind.
    method : str
        Solver method (:data:`eqprop.phases.METHOD_NAMES`).
    atol : float
        Solver tolerance.
    max_iter : int
        Iteration cap of every phase.
    """

    eps: float = 0.5
    method: str = "picard"
    atol: float = 1e-11
    max_iter: int = 20000

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "atol", float(self.atol))
        object.__setattr__(self, "max_iter", int(self.max_iter))

    def dynamics(self) -> Any:
        """``Dynamics(eps=, method=, fixed_steps=False, atol=, max_iter=)``."""
        from eqprop.phases import Dynamics

        return Dynamics(
            eps=self.eps,
            method=self.method,
            fixed_steps=False,
            atol=self.atol,
            max_iter=self.max_iter,
        )
