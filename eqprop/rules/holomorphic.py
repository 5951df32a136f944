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
Laborieux et al. 2021. ``generalized=True`` is the estimator of Laborieux & Zenke
(2024) for networks without weight symmetry (free, random or scaled feedback):
:func:`eqprop.graph.holomorphic.generalized_gradient` of the Fourier coefficient of the
activities.

Real part: the parameters stay real. For a real network the points come in conjugate
pairs :math:`\\beta_{N-k} = \\bar\\beta_k`; phases started from the (real) free state
reach conjugate states, so the imaginary part of the estimate is round-off. Phases started
from the previous point (``start="previous"``) with a fixed step budget end at states
that are not exact conjugates, and the imaginary part measures that truncation: the rule
keeps the relative size :math:`\\|\\mathrm{Im}\\|/\\|\\mathrm{Re}\\|` of its last estimate
in :attr:`HolomorphicEP.last_imaginary` (and raises when it exceeds ``imag_tol``, when
given).
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
from eqprop.rules.base import LearningRule, RuleStep, check_choice, finite_free_phase

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
    generalized : bool
        False (default): the Fourier coefficient of :math:`\\partial F/\\partial\\theta`
        (form ``"energy"``, tied networks); True: the generalized estimator of Laborieux &
        Zenke (2024) (form ``"generalized"``, any feedback; :mod:`eqprop.graph.holomorphic`).
    imag_tol : float or None
        Raise ValueError when :math:`\\|\\mathrm{Im}\\|/\\|\\mathrm{Re}\\|` of an estimate
        exceeds it (None, default: never; the value is in :attr:`last_imaginary`).

    Attributes
    ----------
    last_imaginary : float
        :math:`\\|\\mathrm{Im}\\,\\widehat\\nabla\\|/\\|\\mathrm{Re}\\,\\widehat\\nabla\\|` of the
        last estimate, all parameters together (NaN before the first).

    Notes
    -----
    Runs on a :class:`~eqprop.graph.GraphNetwork` whose couplings are tied (any feedback
    with ``generalized=True``, dense couplings), whose activations are holomorphic
    (sigmoid, shifted sigmoid, tanh, identity) and which has no boxes
    (:func:`eqprop.graph.holomorphic.check_holomorphic`: a hard sigmoid is refused). The
    free phase runs in the network's real dtype on its usual path; the nudged phases on a
    ``complex128`` copy, through the general graph kernels, with the same solver method
    (a fixed-steps ``dyn`` gives each phase ``dyn.K`` steps).

    Examples
    --------
    >>> rule = HolomorphicEP(beta=0.5, points=4)
    >>> [round(p.beta.imag, 3) for p in rule.plan(None)]
    [0.0, 0.5, 0.0, -0.5]
    """

    name = "holomorphic"

    def __init__(
        self,
        beta: float = 0.5,
        points: int = 4,
        start: str = "previous",
        generalized: bool = False,
        imag_tol: float | None = None,
    ):
        self.phases_plan = H.plan(points, beta, check_choice("start", start, H.START_MODES))
        self.beta = float(beta)
        self.points = int(points)
        self.start = start
        if not isinstance(generalized, bool | np.bool_):
            raise ValueError(f"generalized must be True or False, got {generalized!r}")
        self.generalized = bool(generalized)
        #: the estimator's form in :mod:`eqprop.graph.holomorphic` ("energy"/"generalized")
        self.form = "generalized" if generalized else "energy"
        if imag_tol is not None and not (np.isfinite(imag_tol) and imag_tol > 0):
            raise ValueError(f"imag_tol must be None or a finite number > 0, got {imag_tol!r}")
        self.imag_tol = imag_tol
        self.last_imaginary = float("nan")

    def __repr__(self) -> str:
        return (
            f"HolomorphicEP(beta={self.beta}, points={self.points}, start={self.start!r}, "
            f"generalized={self.generalized})"
        )

    def check_config(self, config: Any) -> None:
        """Holomorphic EP needs holomorphic activations on every state layer and, unless
        ``generalized``, tied feedback; one line naming the layer or option to change."""
        from eqprop.graph.build import chain_layer_names
        from eqprop.graph.model import HOLOMORPHIC_ACTIVATIONS

        net = config.network
        names = chain_layer_names(len(config.sizes))
        acts = [(n, net.activation) for n in names[1:-1]]
        if net.cost == "squared":  # else the last layer is a readout, outside the state
            acts.append((names[-1], net.output_activation or net.activation))
        for layer, act in acts:
            if act not in HOLOMORPHIC_ACTIVATIONS:
                flag = "--output-activation" if act == net.output_activation else "--activation"
                raise ValueError(
                    f"rule 'holomorphic' runs complex states through the activations, but "
                    f"layer {layer!r} has activation {act!r}, which is not holomorphic; use "
                    f"{flag} sigmoid (or tanh, shifted-sigmoid)"
                )
        if net.is_conv:
            from eqprop.graph.build import parse_conv_architecture

            arch = parse_conv_architecture(net.architecture)
            for i, cv in enumerate(arch.convs):
                if cv.pool == "max":
                    raise ValueError(
                        f"rule 'holomorphic' runs complex states, but layer {names[i + 1]!r} "
                        "is max-pooled, whose argmax is not holomorphic; use average pooling "
                        f"(ap{cv.pool_size} instead of p{cv.pool_size} in --sizes)"
                    )
        if net.feedback != "tied" and not self.generalized:
            raise ValueError(
                f"rule 'holomorphic' differentiates an energy, which feedback "
                f"{net.feedback!r} does not have; use --feedback tied or --generalized on "
                "(the estimator of Laborieux & Zenke 2024)"
            )

    def plan(self, rng: np.random.Generator | None) -> tuple[H.CirclePhase, ...]:  # type: ignore[override]
        """The ``N`` phases (:class:`eqprop.graph.holomorphic.CirclePhase`), in order."""
        return self.phases_plan

    def combine(self, net, cx, d, phases: dict[str, Phase]) -> GraphGradient:  # type: ignore[override]
        """The first Fourier coefficient (module docstring), real part, by name.

        ``phases`` holds ``"free"`` and ``"nudged0"`` .. ``"nudged{N-1}"`` with states on
        the complex copy ``cx.graph`` (as :meth:`estimate` builds them).
        """
        states = [phases[p.name].state for p in self.phases_plan]
        coef = H.estimate_from_states(
            cx.graph, cx.x, d, self.phases_plan, phases["free"].state, states, self.form
        )
        re = np.sqrt(sum(float(np.sum(v.real**2)) for v in coef.values()))
        im = np.sqrt(sum(float(np.sum(v.imag**2)) for v in coef.values()))
        self.last_imaginary = im / re if re > 0 else (0.0 if im == 0 else float("inf"))
        if self.imag_tol is not None and not self.last_imaginary <= self.imag_tol:
            raise ValueError(
                f"holomorphic EP: the estimate's imaginary part is {self.last_imaginary:.3g} "
                f"of its real part (> imag_tol={self.imag_tol:g}); the conjugate phases did "
                "not reach conjugate states: more steps (K), a tolerance-based method, or "
                "start='free'"
            )
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
        cnet = H.as_complex(net, form=self.form)  # holomorphic activations, no boxes, tied
        cx = clamp(net, x)
        d = check_graph_batch(net, d, net.n_out, "d", cx.batch)
        free = finite_free_phase(free_phase(net, cx, dyn if free_dyn is None else free_dyn, s0=s0))
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
