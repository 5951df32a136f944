r"""Continual Equilibrium Propagation (C-EP; Ernoult, Grollier, Querlioz, Bengio & Scellier
2020, "Equilibrium Propagation with Continual Weight Updates", arXiv:2005.04168).

In EP the parameters change once, after the nudged phase, by the contrast of its final
state with the free state. C-EP changes them at **every step** of the nudged phase, by a
rule local in space and time: with :math:`s_0` the free state and
:math:`s_{t+1} = \mathrm{step}_\beta(s_t;\ \theta_t)` one step of the nudged dynamics with the
parameters of that moment,

.. math::

    \theta_{t+1} = \theta_t - \eta\, g_t, \qquad
    g_t = \frac{1}{\beta}\Big(\frac{\partial F}{\partial\theta}(s_{t+1})
        - \frac{\partial F}{\partial\theta}(s_t)\Big), \qquad t = 0, \dots, K - 1,

per layer with that layer's learning rate :math:`\eta_l`, weights and biases alike (the
paper's :math:`\Delta\theta = \frac{\eta}{\beta}(\partial_\theta\Phi(s_{t+1}) -
\partial_\theta\Phi(s_t))` in eqprop's sign, :math:`F = -\Phi` for the prototypical kind,
:math:`E` for the Hopfield one; both states at the same nudge, batch mean). The next step
runs with :math:`\theta_{t+1}`. With the parameters held fixed the :math:`g_t` telescope to
EP's one-sided estimate, :math:`\sum_t g_t = \frac1\beta(\partial_\theta F(s_K) -
\partial_\theta F(s_0))`; the paper's Theorem 1 states that, for small learning rates and
small :math:`\beta`, :math:`-g_t` follows BPTT's gradient of the step
:math:`T - t - 1 \to T - t` step by step, as EP's increments do (the GDU property, shown by
``eqprop study gdu --continual-lr``; :mod:`eqprop.gdu`). The paper's MNIST runs use the
prototypical kind, one-sided :math:`\beta > 0` and plain SGD.

**How it fits the rule interface.** The other rules plan phases and *return* a gradient,
which the trainer's optimizer applies once. C-EP cannot: its phase depends on its own
updates. It therefore sets :attr:`applies_updates` and its :meth:`ContinualEP.estimate`
takes the optimizer step as a callable, ``apply(net, gradient)`` (the trainer passes
``SGD.step``): each nudged step is one optimizer step (with momentum or weight decay those
act per step; the paper has neither), and the returned :class:`RuleStep`'s gradient is the
sum of the applied :math:`g_t`, already applied (the trainer does not apply it again).
:func:`continual_phase` is the nudged phase itself, shared with :func:`eqprop.gdu.gdu`.
Fixed-step dynamics only (each update needs a step), squared cost only (the cross-entropy
readout's :math:`\partial C/\partial\theta` would make the telescoped sum differ from EP),
layered :class:`~eqprop.network.Network` chains only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eqprop.network import Gradient, Network, check_target
from eqprop.phases import Clamped, Dynamics, Phase, clamp, free_phase, run_phase
from eqprop.rules.base import (
    LearningRule,
    PhaseSpec,
    RuleStep,
    contrast,
    finite_free_phase,
    rule_step,
)

__all__ = ["ContinualEP", "ContinualPhase", "continual_phase"]


@dataclass(eq=False)
class ContinualPhase:
    """What :func:`continual_phase` produced.

    Attributes
    ----------
    states : list of ndarray
        :math:`s_0, \\dots, s_K`, each (batch, n_state).
    updates : list of Gradient
        :math:`g_0, \\dots, g_{K-1}`, each applied right after its step.
    phase : Phase
        The last step's phase (its state is :math:`s_K`; its solver result the last step's).
    """

    states: list[np.ndarray]
    updates: list[Gradient]
    phase: Phase

    def total(self) -> Gradient:
        """:math:`\\sum_t g_t`, the accumulated update (a new Gradient)."""
        dW = [
            np.sum([g.dW[l] for g in self.updates], axis=0) for l in range(len(self.updates[0].dW))
        ]
        db = [
            np.sum([g.db[l] for g in self.updates], axis=0) for l in range(len(self.updates[0].db))
        ]
        return Gradient(dW, db)


def _check(net: object, dyn: Dynamics) -> None:
    if not isinstance(net, Network):
        raise ValueError(
            f"continual EP runs on a layered eqprop.network.Network, got {type(net).__name__}"
        )
    if net.cost != "squared":
        raise ValueError(
            f"continual EP needs cost='squared' (with a cost={net.cost!r} readout the "
            "per-step updates do not sum to EP's estimate); use --cost squared"
        )
    if not isinstance(dyn, Dynamics) or not dyn.is_fixed_steps:
        method = getattr(dyn, "method_name", getattr(dyn, "method", dyn))
        raise ValueError(
            "continual EP updates the parameters after every step of the nudged phase, so it "
            f"needs fixed-step dynamics (method 'fixed', 'fused' or 'picard' with fixed "
            f"steps), got method {method!r}"
        )


def continual_phase(
    net: Network,
    x,
    d,
    dyn: Dynamics,
    beta: float,
    s0,
    steps: int,
    apply: Callable[[Network, Gradient], None],
) -> ContinualPhase:
    """The nudged phase of C-EP: ``steps`` single steps from ``s0``, each followed by
    ``apply(net, g_t)`` (module docstring), which must change ``net``'s parameters in place.

    Parameters
    ----------
    net : Network
        Squared cost; changed in place by ``apply``.
    x : ndarray (batch, sizes[0]) or Clamped
    d : ndarray (batch, n_out)
    dyn : Dynamics
        Fixed-step dynamics of the nudged phase (``eps``, ``damping``, ``nudge``).
    beta : float
        Nudging strength, finite and nonzero.
    s0 : ndarray (batch, n_state)
        Start (the free state).
    steps : int
        ``K >= 1``.
    apply : callable
        ``apply(net, gradient)``, e.g. ``SGD(lrs).step``.
    """
    _check(net, dyn)
    beta = float(beta)
    if not np.isfinite(beta) or beta == 0.0:
        raise ValueError(f"continual EP needs a finite beta != 0, got {beta}")
    if int(steps) < 1:
        raise ValueError(f"continual EP needs at least one nudged step, got {steps}")
    if not callable(apply):
        raise ValueError("continual EP needs apply(net, gradient), e.g. SGD(lrs).step")
    cx = clamp(net, x)
    d = check_target(net, d, cx.batch)
    s = np.ascontiguousarray(s0, dtype=net.dtype)
    states, updates = [s], []
    phase: Phase | None = None
    for _ in range(int(steps)):
        cx = clamp(net, cx.x)  # the input drive x W_1 + b_1 of the current parameters
        phase = run_phase(net, cx, dyn, beta=beta, d=d, s0=s, steps=1)
        g = contrast(net, cx, d, np.stack([s, phase.state]), [beta, beta], [-1 / beta, 1 / beta])
        assert isinstance(g, Gradient)
        apply(net, g)
        s = phase.state
        states.append(s)
        updates.append(g)
    assert phase is not None
    return ContinualPhase(states, updates, phase)


class ContinualEP(LearningRule):
    """Continual EP (Ernoult et al. 2020): the parameters change at every nudged step.

    See the module docstring for the update and for how the rule applies it.

    Parameters
    ----------
    beta : float
        Nudging strength, finite and nonzero (the paper: one-sided, > 0). Phase name
        ``"nudged+"`` (``"nudged-"`` for a negative beta).
    steps : {"K", "T"}
        Number of nudged steps (and updates) in fixed-steps mode: ``dyn.K`` (default).

    Examples
    --------
    >>> from eqprop.network import init_network
    >>> from eqprop.optim import SGD
    >>> net = init_network((4, 3, 2), dtype="float64", seed=0)
    >>> x, d = np.full((2, 4), 0.5), np.eye(2)
    >>> opt = SGD([0.01, 0.005])
    >>> step = ContinualEP(0.2).estimate(net, x, d, Dynamics(T=20, K=5), apply=opt.step)
    >>> opt.n_steps  # one optimizer step per nudged step
    5
    """

    name = "continual"
    applies_updates = True

    def __init__(self, beta: float = 1.0, steps: str = "K"):
        beta = float(beta)
        if not np.isfinite(beta) or beta == 0.0:
            raise ValueError(f"ContinualEP needs a finite beta != 0, got {beta}")
        self.beta = beta
        self.spec = PhaseSpec("nudged+" if beta > 0 else "nudged-", beta, steps=steps)

    def __repr__(self) -> str:
        return f"ContinualEP(beta={self.beta}, steps={self.spec.steps!r})"

    def check_cost(self, cost: str) -> None:
        if cost != "squared":
            raise ValueError(
                f"rule 'continual' needs cost='squared' (with a cost={cost!r} readout the "
                "per-step updates do not sum to EP's estimate); use --cost squared"
            )

    def check_config(self, config) -> None:
        """Fixed-step dynamics (``method`` ``"fixed"`` or ``"fused"``) on the layered chain."""
        method = config.dynamics.phases.method
        if method not in ("fixed", "fused"):
            raise ValueError(
                "rule 'continual' updates the parameters after every nudged step, so it needs "
                f"fixed steps: method 'fixed' or 'fused' (--method fixed), got {method!r}"
            )
        if config.uses_graph:
            raise ValueError(
                "rule 'continual' runs on the layered chain; drop the network options "
                "(--output-activation, --feedback, --feedback-scale, --skip)"
            )

    def plan(self, rng):
        return (self.spec,)

    def combine(self, net, cx, d, phases):
        raise NotImplementedError(
            "ContinualEP updates the parameters during its nudged phase; call estimate(..., "
            "apply=optimizer.step), not combine"
        )

    def estimate(
        self,
        net,
        x,
        d,
        dyn: Dynamics,
        rng: np.random.Generator | None = None,
        s0=None,
        free_dyn: Dynamics | None = None,
        *,
        apply: Callable[[Network, Gradient], None] | None = None,
    ) -> RuleStep:
        """Free phase, then :func:`continual_phase` from its state (``dyn.K`` steps, each
        applied by ``apply``). Same parameters as :meth:`LearningRule.estimate`, plus
        ``apply(net, gradient)``, required. The returned gradient is the sum of the applied
        updates; ``phases["free"]`` holds the free phase, ``phases["nudged+"]`` the last
        nudged step (its state the final one). The prediction and cost are those of the
        free state, before the updates."""
        if apply is None:
            raise ValueError(
                "ContinualEP updates the parameters at every nudged step: give "
                "apply=optimizer.step (e.g. eqprop.optim.SGD(lrs).step)"
            )
        _check(net, dyn)
        cx: Clamped = clamp(net, x)
        d = check_target(net, d, cx.batch)
        free = finite_free_phase(free_phase(net, cx, dyn if free_dyn is None else free_dyn, s0=s0))
        steps = dyn.K if self.spec.steps == "K" else dyn.T
        run = continual_phase(net, cx.x, d, dyn, self.beta, free.state, steps, apply)
        phases = {"free": free, self.spec.name: run.phase}
        return rule_step(net, cx, d, run.total(), phases)
