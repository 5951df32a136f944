"""Coupled learning (Stern et al. 2021): positive, negative and centered variants."""

from __future__ import annotations

import numpy as np

from eqprop.rules.base import LearningRule, PhaseSpec, contrast
from eqprop.rules.base import check_choice as _check_choice

__all__ = ["COUPLED_VARIANTS", "CoupledLearning"]

COUPLED_VARIANTS = ("positive", "negative", "centered")


class CoupledLearning(LearningRule):
    r"""Coupled learning (Stern, Hexner, Rocks & Liu 2021, Phys. Rev. X 11:021045), with the
    positive, negative and centered variants compared by Scellier et al. (2023, NeurIPS,
    "Energy-based learning algorithms for analog computing").

    After the free phase (state :math:`s^0`, output :math:`y^0`), each clamped phase holds
    the output at :math:`y^{\pm\eta} = y^0 \pm \eta\,(d - y^0)` (:func:`coupled_target`,
    projected onto the state's box if the network has one;
    ``PhaseSpec(..., clamp=True, eta=±eta)``, phase names ``"clamped+"`` /
    ``"clamped-"``) and relaxes the hidden layers from the free state, ``dyn.K`` steps.
    With :math:`G(s) = \partial F/\partial\theta(s)` (both at :math:`\beta = 0`):

    * ``"positive"``: :math:`\widehat\nabla = [G(s^{+\eta}) - G(s^0)]/\eta`;
    * ``"negative"``: :math:`\widehat\nabla = [G(s^0) - G(s^{-\eta})]/\eta`;
    * ``"centered"``: :math:`\widehat\nabla = [G(s^{+\eta}) - G(s^{-\eta})]/(2\eta)`.

    Positive with :math:`\eta = 1` is contrastive Hebbian learning.

    **The limit** :math:`\eta\to0` (for an energy :math:`E` with a nonsingular Hessian
    :math:`H = \partial^2E/\partial s^2` at the free state, blocks :math:`h` hidden and
    :math:`y` output). The clamped state moves along
    :math:`ds/d\eta = (-H_{hh}^{-1}H_{hy}\,\delta,\ \delta)`, :math:`\delta = d - y^0`,
    which equals :math:`H^{-1}(0,\ S\delta)` with
    :math:`S = H_{yy} - H_{yh}H_{hh}^{-1}H_{hy} = [(H^{-1})_{yy}]^{-1}` the Schur
    complement of the hidden block. All three variants tend to

    .. math:: \lim_{\eta\to0}\widehat\nabla
              = \frac{\partial^2 E}{\partial\theta\,\partial s}\,H^{-1}
                \begin{pmatrix}0\\ S\,(d - y^0)\end{pmatrix}
              = \Big(\frac{dy^0}{d\theta}\Big)^{\!\top} S\,(y^0 - d),

    whereas the gradient of the squared loss (EP's limit) is
    :math:`(dy^0/d\theta)^\top (y^0 - d)`: clamping prescribes the output's displacement,
    EP's nudge the force on it, so coupled learning's output error is preconditioned by
    :math:`S` (positive definite when :math:`H` is; the limit is a descent direction but
    not the gradient unless :math:`S \propto I`). The one-sided variants approach the
    limit at first order in :math:`\eta`, the centered one at second order (tested).

    Parameters
    ----------
    eta : float
        Clamping factor in (0, 1] (1: clamp to the targets).
    variant : {"positive", "negative", "centered"}
    steps : {"K", "T"}
        Step budget of the clamped phases in fixed-steps mode.
    """

    name = "coupled"
    clamps_output = True

    def __init__(self, eta: float = 0.5, variant: str = "centered", steps: str = "K"):
        try:
            eta = float(eta)
        except (TypeError, ValueError):
            raise ValueError(f"CoupledLearning needs a number eta in (0, 1], got {eta!r}") from None
        if not (np.isfinite(eta) and 0.0 < eta <= 1.0):
            raise ValueError(
                f"CoupledLearning needs eta in (0, 1] (the fraction of the way from the free "
                f"output to the targets), got {eta}"
            )
        self.eta = eta
        self.variant = _check_choice("coupled-learning variant", variant, COUPLED_VARIANTS)
        plus = PhaseSpec("clamped+", 0.0, steps=steps, clamp=True, eta=eta)
        minus = PhaseSpec("clamped-", 0.0, steps=steps, clamp=True, eta=-eta)
        self.specs = {"positive": (plus,), "negative": (minus,), "centered": (plus, minus)}[
            self.variant
        ]

    def __repr__(self) -> str:
        return (
            f"CoupledLearning(eta={self.eta}, variant={self.variant!r}, "
            f"steps={self.specs[0].steps!r})"
        )

    def plan(self, rng):
        return self.specs

    def combine(self, net, cx, d, phases):
        eta = self.eta
        if self.variant == "positive":
            low, high, span = phases["free"], phases["clamped+"], eta
        elif self.variant == "negative":
            low, high, span = phases["clamped-"], phases["free"], eta
        else:
            low, high, span = phases["clamped-"], phases["clamped+"], 2.0 * eta
        S = np.stack([low.state, high.state])
        return contrast(net, cx, d, S, [0.0, 0.0], [-1.0 / span, 1.0 / span])
