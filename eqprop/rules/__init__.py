"""Learning rules (one module per rule): ask for phases, turn their states into a :class:`Gradient`.

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

Rules that clamp the output (the output layer must be part of the state, ``cost="squared"``):

* contrastive Hebbian learning (Movellan 1991), :class:`ContrastiveHebbian`, and with
  gamma-scaled feedback on a graph chain (Xie & Seung 2003), :class:`ScaledFeedbackCHL`
  (``eqprop train --rule chl-scaled --feedback scaled --feedback-scale GAMMA``);
* GeneRec (O'Reilly 1996) in four forms, :class:`GeneRec`;
* coupled learning (Stern et al. 2021) in three variants, :class:`CoupledLearning`.

The backprop baselines, on the same networks, free phase and optimizer (they wrap
:mod:`eqprop.gradients`, nothing else):

* recurrent backprop at the free state, :class:`RecurrentBackprop` (``"rbp"``);
* backpropagation through the ``T`` free steps, :class:`BackpropThroughTime` (``"bptt"``).

:func:`make_rule` builds any of them by name (``RULES``); it is what
:class:`eqprop.train.Trainer` and ``eqprop train --rule`` use. See ``docs/rules.rst``.

Modules: :mod:`eqprop.rules.base` (the interface), :mod:`eqprop.rules.ep`,
:mod:`eqprop.rules.chl`, :mod:`eqprop.rules.generec`, :mod:`eqprop.rules.coupled`,
:mod:`eqprop.rules.rbp`, :mod:`eqprop.rules.bptt`,
:mod:`eqprop.rules.holomorphic` (holomorphic EP, graph networks; not in ``RULES`` yet),
:mod:`eqprop.rules.vfep` (vector-field EP, free-feedback graph networks, ``"vf-ep"``) and
:mod:`eqprop.rules.homeostasis` (the Jacobian homeostasis of Laborieux & Zenke 2024, a
penalty :class:`Homeostatic` adds to ``"ep"`` or ``"vf-ep"`` on untied feedback);
everything is importable from :mod:`eqprop.rules`.
"""

from __future__ import annotations

from eqprop.network import Gradient
from eqprop.rules.base import LearningRule, PhaseSpec, RuleStep, coupled_target
from eqprop.rules.base import check_choice as _check_choice
from eqprop.rules.bptt import BackpropThroughTime
from eqprop.rules.chl import ContrastiveHebbian
from eqprop.rules.chl_scaled import ScaledFeedbackCHL
from eqprop.rules.coupled import COUPLED_VARIANTS, CoupledLearning
from eqprop.rules.ep import ESTIMATORS, EquilibriumPropagation
from eqprop.rules.generec import GENEREC_FORMS, GeneRec, generec_gradient
from eqprop.rules.holomorphic import HolomorphicEP
from eqprop.rules.homeostasis import Homeostatic, check_strength
from eqprop.rules.rbp import RBP_METHODS, RecurrentBackprop
from eqprop.rules.vfep import VectorFieldEP

__all__ = [
    "COUPLED_VARIANTS",
    "ESTIMATORS",
    "GENEREC_FORMS",
    "HOMEOSTASIS_RULES",
    "RBP_METHODS",
    "RULES",
    "BackpropThroughTime",
    "ContrastiveHebbian",
    "CoupledLearning",
    "EquilibriumPropagation",
    "GeneRec",
    "Gradient",
    "HolomorphicEP",
    "Homeostatic",
    "LearningRule",
    "PhaseSpec",
    "RecurrentBackprop",
    "RuleStep",
    "ScaledFeedbackCHL",
    "VectorFieldEP",
    "coupled_target",
    "generec_gradient",
    "make_rule",
]

#: Rule names of :func:`make_rule` (and ``eqprop train --rule``).
RULES = ("ep", "chl", "chl-scaled", "generec", "coupled", "rbp", "bptt", "vf-ep")

#: Rules that take ``homeostasis`` (a penalty on the network's asymmetry: untied feedback).
HOMEOSTASIS_RULES = ("ep", "vf-ep")


def make_rule(
    name: str,
    *,
    beta: float = 1.0,
    estimator: str = "one-sided",
    generec_form: str = "basic",
    eta: float = 0.5,
    variant: str = "centered",
    homeostasis: float = 0.0,
) -> LearningRule:
    """A rule by name (``RULES``) with its parameters; the others are ignored.

    ``"ep"``: :class:`EquilibriumPropagation` (``beta``, ``estimator``); ``"chl"``:
    :class:`ContrastiveHebbian`; ``"chl-scaled"``: :class:`ScaledFeedbackCHL` (its gamma
    is the network's feedback scale); ``"generec"``: :class:`GeneRec` (``generec_form``);
    ``"coupled"``: :class:`CoupledLearning` (``eta``, ``variant``); ``"rbp"``:
    :class:`RecurrentBackprop`; ``"bptt"``: :class:`BackpropThroughTime` (through all
    ``T`` free steps); ``"vf-ep"``: :class:`VectorFieldEP` (``beta``; W and a free B
    both get local contrastive updates, Scellier et al. 2018).

    ``homeostasis`` > 0 (``"ep"`` and ``"vf-ep"`` only) wraps the rule in
    :class:`Homeostatic`: its update plus ``homeostasis`` times the gradient of the
    Jacobian-asymmetry penalty at the free state (Laborieux & Zenke 2024); the network
    must then have untied feedback (checked when the rule runs).

    Raises
    ------
    ValueError
        Unknown name, or a parameter outside its range (the rule's own message), a
        negative homeostasis strength, or homeostasis for a rule that does not take it.
    """
    _check_choice("rule", name, RULES)
    strength = check_strength(homeostasis)
    if strength > 0:
        if name not in HOMEOSTASIS_RULES:
            raise ValueError(
                f"homeostasis applies to rule {' or '.join(HOMEOSTASIS_RULES)} (on untied "
                f"feedback), not to rule {name!r}; drop homeostasis or change the rule"
            )
        inner = make_rule(name, beta=beta, estimator=estimator)
        return Homeostatic(inner, strength)
    if name == "vf-ep":
        return VectorFieldEP(beta=beta)
    if name == "ep":
        return EquilibriumPropagation(beta=beta, estimator=estimator)
    if name == "chl":
        return ContrastiveHebbian()
    if name == "chl-scaled":
        return ScaledFeedbackCHL()
    if name == "generec":
        return GeneRec(form=generec_form)
    if name == "rbp":
        return RecurrentBackprop()
    if name == "bptt":
        return BackpropThroughTime()
    return CoupledLearning(eta=eta, variant=variant)
