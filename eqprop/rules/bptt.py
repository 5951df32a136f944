"""The BPTT baseline: backpropagation through the free phase's steps as a rule."""

from __future__ import annotations

import numpy as np

from eqprop.gradients import bptt, iteration_damping
from eqprop.graph.model import GraphNetwork
from eqprop.network import check_target
from eqprop.phases import _graph_clamped, check_graph_batch, clamp, free_phase
from eqprop.rules.base import LearningRule, rule_step

__all__ = ["BackpropThroughTime"]


class BackpropThroughTime(LearningRule):
    r"""Backpropagation through time as a learning rule: the BPTT column the EP papers
    report beside EP (Ernoult et al. 2019; Laborieux et al. 2021).

    The update is :func:`eqprop.gradients.bptt`: the gradient of the loss after the
    ``T`` free steps :math:`s_{t+1} = \Pi((1-a)\,s_t + a\,G(s_t))` (``T``, ``eps`` and
    damping :math:`a` of the free dynamics, from ``s0`` or zeros), backpropagated
    through the last ``truncation`` steps (all of them by default):

    .. math:: \lambda_T = \partial\ell/\partial s_T, \quad
              \widehat\nabla_\theta \mathrel{+}= (\partial D/\partial\theta)^\top
              \lambda_{t+1}, \quad \lambda_t = J_D(s_t)^\top\lambda_{t+1}.

    The free phase is also run by :func:`eqprop.phases.free_phase` (the trainer's
    prediction, persistent particles and convergence report come from it); its state
    equals the last state of BPTT's stored trajectory to round-off (tested). The free
    dynamics must run fixed steps with ``method="fixed"``, ``"fused"`` or ``"picard"``:
    anything else raises :func:`eqprop.gradients.bptt`'s ``ValueError`` naming the field.
    Memory: ``(T + 1) * batch * n_state`` values per step. Both readouts. On a
    :class:`~eqprop.graph.GraphNetwork` (any feedback mode, skip couplings) the update is
    :func:`eqprop.graph.backprop.bptt` through the same steps, keyed by parameter name.

    Parameters
    ----------
    truncation : int or None
        Backpropagate through the last ``truncation`` free steps only (truncated BPTT);
        None (default): all ``T``.
    """

    name = "bptt"

    def __init__(self, truncation: int | None = None):
        if truncation is not None and (
            isinstance(truncation, bool)
            or not isinstance(truncation, int | np.integer)
            or truncation < 1
        ):
            raise ValueError(
                f"BackpropThroughTime needs truncation = an integer >= 1 or None, got "
                f"{truncation!r}"
            )
        self.truncation = None if truncation is None else int(truncation)

    def __repr__(self) -> str:
        return f"BackpropThroughTime(truncation={self.truncation!r})"

    def plan(self, rng):
        return ()

    def estimate(self, net, x, d, dyn, rng=None, s0=None, free_dyn=None):
        """Free phase (``free_dyn``, default ``dyn``), then BPTT through its ``T`` steps.

        Same signature and result as :meth:`LearningRule.estimate`; ``step.phases`` holds
        only ``"free"``, ``step.gradient`` is the
        :class:`~eqprop.gradients.ReferenceGradient`.

        Raises
        ------
        ValueError
            ``truncation`` larger than the free phase's ``T``, or free dynamics BPTT
            cannot follow (tolerance mode, a method other than fixed steps).
        """
        fd = dyn if free_dyn is None else free_dyn
        if self.truncation is not None and self.truncation > fd.T:
            raise ValueError(
                f"BPTT truncation {self.truncation} exceeds the free phase's T = {fd.T}"
            )
        if isinstance(net, GraphNetwork):
            return self._estimate_graph(net, x, d, fd, s0)
        self.check_cost(net.cost)
        cx = clamp(net, x)
        d = check_target(net, d, cx.batch)
        grad = bptt(net, cx.x, d, dyn=fd, K=self.truncation, s0=s0)
        free = free_phase(net, cx, fd, s0=s0)
        return rule_step(net, cx, d, grad, {"free": free})

    def _estimate_graph(self, net, x, d, fd, s0):
        """A :class:`~eqprop.graph.GraphNetwork`: :func:`eqprop.graph.backprop.bptt`
        through the free phase's ``T`` steps (damping and step size of ``fd``, which must
        run fixed steps: :func:`eqprop.gradients.iteration_damping` says why not), as a
        :class:`~eqprop.graph.gradient.GraphGradient`."""
        from eqprop.graph.backprop import bptt as graph_bptt
        from eqprop.graph.gradient import _ordered

        a = iteration_damping(fd, None, "rule 'bptt'")
        cx = _graph_clamped(net, x)
        d = check_graph_batch(net, d, net.n_out, "d", cx.batch)
        res = graph_bptt(net, cx.x, d, fd.T, K=self.truncation, eps=fd.eps, damping=a, s0=s0)
        free = free_phase(net, cx, fd, s0=s0)
        return rule_step(net, cx, d, _ordered(net, res.grads), {"free": free})
