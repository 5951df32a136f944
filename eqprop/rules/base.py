"""The rule interface: :class:`PhaseSpec`, :class:`RuleStep`, :class:`LearningRule`.

See :mod:`eqprop.rules` for the family and ``docs/rules.rst``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eqprop.graph.gradient import GraphGradient, from_chain_gradient
from eqprop.graph.gradient import contrast as graph_contrast
from eqprop.graph.model import GraphNetwork
from eqprop.network import Gradient, Network, _contrast, check_target
from eqprop.phases import (
    Clamped,
    Dynamics,
    Phase,
    _graph_clamped,
    check_graph_batch,
    clamp,
    free_phase,
    network_cost,
    network_output,
    run_phase,
)

__all__ = [
    "LearningRule",
    "PhaseSpec",
    "RuleStep",
    "check_choice",
    "contrast",
    "coupled_target",
    "output_columns",
    "rule_step",
]


def contrast(
    net: Network | GraphNetwork,
    cx: Clamped,
    d: np.ndarray,
    S: np.ndarray,
    betas,
    coeffs,
) -> Gradient | GraphGradient:
    r""":math:`\sum_k c_k\,\partial F/\partial\theta(S_k, \beta_k)` (batch mean), the
    combine step of contrastive rules, on whichever path ``cx`` holds.

    ``S`` is (K, batch, n_state). A :class:`~eqprop.network.Network` gets a
    :class:`Gradient` (:func:`eqprop.network.contrast_gradient`'s kernel); a
    :class:`~eqprop.graph.GraphNetwork` a :class:`~eqprop.graph.gradient.GraphGradient`
    by parameter name, from the chain kernel on the fast path (``cx.chain``), the conv
    fast map's ops (``cx.fast``: :meth:`eqprop.graph.conv_kernels.FastMap.contrast`) or
    :func:`eqprop.graph.gradient.contrast` on the general path.
    """
    if isinstance(net, GraphNetwork):
        if cx.chain is not None:
            g = _contrast(cx.chain, cx.x, d, S, betas, coeffs, cx.theta)
            return from_chain_gradient(net, g)
        if cx.fast is not None:  # a conv net on the fast map: its ops, not the NumPy reference
            return cx.fast.contrast(list(S), betas, coeffs, d)
        return graph_contrast(net, cx.x, d, list(S), betas, coeffs)
    return _contrast(net, cx.x, d, S, betas, coeffs, cx.theta)


def output_columns(net: Network | GraphNetwork) -> tuple[int, int]:
    """State columns ``[start, stop)`` of the output layer (it must be in the state)."""
    if isinstance(net, GraphNetwork):
        out = net.output_layer
        if out.role != "output":
            raise ValueError(f"layer {out.name!r} is a readout, outside the state")
        return net.offsets[out.name]
    return net.n_state - net.n_out, net.n_state


def _output_box(net: Network | GraphNetwork) -> tuple[float, float] | None:
    if isinstance(net, GraphNetwork):
        return net.output_layer.box
    return net.bounds


class FreePhaseFailed(ValueError):
    """The free phase ended in a non-finite state, so no nudged phase can start from it.

    Raised by :meth:`LearningRule.estimate` before any nudged phase runs (a nudged phase
    would otherwise refuse its NaN start with a message about ``s0``). ``phase`` is the
    failed free :class:`~eqprop.phases.Phase` (its ``result`` says which samples failed
    and how); :class:`eqprop.train.Trainer` turns it into its usual phase-failure error.
    """

    def __init__(self, phase: Phase) -> None:
        bad = int(np.count_nonzero(~np.isfinite(phase.state).all(axis=1)))
        super().__init__(
            f"the free phase ended in a non-finite state on {bad} of {phase.state.shape[0]} "
            "samples (NaN or inf parameters, or unstable dynamics); no nudged phase was run"
        )
        self.phase = phase


def finite_free_phase(free: Phase) -> Phase:
    """``free``, or :class:`FreePhaseFailed` when its state holds NaN or inf: the check
    every rule makes before starting a nudged phase from the free state."""
    if not np.isfinite(free.state).all():
        raise FreePhaseFailed(free)
    return free


@dataclass(frozen=True)
class PhaseSpec:
    """A phase a rule asks for (after the free phase, which every rule gets).

    Attributes
    ----------
    name : str
        Key in :attr:`RuleStep.phases` (``"nudged+"``, ``"nudged-"``, ...).
    beta : float
        Nudging strength.
    start : {"free", "zero", "s0"}
        Initial state: the free phase's final state (default), zeros, or the ``s0``
        given to :meth:`LearningRule.estimate` (zeros when none).
    steps : {"K", "T"}
        Step budget in fixed-steps mode: ``dyn.K`` (default) or ``dyn.T``.
    clamp : bool
        Clamp the output layer instead of nudging it (``beta`` must then be 0; squared
        cost only), to the targets ``d`` or, with ``eta``, to a point between the free
        output and the targets.
    eta : float or None
        Clamp mode of a clamped phase. None (default): the output is clamped to ``d``.
        A number :math:`\\eta`: the output is clamped to
        :func:`coupled_target` :math:`y^0 + \\eta\\,(d - y^0)`, with :math:`y^0` the free
        phase's output, resolved by :meth:`LearningRule.estimate` once the free phase has
        run (coupled learning; a negative ``eta`` clamps away from the targets). Finite
        and nonzero; needs ``clamp=True``.
    """

    name: str
    beta: float
    start: str = "free"
    steps: str = "K"
    clamp: bool = False
    eta: float | None = None

    def __post_init__(self) -> None:
        if self.start not in ("free", "zero", "s0"):
            raise ValueError(f"PhaseSpec.start must be 'free', 'zero' or 's0', got {self.start!r}")
        if self.steps not in ("K", "T"):
            raise ValueError(f"PhaseSpec.steps must be 'K' or 'T', got {self.steps!r}")
        if self.name == "free":
            raise ValueError("the name 'free' is reserved for the free phase")
        if self.clamp and self.beta != 0:
            raise ValueError("a clamped phase (clamp=True) takes beta = 0")
        if self.eta is not None:
            if not self.clamp:
                raise ValueError("PhaseSpec.eta sets a clamp target; it needs clamp=True")
            if not np.isfinite(self.eta) or self.eta == 0:
                raise ValueError(f"PhaseSpec.eta must be finite and nonzero, got {self.eta!r}")


def coupled_target(
    y_free: np.ndarray, d: np.ndarray, eta: float, bounds: tuple[float, float] | None = None
) -> np.ndarray:
    """Clamp target of coupled learning, :math:`y^0 + \\eta\\,(d - y^0)` (Stern et al. 2021).

    Projected onto ``bounds`` (the network's state box, ``net.bounds``: [0, 1] for a
    hardsigmoid Hopfield net) when given: a negative ``eta`` can point outside it, and the
    phase could not hold the output there.

    Parameters
    ----------
    y_free : ndarray (batch, n_out)
        Output at the free state.
    d : ndarray (batch, n_out)
        Targets, same dtype.
    eta : float
        Signed clamping factor (negative: away from the targets).
    bounds : (float, float), optional
        Box of the state.

    Returns
    -------
    ndarray (batch, n_out), C-contiguous, dtype of ``y_free``.
    """
    target = y_free + y_free.dtype.type(eta) * (d - y_free)
    if bounds is not None:
        np.clip(target, bounds[0], bounds[1], out=target)
    return np.ascontiguousarray(target)


@dataclass(eq=False)
class RuleStep:
    """Everything one rule application produced.

    Attributes
    ----------
    gradient : Gradient or GraphGradient
        Estimates of dLoss/dtheta (batch mean); a
        :class:`~eqprop.graph.gradient.GraphGradient` (by parameter name) for a graph
        network.
    free : Phase
        The free phase (its state is the network's prediction; store it for persistent
        particles).
    phases : dict of str to Phase
        All phases by name, ``"free"`` included, in the order they ran.
    prediction : ndarray (batch, n_out)
        Output at the free state (output layer, or softmax probabilities).
    loss : float
        Batch mean of the cost C at the free state.
    """

    gradient: Gradient | GraphGradient
    free: Phase
    phases: dict[str, Phase]
    prediction: np.ndarray
    loss: float


class LearningRule:
    """Base class of the rule family (EP, and later CHL, GeneRec, coupled learning, ...).

    Subclasses implement :meth:`plan` and :meth:`combine`; :meth:`estimate` is shared.
    """

    name = "rule"
    #: Whether the rule clamps the output layer, which must then be part of the state.
    clamps_output = False
    #: Whether the rule applies its own updates during its phases (continual EP): its
    #: ``estimate`` then takes ``apply=optimizer.step`` and the gradient it returns is
    #: already applied (the trainer does not apply it again).
    applies_updates = False

    def check_cost(self, cost: str) -> None:
        """Raise ValueError if the rule cannot run on a network with this ``cost``."""
        if self.clamps_output and cost != "squared":
            raise ValueError(
                f"rule {self.name!r} clamps the output layer, which a cost={cost!r} readout "
                "keeps outside the state; use cost='squared' (--cost squared) or rule 'ep'"
            )

    def check_config(self, config: Any) -> None:
        """Raise ValueError if the rule cannot train with this
        :class:`eqprop.config.TrainConfig` (called by its ``validate``; default: any)."""

    def plan(self, rng: np.random.Generator | None) -> Sequence[PhaseSpec]:
        """Phases needed after the free phase, in the order they run."""
        raise NotImplementedError

    def combine(
        self, net: Network | GraphNetwork, cx: Clamped, d: np.ndarray, phases: dict[str, Phase]
    ):
        """Turn the phases' states into a :class:`Gradient` (a
        :class:`~eqprop.graph.gradient.GraphGradient` for a graph network; use
        :func:`contrast`, which takes the path ``cx`` holds)."""
        raise NotImplementedError

    def estimate(
        self,
        net: Network | GraphNetwork,
        x,
        d,
        dyn: Dynamics,
        rng: np.random.Generator | None = None,
        s0=None,
        free_dyn: Dynamics | None = None,
    ) -> RuleStep:
        """Run the free phase and the planned phases, then combine them.

        Parameters
        ----------
        net : Network or GraphNetwork
            A graph network runs on the chain's fused kernels when it is a dense tied
            chain, on the general graph kernels otherwise (:func:`eqprop.phases.clamp`;
            pass ``x`` already clamped with ``path="general"`` to force the general path).
        x : ndarray (batch, sizes[0]) or Clamped
            Inputs, in the network's dtype (converted otherwise).
        d : ndarray (batch, n_out)
            Targets (one-hot for classification).
        dyn : Dynamics
        rng : numpy.random.Generator, optional
            Needed by rules that draw (random-sign EP).
        s0 : ndarray (batch, n_state), optional
            Initial state of the free phase (persistent particles); default zeros.
        free_dyn : Dynamics, optional
            How to run the free phase when it differs from the other phases (e.g. a
            fast solver to tolerance for the free phase, the papers' ``K`` fixed steps
            for the nudged ones); default ``dyn``.

        Returns
        -------
        RuleStep
        """
        if isinstance(net, GraphNetwork):
            readout = net.output_layer.role == "readout"
            self.check_cost("cross-entropy" if readout else "squared")
            cx = _graph_clamped(net, x)
            d = check_graph_batch(net, d, net.n_out, "d", cx.batch)
        else:
            self.check_cost(net.cost)
            cx = clamp(net, x)
            d = check_target(net, d, cx.batch)
        free = free_phase(net, cx, dyn if free_dyn is None else free_dyn, s0=s0)
        phases: dict[str, Phase] = {"free": finite_free_phase(free)}
        for spec in self.plan(rng):
            if spec.start == "free":
                start = free.state
            elif spec.start == "s0":
                start = s0
            else:
                start = None
            steps = dyn.K if spec.steps == "K" else dyn.T
            target = d
            if spec.eta is not None:
                a, b = output_columns(net)
                target = coupled_target(free.state[:, a:b], d, spec.eta, _output_box(net))
            phases[spec.name] = run_phase(
                net,
                cx,
                dyn,
                beta=spec.beta,
                d=target,
                s0=start,
                steps=steps,
                clamp_output=spec.clamp,
            )
        return rule_step(net, cx, d, self.combine(net, cx, d, phases), phases)


def rule_step(
    net: Network | GraphNetwork,
    cx: Clamped,
    d: np.ndarray,
    grad: Gradient | GraphGradient,
    phases: dict[str, Phase],
) -> RuleStep:
    """The :class:`RuleStep` of a gradient and its phases (``phases["free"]`` is the free
    phase): prediction and batch-mean cost C at the free state."""
    free = phases["free"]
    c = network_cost(net, cx, free.state, d)
    pred = network_output(net, cx, free.state)
    return RuleStep(grad, free, phases, pred, float(np.mean(c)))


def check_choice(what: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else one ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return value
