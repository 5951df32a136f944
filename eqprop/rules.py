"""Learning rules: ask for phases, turn their states into a :class:`Gradient`.

A rule is a small unit with two duties and no dynamics of its own:

1. :meth:`LearningRule.plan` lists the phases it needs after the free phase, as
   :class:`PhaseSpec` (name, nudging strength, starting point, step budget); the phases
   are run by :func:`eqprop.phases.run_phase` on the network's own dynamics and the
   :class:`~eqprop.phases.Dynamics` given by the caller (same solvers, same settings);
2. :meth:`LearningRule.combine` turns the phases' states into estimates of
   :math:`\\partial\\mathcal{L}/\\partial\\theta` (batch mean; SGD does ``W -= lr * dW``),
   usually with :func:`eqprop.network.contrast_gradient`,
   :math:`\\sum_k c_k\\,\\partial F/\\partial\\theta(s_k, \\beta_k)`.

:meth:`LearningRule.estimate` (shared by all rules) clamps the input once, runs the free
phase and the planned phases, and calls :meth:`~LearningRule.combine`. No autodiff.

Equilibrium Propagation (Scellier & Bengio 2017), with
:math:`F = E + \\beta C` (hopfield) or :math:`-\\Phi + \\beta C` (prototypical):

* one-sided: :math:`\\widehat{\\nabla}_\\theta = \\frac{1}{\\beta}
  [\\partial_\\theta F(s^{\\beta},\\beta) - \\partial_\\theta F(s^{0},0)]`,
  bias :math:`O(\\beta)`;
* random-sign: the same with the sign of :math:`\\beta` drawn per minibatch
  (Scellier & Bengio 2017), unbiased at first order on average;
* symmetric: :math:`\\frac{1}{2\\beta}[\\partial_\\theta F(s^{+\\beta},+\\beta) -
  \\partial_\\theta F(s^{-\\beta},-\\beta)]`, bias :math:`O(\\beta^2)`
  (Laborieux et al. 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eqprop import kernels as K
from eqprop.network import Gradient, Network, _contrast, check_target, output
from eqprop.phases import Clamped, Dynamics, Phase, clamp, free_phase, run_phase

__all__ = [
    "ESTIMATORS",
    "ContrastiveHebbian",
    "EquilibriumPropagation",
    "Gradient",
    "LearningRule",
    "PhaseSpec",
    "RuleStep",
]

ESTIMATORS = ("one-sided", "random-sign", "symmetric")


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
        Clamp the output layer to the targets instead of nudging it (``beta`` must then
        be 0; squared cost only).
    """

    name: str
    beta: float
    start: str = "free"
    steps: str = "K"
    clamp: bool = False

    def __post_init__(self) -> None:
        if self.start not in ("free", "zero", "s0"):
            raise ValueError(f"PhaseSpec.start must be 'free', 'zero' or 's0', got {self.start!r}")
        if self.steps not in ("K", "T"):
            raise ValueError(f"PhaseSpec.steps must be 'K' or 'T', got {self.steps!r}")
        if self.name == "free":
            raise ValueError("the name 'free' is reserved for the free phase")
        if self.clamp and self.beta != 0:
            raise ValueError("a clamped phase (clamp=True) takes beta = 0")


