"""Coupled learning (Stern et al. 2021): positive, negative and centered variants."""

from __future__ import annotations

import warnings

import numpy as np

from eqprop.network import (
    Gradient,
    Network,
    check_input,
    check_state,
    check_target,
    contrast_gradient,
)
from eqprop.rules.base import LearningRule, PhaseSpec, contrast, output_columns
from eqprop.rules.base import check_choice as _check_choice

__all__ = ["COUPLED_VARIANTS", "CoupledLearning", "coupled_limit"]

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
    :func:`coupled_limit` computes the limit directly.

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


def coupled_limit(
    net: Network,
    x,
    d,
    s0,
    *,
    eps: float = 0.5,
    check_fixed_point: float | None = 1e-6,
) -> Gradient:
    r"""The :math:`\eta\to0` limit of coupled learning's update, computed directly from
    the clamped output's sensitivity at the free state (no clamped phase is run).

    With the output held at :math:`y^0 + \eta\,\delta`, the hidden units stay at a fixed
    point of the step map :math:`G` of the dynamics, :math:`h = G_h(h, y)`, so they move
    along

    .. math:: \frac{dh}{d\eta} = (I - J_{hh})^{-1} J_{hy}\,\delta, \qquad
              J = \partial G/\partial s \text{ at } s^0,

    (:class:`eqprop.gradients.StepModel`'s Jacobian: a hidden unit held at a bound of the
    box has a zero row and stays there, the active-set rule of recurrent backprop), and the
    limit is the directional derivative of :math:`G(s) = \partial F/\partial\theta(s,
    \beta = 0)` along :math:`v = (dh/d\eta,\ \delta)`,

    .. math:: \lim_{\eta\to0}\widehat\nabla = \frac{\partial^2 F}{\partial\theta\,
              \partial s}\,v = \Big(\frac{dy^0}{d\theta}\Big)^{\!\top} S\,(y^0 - d)

    for an energy with a nonsingular Hessian (:class:`CoupledLearning`: :math:`S` the
    Schur complement of the hidden block; ``docs/rules.rst`` derives it). For an energy
    the two routes agree (tested against the Hessian built by central differences).

    The derivative is taken as :math:`[4G(s^0 + \tfrac{t}{2}v) - 3G(s^0) - G(s^0 + tv)]/t`,
    :math:`t = 10^{-4}/\max(1, \|v\|_\infty)`: exact up to round-off where :math:`G` is
    quadratic in the state along :math:`v` (hardsigmoid units inside the box), error
    :math:`O(t^2)` for smooth activations. One-sided, so that units at a bound move only
    into the box: :math:`\delta` is :math:`d - y^0` with the components that point out
    of the box at a bound set to 0 (where :func:`coupled_target` clips the positive clamp).
    In a box the limit is thus that of the ``"positive"`` variant; the ``"negative"`` one
    pushes such units outward and can have another.

    Parameters
    ----------
    net : Network
        Squared cost (the output must be in the state); computed in float64.
    x : ndarray (batch, sizes[0])
    d : ndarray (batch, n_out)
    s0 : ndarray (batch, n_state)
        The free fixed point.
    eps : float
        Step of the energy-based map (sets the active set, as in
        :func:`eqprop.gradients.recurrent_backprop`).
    check_fixed_point : float or None
        Warn (RuntimeWarning) when :math:`\max|G(s^0) - s^0|` exceeds this.

    Returns
    -------
    Gradient
        float64, batch mean, the sign convention of every gradient (SGD subtracts it).

    Raises
    ------
    ValueError
        A graph network, a cross-entropy readout, or shapes that do not fit.
    """
    from eqprop.gradients import StepModel, as_dtype, make_step

    if not isinstance(net, Network):
        raise ValueError(
            f"coupled_limit takes a layered eqprop.network.Network, got {type(net).__name__}"
        )
    if net.cost != "squared":
        raise ValueError(
            f"coupled learning clamps the output layer, which a cost={net.cost!r} readout keeps "
            "outside the state; coupled_limit needs cost='squared'"
        )
    net = as_dtype(net, np.float64)
    x = check_input(net, x)
    batch = x.shape[0]
    d = check_target(net, d, batch)
    s = check_state(net, s0, batch, name="s0")
    if check_fixed_point is not None:
        residual = float(np.max(np.abs(make_step(net, x, eps=float(eps))(s) - s)))
        if not residual <= check_fixed_point:
            warnings.warn(
                f"s0 is not a fixed point (max |G(s) - s| = {residual:.3g} > "
                f"{check_fixed_point:g}); the coupled-learning limit is not exact there",
                RuntimeWarning,
                stacklevel=2,
            )
    model = StepModel(net, eps=eps, dtype=np.float64)
    J = np.transpose(model.dense_jt(model.coefficients(x, s)), (0, 2, 1))
    a, _ = output_columns(net)
    y0 = s[:, a:]
    delta = d - y0
    if net.bounds is not None:
        low, high = net.bounds
        outward = ((y0 <= low) & (delta < 0)) | ((y0 >= high) & (delta > 0))
        delta = np.where(outward, 0.0, delta)
    rhs = np.einsum("bij,bj->bi", J[:, :a, a:], delta)
    dh = np.linalg.solve(np.eye(a)[None] - J[:, :a, :a], rhs[:, :, None])[:, :, 0]
    v = np.concatenate([dh, delta], axis=1)
    t = 1e-4 / max(1.0, float(np.max(np.abs(v))))
    states = [s, s + 0.5 * t * v, s + t * v]
    return contrast_gradient(net, x, d, states, [0.0, 0.0, 0.0], [-3.0 / t, 4.0 / t, -1.0 / t])
