"""Equilibrium Propagation (Scellier & Bengio 2017): one-sided, random-sign, symmetric."""

from __future__ import annotations

import numpy as np

from eqprop.rules.base import LearningRule, PhaseSpec, contrast
from eqprop.rules.homeostasis import add_homeostasis, check_homeostasis_config, check_strength

__all__ = ["ESTIMATORS", "EquilibriumPropagation"]

ESTIMATORS = ("one-sided", "random-sign", "symmetric")


class EquilibriumPropagation(LearningRule):
    """Equilibrium Propagation (Scellier & Bengio 2017) with three estimators.

    Parameters
    ----------
    beta : float
        Nudging strength, nonzero (its magnitude for random-sign and symmetric).
    estimator : {"one-sided", "random-sign", "symmetric"}
        See the module docstring. Phase names: ``"nudged+"`` (at +beta) and/or
        ``"nudged-"`` (at -beta).
    homeostasis : float
        Strength >= 0 of the Jacobian homeostasis penalty added to the estimate
        (:func:`eqprop.rules.homeostasis.add_homeostasis`; graph networks with untied
        feedback only); 0 (default): off. On ``feedback="free"`` EP gives ``B`` the
        transpose of ``W``'s update, so only this penalty (and weight decay) changes
        :math:`W - B^\\top`.

    Examples
    --------
    >>> rule = EquilibriumPropagation(beta=0.5, estimator="symmetric")
    >>> step = rule.estimate(net, x, d, Dynamics(T=20, K=4, eps=0.5))  # doctest: +SKIP
    """

    name = "ep"

    def __init__(self, beta: float = 1.0, estimator: str = "one-sided", homeostasis: float = 0.0):
        beta = float(beta)
        if not np.isfinite(beta) or beta == 0.0:
            raise ValueError(f"EquilibriumPropagation needs a finite beta != 0, got {beta}")
        if estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
            )
        self.beta = beta
        self.estimator = estimator
        self.homeostasis = check_strength(homeostasis)

    def __repr__(self) -> str:
        extra = f", homeostasis={self.homeostasis}" if self.homeostasis else ""
        return f"EquilibriumPropagation(beta={self.beta}, estimator={self.estimator!r}{extra})"

    def check_config(self, config) -> None:
        """``homeostasis`` needs untied feedback on the hopfield kind."""
        check_homeostasis_config(self.homeostasis, config)

    def plan(self, rng):
        b = self.beta
        if self.estimator == "symmetric":
            return (PhaseSpec("nudged+", abs(b)), PhaseSpec("nudged-", -abs(b)))
        if self.estimator == "random-sign":
            if rng is None:
                raise ValueError("estimator 'random-sign' needs rng=np.random.Generator")
            b = abs(b) if rng.random() < 0.5 else -abs(b)
        return (PhaseSpec("nudged+" if b > 0 else "nudged-", b),)

    def combine(self, net, cx, d, phases):
        nudged = [p for name, p in phases.items() if name != "free"]
        if self.estimator == "symmetric":
            p, m = phases["nudged+"], phases["nudged-"]
            states = [m.state, p.state]
            betas = [m.beta, p.beta]
            diff = p.beta - m.beta
        else:
            (n,) = nudged
            states = [phases["free"].state, n.state]
            betas = [0.0, n.beta]
            diff = n.beta
        S = np.stack(states)
        grad = contrast(net, cx, d, S, betas, [-1.0 / diff, 1.0 / diff])
        return add_homeostasis(net, cx, phases, grad, self.homeostasis)
