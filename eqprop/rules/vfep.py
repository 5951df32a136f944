"""Vector-field EP (Scellier, Goyal, Binas, Mesnard & Bengio 2018) on free-feedback networks.

"Generalization of Equilibrium Propagation to Vector Field Dynamics": a network whose
feedback weights ``B`` are free (not ``W^T``) has no energy; its dynamics are a vector
field. VF-EP runs the same two phases as one-sided EP (free, then nudged at ``beta``) and
gives every weight a local contrastive update: presynaptic activity at the free state
times the change of the postsynaptic activity between the phases,

.. math:: \\widehat{\\partial_W\\mathcal L} = -\\frac{1}{\\beta\\,n_b}\\,
          \\rho(s^0_{src})^\\top\\bigl[\\rho(s^\\beta_{dst}) - \\rho(s^0_{dst})\\bigr],
          \\qquad
          \\widehat{\\partial_B\\mathcal L} = -\\frac{1}{\\beta\\,n_b}\\,
          \\rho(s^0_{dst})^\\top\\bigl[\\rho(s^\\beta_{src}) - \\rho(s^0_{src})\\bigr]

for a coupling ``src -> dst`` with forward ``W`` (src, dst) and feedback ``B`` (dst, src),
batch mean (:math:`n_b` samples); SGD does ``p -= lr * grad[name]``. A ``conv2d``
coupling gets the same products in its kernels' shape (:func:`eqprop.graph.conv.weight_gradient`
of the free source activity and the target's change for ``W``, and
:func:`eqprop.graph.conv.feedback_gradient` of the source's change and the free target
activity for ``B``, max-pool routing at the free state). Couplings from the
input and biases get EP's one-sided update (their presynaptic side does not change).

With ``B = W^T``, summing the updates of ``W`` and ``B^T`` as for one tied weight gives
EP's one-sided update plus :math:`\\frac{1}{\\beta n_b}\\Delta\\rho_{src}^\\top
\\Delta\\rho_{dst}` (the product of the two phases' activity differences over
:math:`\\beta`, second order in :math:`\\beta`), since
:math:`\\rho^\\beta_s{}^\\top\\rho^\\beta_d - \\rho^0_s{}^\\top\\rho^0_d =
\\rho^0_s{}^\\top\\Delta\\rho_d + \\Delta\\rho_s^\\top\\rho^0_d +
\\Delta\\rho_s^\\top\\Delta\\rho_d`.
Hopfield kind, a cost on a state output layer; every coupling between state layers has
free (learned ``B``) or random (fixed ``B``: only ``W`` learns) feedback.

Contrast with ``EquilibriumPropagation`` (``--rule ep``) on the same free-feedback
network: EP contrasts the product :math:`\\rho(s_{src})^\\top\\rho(s_{dst})` of each
coupling between the phases, and gives ``B`` the transpose of ``W``'s update, so the
updates leave the asymmetry :math:`W - B^\\top` unchanged (only weight decay and the
homeostasis penalty of :mod:`eqprop.rules.homeostasis` change it). VF-EP's updates of
``W`` and ``B^T`` differ (presynaptic activity at the free state, postsynaptic change), so
``B`` can drift towards or away from ``W^T``.
"""

from __future__ import annotations

import numpy as np

from eqprop.graph import reference as R
from eqprop.graph.gradient import _ordered
from eqprop.graph.gradient import contrast as graph_contrast
from eqprop.graph.model import GraphNetwork
from eqprop.rules.base import LearningRule, PhaseSpec
from eqprop.rules.homeostasis import add_homeostasis, check_homeostasis_config, check_strength

__all__ = ["VectorFieldEP", "vf_ep_gradient"]


class VectorFieldEP(LearningRule):
    """Vector-field EP (module docstring): phases ``free`` and ``nudged`` at ``beta``.

    Parameters
    ----------
    beta : float
        Nudging strength, finite and nonzero.
    homeostasis : float
        Strength >= 0 of the Jacobian homeostasis penalty added to the estimate
        (:func:`eqprop.rules.homeostasis.add_homeostasis`); 0 (default): off.
    """

    name = "vf-ep"

    def __init__(self, beta: float = 0.5, homeostasis: float = 0.0):
        beta = float(beta)
        if not np.isfinite(beta) or beta == 0.0:
            raise ValueError(f"VectorFieldEP needs a finite beta != 0, got {beta}")
        self.beta = beta
        self.homeostasis = check_strength(homeostasis)

    def __repr__(self) -> str:
        extra = f", homeostasis={self.homeostasis}" if self.homeostasis else ""
        return f"VectorFieldEP(beta={self.beta}{extra})"

    def check_config(self, config) -> None:
        """A network with free feedback (its ``B`` is learned); ``homeostasis`` as for EP."""
        feedback = config.network.feedback
        if feedback != "free":
            raise ValueError(
                "rule 'vf-ep' learns separate feedback weights B; give feedback='free' "
                f"(--feedback free), not {feedback!r}"
            )
        check_homeostasis_config(self.homeostasis, config)

    def plan(self, rng):
        return (PhaseSpec("nudged", self.beta),)

    def combine(self, net, cx, d, phases):
        if not isinstance(net, GraphNetwork):
            raise ValueError(
                "vector-field EP needs a GraphNetwork with free or random feedback "
                "(eqprop.graph.chain(..., feedback='free'))"
            )
        if net.kind != "hopfield" or net.output_layer.role != "output":
            raise ValueError(
                "vector-field EP: hopfield networks with the output layer in the state only"
            )
        s0, sb = phases["free"].state, phases["nudged"].state
        grad = vf_ep_gradient(net, cx.x, d, s0, sb, self.beta)
        return add_homeostasis(net, cx, phases, grad, self.homeostasis)


def vf_ep_gradient(net: GraphNetwork, x, d, s0, sb, beta: float):
    """The VF-EP estimates by parameter name (module docstring) from the free state
    ``s0`` and the nudged state ``sb`` (batch, n_state) at ``beta``."""
    b = float(beta)
    # EP's one-sided update for the input couplings and the biases (and a starting point)
    grads = dict(graph_contrast(net, x, d, [s0, sb], [0.0, b], [-1.0 / b, 1.0 / b]))
    a0 = R.activities(net, x, s0)
    ab = R.activities(net, x, sb)
    n = s0.shape[0]
    off = net.offsets
    for c in net.couplings:
        if c.source not in off or c.target not in off:
            continue  # from the input (EP's update) or into a readout (refused above)
        if c.feedback not in ("free", "random"):
            raise ValueError(
                f"vector-field EP: coupling {c.name!r} has feedback {c.feedback!r}; its local "
                "updates are defined for separate feedback weights B (feedback 'free', or "
                "'random' with B fixed); use --feedback free (or rule 'ep' on tied weights)"
            )
        src0, dst0 = a0[c.source], a0[c.target]
        dsrc, ddst = ab[c.source] - src0, ab[c.target] - dst0
        if c.type != "dense":
            # the same local products through the coupling's module (a conv kernel: the
            # im2col products of eqprop.graph.conv), max-pool routing at the free state
            m = R.coupling_module(c)
            grads[f"{c.name}.W"] = m.weight_gradient(c, src0, ddst, at=src0) / b
            if c.feedback == "free":
                grads[f"{c.name}.B"] = m.feedback_gradient(c, dsrc, dst0, at=src0) / b
            continue
        grads[f"{c.name}.W"] = -(src0.T @ ddst) / (b * n)
        if c.feedback == "free":
            grads[f"{c.name}.B"] = -(dst0.T @ dsrc) / (b * n)
    return _ordered(net, grads)
