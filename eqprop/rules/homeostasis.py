r"""Jacobian homeostasis (Laborieux & Zenke 2024) for networks without weight symmetry.

"Improving equilibrium propagation without weight symmetry through Jacobian homeostasis"
(ICLR 2024): with untied feedback, the neuronal error vectors of (generalised) EP,
:math:`-J^{-1}\partial C/\partial s`, differ from recurrent backprop's,
:math:`-J^{-\top}\partial C/\partial s`, by as much as the Jacobian :math:`J` of the
dynamics at the free fixed point is asymmetric. The paper adds to the loss a homeostatic
term that penalises that asymmetry at the free state,
:math:`\|J - J^\top\|_F^2`, and estimates it with random probes
:math:`\epsilon \sim \mathcal N(0, I)` from
:math:`\|J - J^\top\|_F^2 = 2\,(\|J\|_F^2 - \mathrm{tr}\,J^2)`:
:math:`\mathbb E_\epsilon[\|J\epsilon\|^2 - \epsilon^\top J (J\epsilon)]`; the authors'
code divides by the number of state units :math:`n` and averages over the batch, and the
gradient is taken with the free state held fixed (no derivative through the fixed point).

Here the same quantity is computed **exactly** (no probes, no extra phases; the paper's
estimator is unbiased for it):

.. math:: H(\theta) = \frac{1}{2n}\,\overline{\|J - J^\top\|_F^2}
          = \frac{1}{n}\,\overline{\|J\|_F^2 - \mathrm{tr}\,J^2},

batch mean over samples, with :math:`J = \partial f/\partial s` the Jacobian of the free
vector field of :mod:`eqprop.graph.reference` at the free state :math:`s^*` (hopfield
kind: :math:`f = -s + \rho'(s)\odot u`). Writing :math:`M` for the coupling matrix of
:func:`eqprop.graph.backprop.coupling_matrix` (block ``[src, dst]`` = :math:`W_c`, block
``[dst, src]`` = the feedback matrix :math:`F_c`: :math:`W_c^\top`,
:math:`\gamma W_c^\top` or :math:`B_c`) and :math:`q = \rho'(s^*)`,

.. math:: J = -I + \mathrm{diag}(\rho''(s)\odot u) + \mathrm{diag}(q)\,M^\top
          \mathrm{diag}(q), \qquad J - J^\top = \mathrm{diag}(q)\,(M^\top - M)\,
          \mathrm{diag}(q),

so the diagonal cancels and, per coupling with :math:`E_c = W_c - F_c^\top`,

.. math:: H = \frac{1}{n}\sum_c \sum_{ij} S^c_{ij}\,(E_c)_{ij}^2, \qquad
          S^c = \overline{q_{src}^{2\top} q^2_{dst}},

a sum of weight asymmetries weighted by the gains of the units they join at the free
state (a saturated unit, :math:`\rho' = 0`, does not count: a *functional* asymmetry).
A unit held on a bound of its layer's box by the projection (a hard sigmoid at 0 or 1)
does not move under a perturbation, so its row and column are left out (:math:`q = 0`):
the penalty is that of the Jacobian among the free units, the active set of
:mod:`eqprop.graph.backprop` at a fixed point.
With the state held fixed, :math:`\partial H/\partial W_c = \frac{2}{n} S^c\odot E_c\,
\partial E_c/\partial W_c` (1 for free and random feedback, :math:`1-\gamma` for scaled)
and :math:`\partial H/\partial B_c = -\frac{2}{n}(S^c\odot E_c)^\top` (free feedback);
biases and couplings from the input do not enter. Exact, O(batch n_src n_dst) per coupling,
like one weight update.

The authors' code takes the Jacobian with respect to the activities
:math:`a = \rho(s)` instead of the state (for a dense network that is the plain weight
asymmetry, :math:`q = 1` above); the state Jacobian used here is the one whose asymmetry
separates EP's error vectors from recurrent backprop's in eqprop's dynamics
(:mod:`eqprop.graph.backprop`).

:func:`add_homeostasis` adds ``strength * dH/dtheta`` at the rule's free state to the
update of EP and vector-field EP, their ``homeostasis`` parameter (``eqprop train --rule
vf-ep|ep --homeostasis STRENGTH``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eqprop.graph import reference as R
from eqprop.graph.backprop import _columns
from eqprop.graph.gradient import GraphGradient, _ordered
from eqprop.graph.model import GraphNetwork

__all__ = [
    "add_homeostasis",
    "check_homeostasis_config",
    "check_homeostasis_network",
    "check_strength",
    "homeostasis_gradient",
    "homeostasis_penalty",
]


def check_strength(strength: float) -> float:
    """``strength`` as a float if finite and >= 0, else one ValueError naming it."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"homeostasis strength must be a number >= 0, got {strength!r}") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"homeostasis strength must be finite and >= 0, got {strength!r}")
    return value


