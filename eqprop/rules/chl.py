"""Contrastive Hebbian learning (Movellan 1991): free phase vs output-clamped phase."""

from __future__ import annotations

import numpy as np

from eqprop.rules.base import LearningRule, PhaseSpec, contrast

__all__ = ["ContrastiveHebbian"]


class ContrastiveHebbian(LearningRule):
    """Contrastive Hebbian learning (Movellan 1991): free phase vs output-clamped phase.

    :math:`\\widehat{\\nabla}_\\theta = \\partial_\\theta F(s^{c}) -
    \\partial_\\theta F(s^{0})` (both at :math:`\\beta = 0`), with :math:`s^c` the
    equilibrium with the output clamped to the targets, reached from the free state in
    ``dyn.K`` steps (``dyn.T`` with ``steps="T"``). For the Hopfield kind this is
    :math:`dW_{ij} = -(\\rho_i^c\\rho_j^c - \\rho_i^0\\rho_j^0)`, batch mean.
    Squared cost only (the output must be part of the state). Not a gradient of the loss
    in general; written here as the second member of the rule family.

    Parameters
    ----------
    steps : {"K", "T"}
        Step budget of the clamped phase in fixed-steps mode.
    """

    name = "chl"
    clamps_output = True

    def __init__(self, steps: str = "K"):
        self.spec = PhaseSpec("clamped", 0.0, start="free", steps=steps, clamp=True)

    def __repr__(self) -> str:
        return f"ContrastiveHebbian(steps={self.spec.steps!r})"

    def plan(self, rng):
        return (self.spec,)

    def combine(self, net, cx, d, phases):
        S = np.stack([phases["free"].state, phases["clamped"].state])
        return contrast(net, cx, d, S, [0.0, 0.0], [-1.0, 1.0])
