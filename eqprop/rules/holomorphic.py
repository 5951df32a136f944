"""Holomorphic EP as a learning rule (Laborieux & Zenke 2022), through ``solvers``.

The estimator of :mod:`eqprop.graph.holomorphic` (its docstring has the derivation and
the conventions) with the phases relaxed by :mod:`solvers` on the Numba graph map in
``complex128`` (:mod:`eqprop.graph.kernels`), under the caller's
:class:`~eqprop.phases.Dynamics` (method, damping, tolerances or fixed steps):

.. math:: \\widehat{\\nabla}_N = \\frac1N\\sum_{k=0}^{N-1}
          \\frac{\\partial_\\theta F(s^*_{\\beta_k}, \\beta_k) - \\partial_\\theta F(s^*_0, 0)}
          {\\beta_k}, \\qquad \\beta_k = |\\beta|\\,e^{2\\pi i k/N},

real part kept (an estimate of :math:`\\partial\\mathcal L/\\partial\\theta`, batch mean;
SGD does ``p -= lr * grad[name]``). ``N = 2`` is the symmetric (centered) estimate of
Laborieux et al. 2021.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import solvers
from eqprop.graph import holomorphic as H
from eqprop.graph import kernels as GK
from eqprop.graph import reference as R
from eqprop.graph.gradient import GraphGradient, _ordered
from eqprop.graph.model import GraphNetwork
from eqprop.phases import Dynamics, Phase, _solver_method, check_graph_batch, clamp, free_phase
from eqprop.rules.base import LearningRule, RuleStep, check_choice

__all__ = ["HolomorphicEP"]


class HolomorphicEP(LearningRule):
    """Holomorphic EP: ``points`` nudged phases on the circle of radius ``beta``.

    Parameters
    ----------
    beta : float
        Radius :math:`|\\beta| > 0` of the circle of nudges.
    points : int
        :math:`N \\ge 2` phases, at :math:`\\beta_k = |\\beta| e^{2\\pi i k/N}`.
    start : {"previous", "free"}
        Each phase starts from the previous point's final state (the paper's oscillating
        nudge; the first from the free state) or from the free state.

    Notes
    -----
    Runs on a :class:`~eqprop.graph.GraphNetwork` whose couplings are tied, whose
    activations are holomorphic (sigmoid, shifted sigmoid, tanh, identity) and which has
    no boxes (:func:`eqprop.graph.holomorphic.check_holomorphic`: a hard sigmoid is
    refused). The free phase runs in the network's real dtype on its usual path; the
    nudged phases on a ``complex128`` copy, through the general graph kernels, with the
    same solver method (a fixed-steps ``dyn`` gives each phase ``dyn.K`` steps).

    Examples
    --------
    >>> rule = HolomorphicEP(beta=0.5, points=4)
    >>> [round(p.beta.imag, 3) for p in rule.plan(None)]
    [0.0, 0.5, 0.0, -0.5]
    """

    name = "holomorphic"

    def __init__(self, beta: float = 0.5, points: int = 4, start: str = "previous"):
        self.phases_plan = H.plan(points, beta, check_choice("start", start, H.START_MODES))
        self.beta = float(beta)
        self.points = int(points)
        self.start = start

    def __repr__(self) -> str:
        return f"HolomorphicEP(beta={self.beta}, points={self.points}, start={self.start!r})"

    def plan(self, rng: np.random.Generator | None) -> tuple[H.CirclePhase, ...]:  # type: ignore[override]
        """The ``N`` phases (:class:`eqprop.graph.holomorphic.CirclePhase`), in order."""
        return self.phases_plan

    def combine(self, net, cx, d, phases: dict[str, Phase]) -> GraphGradient:  # type: ignore[override]
        """The first Fourier coefficient (module docstring), real part, by name.

        ``phases`` holds ``"free"`` and ``"nudged0"`` .. ``"nudged{N-1}"`` with states on
        the complex copy ``cx.graph`` (as :meth:`estimate` builds them).
        """
        cnet = cx.graph
        x = cx.x
        g0 = R.parameter_gradient(cnet, x, phases["free"].state, d, 0.0)
        grads = [
            R.parameter_gradient(cnet, x, phases[p.name].state, d, p.beta) for p in self.phases_plan
        ]
        coef = H.combine(self.phases_plan, grads, g0)
        return _ordered(net, {k: v.real for k, v in coef.items()})

    def estimate(  # type: ignore[override]
        self,
        net: GraphNetwork,
        x,
        d,
        dyn: Dynamics,
        rng: np.random.Generator | None = None,
        s0=None,
        free_dyn: Dynamics | None = None,
    ) -> RuleStep:
        """Free phase (real), the ``N`` complex phases, :meth:`combine`.

        As :meth:`eqprop.rules.base.LearningRule.estimate`; ``RuleStep.phases`` holds the
        free phase (real state) and the nudged phases (complex states, ``beta`` the
        complex :math:`\\beta_k`). ValueError for a network that is not holomorphic or a
        :class:`~eqprop.network.Network` (convert it with
        :func:`eqprop.graph.from_network`).
        """
        if not isinstance(net, GraphNetwork):
            raise ValueError(
                "holomorphic EP runs on a GraphNetwork (complex states through the graph "
                "kernels); convert the network with eqprop.graph.from_network"
            )
        cnet = H.as_complex(net)  # checks: tied, holomorphic activations, no boxes
        cx = clamp(net, x)
        d = check_graph_batch(net, d, net.n_out, "d", cx.batch)
        free = free_phase(net, cx, dyn if free_dyn is None else free_dyn, s0=s0)
        xc = np.ascontiguousarray(cx.x, dtype=cnet.dtype)
        drive = GK.input_drive(cnet, xc)
        dc = np.ascontiguousarray(d, dtype=cnet.dtype)
        s_free = np.ascontiguousarray(free.state, dtype=cnet.dtype)
        method, is_fp = _solver_method(cnet, dyn)
        fixed = dyn.K if dyn.is_fixed_steps else None
        common: dict[str, Any] = dict(
            atol=dyn.atol,
            rtol=dyn.rtol,
            max_iter=max(dyn.max_iter, dyn.K) if fixed else dyn.max_iter,
            fixed_steps=fixed,
            raise_on_failure=dyn.raise_on_failure,
        )
        phases: dict[str, Phase] = {"free": Phase(s_free, free.result, 0.0, False)}
        prev = s_free
        for ph in self.phases_plan:
            start = s_free if ph.start == "free" else prev
            args = GK.make_args(
                cnet, xc, beta=ph.beta, d=dc, eps=dyn.eps, nudge=dyn.nudge, drive=drive
            )
            if is_fp:
                res = solvers.solve_fixed_point(
                    GK.fixed_point_map, start, args, method=method, **common
                )
            else:
                res = solvers.solve_steady_state(
                    GK.vector_field,
                    start,
                    args,
                    method=method,  # type: ignore[arg-type]
                    **common,
                )
            prev = np.ascontiguousarray(res.x)
            phases[ph.name] = Phase(prev, res, ph.beta, False)  # type: ignore[arg-type]
        ccx = type(cx)(xc, drive, np.empty(0, dtype=cnet.dtype), graph=cnet)
        grad = self.combine(net, ccx, dc, phases)
        phases["free"] = free
        cost = R.cost(net, cx.x, free.state, d)
        pred = R.output(net, cx.x, free.state)
        return RuleStep(grad, free, phases, pred, float(np.mean(cost)))