def check_homeostasis_network(net: object) -> GraphNetwork:
    """Raise ValueError unless ``net`` is a hopfield graph network with an asymmetric
    (untied) dense coupling between state layers; return it."""
    if not isinstance(net, GraphNetwork):
        raise ValueError(
            "Jacobian homeostasis needs a GraphNetwork with untied feedback "
            "(eqprop.graph.chain(..., feedback='free'); --feedback free|random)"
        )
    if net.kind != "hopfield":
        raise ValueError(
            f"Jacobian homeostasis is implemented for the hopfield kind, not {net.kind!r}"
        )
    off = net.offsets
    inner = [c for c in net.couplings if c.source in off and c.target in off]
    for c in inner:
        if c.type != "dense":
            raise ValueError(f"Jacobian homeostasis: coupling {c.name!r} is {c.type!r}, not dense")
    if all(c.feedback == "tied" for c in inner):
        raise ValueError(
            "Jacobian homeostasis penalises the asymmetric part of the Jacobian, and a "
            "network whose couplings are all tied (feedback W^T) has none; use "
            "--feedback free|random|scaled or drop --homeostasis"
        )
    return net


def check_homeostasis_config(strength: float, config: Any) -> None:
    """Raise ValueError if a :class:`eqprop.config.TrainConfig` cannot train with the
    penalty at ``strength`` (0: off, always fine): its network must have untied feedback
    and the hopfield kind (:func:`check_homeostasis_network` on the built network)."""
    if strength == 0:
        return
    net = config.network
    if net.feedback == "tied":
        raise ValueError(
            "homeostasis penalises the asymmetric part of the Jacobian, and a network "
            "whose couplings are all tied (feedback W^T) has none; give --feedback "
            "free|random|scaled or drop --homeostasis"
        )
    if net.kind != "hopfield":
        raise ValueError(f"homeostasis is implemented for the hopfield kind, not {net.kind!r}")


def _gains(net: GraphNetwork, x: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """:math:`q^2` per state layer (batch, size): :math:`\\rho'(s)^2` on the free units,
    0 on units held on a bound of their layer's box (module docstring)."""
    q = _columns(net, s, 1)
    for name, (a, b) in net.offsets.items():
        box = net.layer(name).box
        if box is not None:
            v = s[:, a:b]
            q[:, a:b] *= (v > box[0]) & (v < box[1])
    return {k: v**2 for k, v in net.split(q).items()}


def _asymmetries(net: GraphNetwork, x, s):
    """Yield ``(coupling, S, E, dE/dW)`` for every untied dense coupling between state
    layers (module docstring)."""
    x, s, _ = R._inputs(net, x, s)
    q2 = _gains(net, x, s)
    batch = s.shape[0]
    for c in net.couplings:
        if c.source not in q2 or c.target not in q2 or c.feedback == "tied":
            continue
        if c.feedback == "scaled":
            E, dE = (1.0 - c.gamma) * c.W, 1.0 - c.gamma
        else:
            assert c.B is not None
            E, dE = c.W - c.B.T, 1.0
        S = q2[c.source].T @ q2[c.target] / batch
        yield c, S, E, dE


def homeostasis_penalty(net: GraphNetwork, x, s) -> float:
    """The homeostatic penalty :math:`H` at the state ``s`` (module docstring), exact.

    Parameters
    ----------
    net : GraphNetwork
        Hopfield kind, untied feedback (:func:`check_homeostasis_network`).
    x : ndarray (batch, n_in)
    s : ndarray (batch, n_state)
        The free state (a fixed point of the free dynamics).

    Returns
    -------
    float
        :math:`\\frac{1}{2n}\\overline{\\|J - J^\\top\\|_F^2}` (>= 0; 0 for ``B = W^T``).
    """
    check_homeostasis_network(net)
    total = sum(float(np.sum(S * E**2)) for _, S, E, _ in _asymmetries(net, x, s))
    return total / net.n_state


def homeostasis_gradient(net: GraphNetwork, x, s) -> GraphGradient:
    """:math:`\\partial H/\\partial\\theta` at fixed ``s``, by parameter name (zeros for
    biases, input couplings and tied couplings), same shapes and dtype as
    :meth:`GraphNetwork.parameters`."""
    check_homeostasis_network(net)
    grads: dict[str, np.ndarray] = {k: np.zeros_like(v) for k, v in net.parameters().items()}
    n = net.n_state
    for c, S, E, dE in _asymmetries(net, x, s):
        G = (2.0 / n) * S * E
        grads[f"{c.name}.W"] = dE * G
        if c.feedback == "free":
            grads[f"{c.name}.B"] = -G.T
    return _ordered(net, grads)


def add_homeostasis(net, cx, phases, grad, strength: float):
    """``grad + strength * dH/dtheta`` at the free state ``phases["free"]``; ``grad``
    itself when ``strength`` is 0 (any network). The ``homeostasis`` parameter of
    :class:`~eqprop.rules.EquilibriumPropagation` and
    :class:`~eqprop.rules.VectorFieldEP` (their ``combine`` calls it).

    Raises
    ------
    ValueError
        ``strength`` > 0 on a network :func:`check_homeostasis_network` refuses (all
        couplings tied, not hopfield, not a graph network).
    """
    if strength == 0:
        return grad
    net = check_homeostasis_network(net)
    h = homeostasis_gradient(net, cx.x, phases["free"].state)
    s = net.dtype.type(strength)
    return _ordered(net, {k: grad[k] + s * h[k] for k in net.parameters()})