@dataclass(eq=False)
class RuleStep:
    """Everything one rule application produced.

    Attributes
    ----------
    gradient : Gradient
        Estimates of dLoss/dtheta (batch mean).
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

    gradient: Gradient
    free: Phase
    phases: dict[str, Phase]
    prediction: np.ndarray
    loss: float


class LearningRule:
    """Base class of the rule family (EP, and later CHL, GeneRec, coupled learning, ...).

    Subclasses implement :meth:`plan` and :meth:`combine`; :meth:`estimate` is shared.
    """

    name = "rule"

    def plan(self, rng: np.random.Generator | None) -> Sequence[PhaseSpec]:
        """Phases needed after the free phase, in the order they run."""
        raise NotImplementedError

    def combine(self, net: Network, cx: Clamped, d: np.ndarray, phases: dict[str, Phase]):
        """Turn the phases' states into a :class:`Gradient`."""
        raise NotImplementedError

    def estimate(
        self,
        net: Network,
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
        net : Network
        x : ndarray (batch, sizes[0])
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
        cx = clamp(net, x)
        d = check_target(net, d, cx.batch)
        free = free_phase(net, cx, dyn if free_dyn is None else free_dyn, s0=s0)
        phases: dict[str, Phase] = {"free": free}
        for spec in self.plan(rng):
            if spec.start == "free":
                start = free.state
            elif spec.start == "s0":
                start = s0
            else:
                start = None
            steps = dyn.K if spec.steps == "K" else dyn.T
            phases[spec.name] = run_phase(
                net, cx, dyn, beta=spec.beta, d=d, s0=start, steps=steps, clamp_output=spec.clamp
            )
        grad = self.combine(net, cx, d, phases)
        lay = net.layout()
        c = K.cost_value(free.state, cx.theta, lay, d, K.make_work(lay, cx.batch, net.dtype))
        return RuleStep(grad, free, phases, output(net, free.state), float(np.mean(c)))


class EquilibriumPropagation(LearningRule):
    """Equilibrium Propagation (Scellier & Bengio 2017) with three estimators.

    Parameters
    ----------
    beta : float
        Nudging strength, nonzero (its magnitude for random-sign and symmetric).
    estimator : {"one-sided", "random-sign", "symmetric"}
        See the module docstring. Phase names: ``"nudged+"`` (at +beta) and/or
        ``"nudged-"`` (at -beta).

    Examples
    --------
    >>> rule = EquilibriumPropagation(beta=0.5, estimator="symmetric")
    >>> step = rule.estimate(net, x, d, Dynamics(T=20, K=4, eps=0.5))  # doctest: +SKIP
    """

    name = "ep"

    def __init__(self, beta: float = 1.0, estimator: str = "one-sided"):
        beta = float(beta)
        if not np.isfinite(beta) or beta == 0.0:
            raise ValueError(f"EquilibriumPropagation needs a finite beta != 0, got {beta}")
        if estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
            )
        self.beta = beta
        self.estimator = estimator

    def __repr__(self) -> str:
        return f"EquilibriumPropagation(beta={self.beta}, estimator={self.estimator!r})"

    def plan(self, rng):
        b = self.beta
        if self.estimator == "symmetric":
            return (PhaseSpec("nudged+", abs(b)), PhaseSpec("nudged-", -abs(b)))
        if self.estimator == "random-sign":
            if rng is None:
                raise ValueError("estimator 'random-sign' needs rng=np.random.Generator")
            b = abs(b) if rng.random() < 0.5 else -abs(b)
        return (PhaseSpec("nudged+" if b > 0 else "nudged-", b),)

    def combine(self, net, cx, d, phases):
        nudged = [p for name, p in phases.items() if name != "free"]
        if self.estimator == "symmetric":
            p, m = phases["nudged+"], phases["nudged-"]
            states = [m.state, p.state]
            betas = [m.beta, p.beta]
            diff = p.beta - m.beta
        else:
            (n,) = nudged
            states = [phases["free"].state, n.state]
            betas = [0.0, n.beta]
            diff = n.beta
        S = np.stack(states)
        return _contrast(net, cx.x, d, S, betas, [-1.0 / diff, 1.0 / diff], cx.theta)


class ContrastiveHebbian(LearningRule):
    """Contrastive Hebbian learning (Movellan 1991): free phase vs output-clamped phase.

    :math:`\\widehat{\\nabla}_\\theta = \\partial_\\theta F(s^{c}) -
    \\partial_\\theta F(s^{0})` (both at :math:`\\beta = 0`), with :math:`s^c` the
    equilibrium with the output clamped to the targets, reached from the free state in
    ``dyn.K`` steps (``dyn.T`` with ``steps="T"``). For the Hopfield kind this is
    :math:`dW_{ij} = -(\\rho_i^c\\rho_j^c - \\rho_i^0\\rho_j^0)`, batch mean.
    Squared cost only (the output must be part of the state). Not a gradient of the loss
    in general; written here as the second member of the rule family.

    Parameters
    ----------
    steps : {"K", "T"}
        Step budget of the clamped phase in fixed-steps mode.
    """

    name = "chl"

    def __init__(self, steps: str = "K"):
        self.spec = PhaseSpec("clamped", 0.0, start="free", steps=steps, clamp=True)

    def __repr__(self) -> str:
        return f"ContrastiveHebbian(steps={self.spec.steps!r})"

    def plan(self, rng):
        return (self.spec,)

    def combine(self, net, cx, d, phases):
        S = np.stack([phases["free"].state, phases["clamped"].state])
        return _contrast(net, cx.x, d, S, [0.0, 0.0], [-1.0, 1.0], cx.theta)
