"""The exact-gradient baseline: recurrent backprop at the free equilibrium as a rule."""

from __future__ import annotations

import numpy as np

from eqprop.gradients import recurrent_backprop
from eqprop.graph.model import GraphNetwork
from eqprop.network import check_target
from eqprop.phases import _graph_clamped, check_graph_batch, clamp, free_phase
from eqprop.rules.base import LearningRule, rule_step
from eqprop.rules.base import check_choice as _check_choice

__all__ = ["RBP_METHODS", "RecurrentBackprop"]

RBP_METHODS = ("auto", "dense", "iterative")

#: Largest state (units) for which ``method="auto"`` solves the adjoint densely.
DENSE_MAX_STATE = 128


class RecurrentBackprop(LearningRule):
    r"""Recurrent backprop (Almeida 1987; Pineda 1987) as a learning rule: the backprop
    column of every comparison, trained with the same network, phases and optimizer.

    After the free phase (state :math:`s^0`, run by :func:`eqprop.phases.free_phase` with
    the free dynamics), the update is the exact gradient of the loss at that state,
    :func:`eqprop.gradients.recurrent_backprop`:

    .. math:: (I - J^\top)\,\lambda = \partial\ell/\partial s(s^0), \qquad
              \widehat\nabla_\theta = (\partial G/\partial\theta)^\top\lambda
              + \partial\ell/\partial\theta,

    batch mean, in the network's dtype. It is exact when :math:`s^0` is a fixed point of
    the map :math:`G`; after a finite number of free steps it is the implicit gradient at
    the state reached (the trainer's history reports whether the free phases converged,
    ``free_converged``). Nothing is computed here: the rule only wires the free phase to
    :mod:`eqprop.gradients`. Both readouts (``cost="squared"`` and ``"cross-entropy"``).

    Parameters
    ----------
    method : {"auto", "dense", "iterative"}
        Adjoint solve (see :func:`~eqprop.gradients.recurrent_backprop`): ``"dense"``
        (one LU per sample, O(batch n^3)), ``"iterative"`` (Anderson to ``atol``), or
        ``"auto"``: dense up to ``DENSE_MAX_STATE`` = 128 state units, iterative above.
    atol : float, optional
        Max-norm tolerance of the iterative solve; default 1e-12 in float64, 1e-6 in
        float32.
    max_iter : int
        Iteration cap of the iterative solve (a solve that does not converge warns).
    check_fixed_point : float or None
        Warn when the free state's residual :math:`\max|G(s)-s|` exceeds this (None,
        default: no check; training runs a fixed number of free steps on purpose).

    Examples
    --------
    >>> rule = RecurrentBackprop()
    >>> step = rule.estimate(net, x, d, Dynamics(T=100, K=4, eps=0.5))  # doctest: +SKIP
    """

    name = "rbp"

    def __init__(
        self,
        method: str = "auto",
        atol: float | None = None,
        max_iter: int = 100000,
        check_fixed_point: float | None = None,
    ):
        self.method = _check_choice("recurrent-backprop method", method, RBP_METHODS)
        if atol is not None and not (np.isfinite(atol) and atol > 0):
            raise ValueError(f"RecurrentBackprop needs atol > 0 (finite) or None, got {atol!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
            raise ValueError(f"RecurrentBackprop needs an integer max_iter >= 1, got {max_iter!r}")
        if check_fixed_point is not None and not check_fixed_point > 0:
            raise ValueError(
                f"RecurrentBackprop needs check_fixed_point > 0 or None, got {check_fixed_point!r}"
            )
        self.atol = atol
        self.max_iter = int(max_iter)
        self.check_fixed_point = check_fixed_point

    def __repr__(self) -> str:
        return f"RecurrentBackprop(method={self.method!r}, atol={self.atol!r})"

    def plan(self, rng):
        return ()

    def solve_method(self, n_state: int) -> str:
        """The adjoint solve used for a state of ``n_state`` units."""
        if self.method != "auto":
            return self.method
        return "dense" if n_state <= DENSE_MAX_STATE else "iterative"

    def estimate(self, net, x, d, dyn, rng=None, s0=None, free_dyn=None):
        """Free phase (``free_dyn``, default ``dyn``), then recurrent backprop at its state.

        Same signature and result as :meth:`LearningRule.estimate`; ``step.phases`` holds
        only ``"free"``, ``step.gradient`` is the
        :class:`~eqprop.gradients.ReferenceGradient` (its ``info`` has the adjoint
        residual and, iterative, the iterations).
        """
        fd = dyn if free_dyn is None else free_dyn
        if isinstance(net, GraphNetwork):
            return self._estimate_graph(net, x, d, fd, s0)
        self.check_cost(net.cost)
        cx = clamp(net, x)
        d = check_target(net, d, cx.batch)
        free = free_phase(net, cx, fd, s0=s0)
        atol = self.atol
        if atol is None:
            atol = 1e-12 if net.dtype == np.float64 else 1e-6
        grad = recurrent_backprop(
            net,
            cx,
            d,
            s_star=free.state,
            dyn=fd,
            method=self.solve_method(net.n_state),
            atol=atol,
            max_iter=self.max_iter,
            check_fixed_point=self.check_fixed_point,
        )
        return rule_step(net, cx, d, grad, {"free": free})

    def _estimate_graph(self, net, x, d, fd, s0):
        """A :class:`~eqprop.graph.GraphNetwork` (any feedback): the dense graph adjoint,
        :func:`eqprop.graph.backprop.recurrent_backprop`, as a
        :class:`~eqprop.graph.gradient.GraphGradient`."""
        from eqprop.graph.backprop import recurrent_backprop as graph_rbp
        from eqprop.graph.gradient import _ordered

        if self.method == "iterative":
            raise ValueError(
                "RecurrentBackprop(method='iterative') runs on a layered Network only; a "
                "GraphNetwork takes the dense adjoint (method='auto' or 'dense')"
            )
        cx = _graph_clamped(net, x)
        d = check_graph_batch(net, d, net.n_out, "d", cx.batch)
        free = free_phase(net, cx, fd, s0=s0)
        res = graph_rbp(
            net, cx.x, d, free.state, eps=fd.eps, check_fixed_point=self.check_fixed_point
        )
        return rule_step(net, cx, d, _ordered(net, res.grads), {"free": free})
