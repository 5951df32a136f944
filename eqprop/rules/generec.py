"""GeneRec (O'Reilly 1996): basic, symmetric, midpoint and symmetric-midpoint forms."""

from __future__ import annotations

import numpy as np

from eqprop.graph.gradient import GraphGradient, difference_gradient, from_chain_gradient
from eqprop.graph.model import GraphNetwork
from eqprop.network import Gradient, Network, _activities_np
from eqprop.rules.base import LearningRule, PhaseSpec
from eqprop.rules.base import check_choice as _check_choice

__all__ = ["GENEREC_FORMS", "GeneRec", "generec_gradient"]

GENEREC_FORMS = ("basic", "symmetric", "midpoint", "symmetric-midpoint")


class GeneRec(LearningRule):
    r"""GeneRec, the generalized recirculation algorithm (O'Reilly 1996, Neural Computation
    8:895-938), in its four forms.

    Minus phase: the free phase, activities :math:`a^-`. Plus phase: the output layer
    clamped to the targets, started from the free state (``dyn.K`` steps, or ``dyn.T``
    with ``steps="T"``; phase name ``"clamped"``), activities :math:`a^+`. For the weight
    from unit :math:`i` of layer :math:`l-1` (presynaptic, input side; the clamped input
    ``x`` for layer 1) to unit :math:`j` of layer :math:`l` (postsynaptic), the paper's
    increment is :math:`\Delta W_{ij} = \epsilon\, a_i^-\,(a_j^+ - a_j^-)`. eqprop returns
    estimates of :math:`\partial\mathcal L/\partial\theta` (SGD does ``W -= lr * dW``), so
    with the batch mean :math:`\langle\cdot\rangle`:

    * ``"basic"``: :math:`dW_{ij} = -\langle a_i^-\,(a_j^+ - a_j^-)\rangle`;
    * ``"midpoint"``: the presynaptic activity at the midpoint of the phases,
      :math:`-\langle \tfrac12(a_i^- + a_i^+)\,(a_j^+ - a_j^-)\rangle`;
    * ``"symmetric"``: the basic term plus its mirror image (the same update for the
      weight read in either direction), :math:`-\langle a_i^-(a_j^+ - a_j^-) +
      (a_i^+ - a_i^-)\,a_j^-\rangle`;
    * ``"symmetric-midpoint"``: both, :math:`-\langle \bar a_i(a_j^+ - a_j^-) +
      (a_i^+ - a_i^-)\,\bar a_j\rangle` with :math:`\bar a = \tfrac12(a^- + a^+)`, which
      is exactly :math:`-\langle a_i^+a_j^+ - a_i^-a_j^-\rangle`: contrastive Hebbian
      learning (:class:`ContrastiveHebbian`), as O'Reilly (1996) shows.

    Biases (a presynaptic unit at activity 1 in both phases): :math:`db_j =
    -\langle a_j^+ - a_j^-\rangle` in every form. Activities are :math:`\rho(s)`
    (hopfield) or ``s`` (prototypical). Squared cost only (the output must be in the
    state). The forms are written from the paper's description (the symmetric form keeps
    the weights symmetric, the midpoint form is a second-order, Runge-Kutta-like step);
    the CHL identity is tested to float64 precision.

    Parameters
    ----------
    form : {"basic", "symmetric", "midpoint", "symmetric-midpoint"}
    steps : {"K", "T"}
        Step budget of the plus phase in fixed-steps mode.
    """

    name = "generec"
    clamps_output = True

    def __init__(self, form: str = "basic", steps: str = "K"):
        self.form = _check_choice("GeneRec form", form, GENEREC_FORMS)
        self.spec = PhaseSpec("clamped", 0.0, start="free", steps=steps, clamp=True)

    def __repr__(self) -> str:
        return f"GeneRec(form={self.form!r}, steps={self.spec.steps!r})"

    def plan(self, rng):
        return (self.spec,)

    def combine(self, net, cx, d, phases):
        s_minus, s_plus = phases["free"].state, phases["clamped"].state
        if isinstance(net, GraphNetwork) and cx.chain is not None:  # the fast path
            g = generec_gradient(cx.chain, cx.x, s_minus, s_plus, self.form)
            return from_chain_gradient(net, g)
        return generec_gradient(net, cx.x, s_minus, s_plus, self.form)


def generec_gradient(
    net: Network | GraphNetwork, x: np.ndarray, s_minus: np.ndarray, s_plus: np.ndarray, form: str
) -> Gradient | GraphGradient:
    """GeneRec's update (see :class:`GeneRec`) from the minus and plus states.

    Parameters
    ----------
    net : Network or GraphNetwork
        A graph network gets :func:`eqprop.graph.gradient.difference_gradient` (every
        coupling, skip couplings and free feedback included), a GraphGradient.
    x : ndarray (batch, sizes[0])
        Clamped input, network dtype.
    s_minus, s_plus : ndarray (batch, n_state)
        Free and output-clamped states.
    form : {"basic", "symmetric", "midpoint", "symmetric-midpoint"}

    Returns
    -------
    Gradient
        Batch mean, network dtype.
    """
    _check_choice("GeneRec form", form, GENEREC_FORMS)
    midpoint = form in ("midpoint", "symmetric-midpoint")
    symmetric = form in ("symmetric", "symmetric-midpoint")
    if isinstance(net, GraphNetwork):
        return difference_gradient(net, x, s_minus, s_plus, midpoint=midpoint, symmetric=symmetric)
    am, ap = _activities_np(net, s_minus), _activities_np(net, s_plus)
    off = [int(v) for v in net.offsets]
    B = x.shape[0]
    dW, db = [], []
    for l in range(1, len(off)):
        post_m, post_p = am[:, off[l - 1] : off[l]], ap[:, off[l - 1] : off[l]]
        if l == 1:
            pre_m = pre_p = x
        else:
            pre_m, pre_p = am[:, off[l - 2] : off[l - 1]], ap[:, off[l - 2] : off[l - 1]]
        dpost = post_p - post_m
        g = (0.5 * (pre_m + pre_p) if midpoint else pre_m).T @ dpost
        if symmetric and l > 1:  # the input is clamped: pre_p - pre_m = 0 for layer 1
            g += (pre_p - pre_m).T @ (0.5 * (post_m + post_p) if midpoint else post_m)
        dW.append(np.ascontiguousarray(-g / B, dtype=net.dtype))
        db.append(np.ascontiguousarray(-dpost.mean(axis=0), dtype=net.dtype))
    return Gradient(dW, db)
