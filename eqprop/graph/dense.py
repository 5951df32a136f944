"""The dense coupling: what one coupling contributes, from its two layers' activities.

For a coupling ``c`` from layer ``src`` to layer ``dst`` with activities ``a_src``
(batch, n_src) and ``a_dst`` (batch, n_dst) (:math:`a = \\rho(s)` in the hopfield kind,
:math:`a = s` in the prototypical kind, :math:`a = x` for the input):

* forward drive into ``dst``: :math:`a_{src} W`, (batch, n_dst);
* feedback drive into ``src``: :math:`a_{dst} W^\\top` (tied),
  :math:`\\gamma\\, a_{dst} W^\\top` (scaled), :math:`a_{dst} B` (free, random),
  (batch, n_src);
* term of F (tied only): :math:`-\\langle a_{src} W, a_{dst}\\rangle` per sample (the
  coupling's :math:`-a_{src}^\\top W a_{dst}` in E, its :math:`-\\Phi_c` in
  :math:`F = -\\Phi`);
* :math:`\\partial F/\\partial W = -a_{src}^\\top a_{dst} / \\mathrm{batch}`;
* local term of a free ``B``: :math:`-a_{dst}^\\top a_{src} / \\mathrm{batch}`.

The last item is not the gradient of anything (free feedback has no energy): it is the
product of the activities the feedback connects, in ``B``'s shape, which local
contrastive rules (vector-field EP) contrast between phases exactly as they contrast
:math:`\\partial F/\\partial W`. A new coupling type is a module with these five
functions (see ``docs/couplings.rst``).
"""

from __future__ import annotations

import numpy as np

from eqprop.graph.model import Coupling

__all__ = [
    "activity_product",
    "energy_term",
    "feedback_drive",
    "feedback_gradient",
    "forward_drive",
    "weight_gradient",
]


def forward_drive(c: Coupling, a_src: np.ndarray) -> np.ndarray:
    """:math:`a_{src} W`, shape (batch, n_dst)."""
    return a_src @ c.W


def feedback_drive(c: Coupling, a_dst: np.ndarray, a_src: np.ndarray | None = None) -> np.ndarray:
    """What the source receives: :math:`a_{dst} W^\\top`, :math:`\\gamma a_{dst} W^\\top`
    or :math:`a_{dst} B`, shape (batch, n_src). ``a_src`` is unused (the interface of
    coupling types whose feedback depends on the source, as max-pooled convolutions)."""
    if c.feedback == "tied":
        return a_dst @ c.W.T
    if c.feedback == "scaled":
        return c.gamma * (a_dst @ c.W.T)
    assert c.B is not None
    return a_dst @ c.B


def energy_term(c: Coupling, a_src: np.ndarray, a_dst: np.ndarray) -> np.ndarray:
    """The coupling's term of F, :math:`-\\sum_{ij} a_{src,i} W_{ij} a_{dst,j}` per sample."""
    if c.feedback != "tied":
        raise ValueError(
            f"coupling {c.name!r}: feedback {c.feedback!r} has no energy term; only "
            "feedback='tied' has one"
        )
    return -np.sum((a_src @ c.W) * a_dst, axis=1)


def weight_gradient(c: Coupling, a_src: np.ndarray, a_dst: np.ndarray) -> np.ndarray:
    """:math:`\\partial F/\\partial W = -a_{src}^\\top a_{dst}` averaged over the batch."""
    return -(a_src.T @ a_dst) / a_src.shape[0]


def feedback_gradient(c: Coupling, a_src: np.ndarray, a_dst: np.ndarray) -> np.ndarray | None:
    """Local term of a free ``B``: :math:`-a_{dst}^\\top a_{src}` / batch; None otherwise."""
    if c.feedback != "free":
        return None
    return -(a_dst.T @ a_src) / a_src.shape[0]


def activity_product(c: Coupling, a_src: np.ndarray, a_dst: np.ndarray) -> np.ndarray:
    """:math:`a_{src}^\\top a_{dst}` summed over the batch, shape (..., n_src, n_dst).

    The outer product behind :func:`weight_gradient` (which is
    :math:`-a_{src}^\\top a_{dst} / \\mathrm{batch}`) before its sign and batch mean, for
    rules that scale the sum themselves (recirculation's summed update,
    :mod:`eqprop.recirculation`); leading axes of ``(..., batch, n)`` activities (a stack
    of networks) are kept.
    """
    return np.swapaxes(a_src, -1, -2) @ a_dst
