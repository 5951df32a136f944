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

Continual EP (Ernoult et al. 2020), :class:`ContinualEP` (``"continual"``), updates the
parameters at every step of its nudged phase (:mod:`eqprop.rules.continual`): it applies
the optimizer itself (``applies_updates``).

:func:`make_rule` builds any of them by name (``RULES``); it is what
:class:`eqprop.train.Trainer` and ``eqprop train --rule`` use. See ``docs/rules.rst``.

Modules: :mod:`eqprop.rules.base` (the interface), :mod:`eqprop.rules.ep`,
:mod:`eqprop.rules.chl`, :mod:`eqprop.rules.generec`, :mod:`eqprop.rules.coupled`,
:mod:`eqprop.rules.rbp`, :mod:`eqprop.rules.bptt`,
:mod:`eqprop.rules.holomorphic` (holomorphic EP, graph networks; ``"holomorphic"`` in
``RULES``: the trainer keeps real parameters, a real free phase and real particles, the
nudged phases run on a complex copy), :mod:`eqprop.rules.vfep` (vector-field EP,
free-feedback graph networks, ``"vf-ep"``) and :mod:`eqprop.rules.homeostasis` (the
Jacobian homeostasis of Laborieux & Zenke 2024, the ``homeostasis`` parameter of ``"ep"``
and ``"vf-ep"`` on untied feedback); everything is importable from :mod:`eqprop.rules`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eqprop._cli_options import finite_float, on_off
from eqprop.network import Gradient
from eqprop.rules.base import FreePhaseFailed, LearningRule, PhaseSpec, RuleStep, coupled_target
from eqprop.rules.base import check_choice as _check_choice
from eqprop.rules.bptt import BackpropThroughTime
from eqprop.rules.chl import ContrastiveHebbian
from eqprop.rules.chl_scaled import ScaledFeedbackCHL
from eqprop.rules.continual import ContinualEP
from eqprop.rules.coupled import COUPLED_VARIANTS, CoupledLearning, coupled_limit
from eqprop.rules.ep import ESTIMATORS, EquilibriumPropagation
from eqprop.rules.generec import GENEREC_FORMS, GeneRec, generec_gradient
from eqprop.rules.holomorphic import HolomorphicEP
from eqprop.rules.rbp import RBP_METHODS, RecurrentBackprop
from eqprop.rules.recirculation import RecirculationRule
from eqprop.rules.vfep import VectorFieldEP

__all__ = [
    "COUPLED_VARIANTS",
    "ESTIMATORS",
    "GENEREC_FORMS",
    "RBP_METHODS",
    "RULES",
    "RULE_CLASSES",
    "RULE_OPTIONS",
    "BackpropThroughTime",
    "ContinualEP",
    "ContrastiveHebbian",
    "CoupledLearning",
    "EquilibriumPropagation",
    "FreePhaseFailed",
    "GeneRec",
    "Gradient",
    "HolomorphicEP",
    "LearningRule",
    "PhaseSpec",
    "RecirculationRule",
    "RecurrentBackprop",
    "RuleOption",
    "RuleStep",
    "ScaledFeedbackCHL",
    "VectorFieldEP",
    "coupled_limit",
    "coupled_target",
    "generec_gradient",
    "make_rule",
    "rule_parameters",
]

#: The registry of the trainer's rules: name -> class. A class's keyword arguments are the
#: rule's parameters: :class:`eqprop.config.RuleConfig` stores them by name (JSON) and
#: builds the rule from them. Adding a rule to ``eqprop train``: its class here, and for
#: each parameter that gets a command-line flag one :data:`RULE_OPTIONS` entry
#: (docs/training.rst, "Adding a rule option").
RULE_CLASSES: dict[str, type[LearningRule]] = {
    "ep": EquilibriumPropagation,
    "chl": ContrastiveHebbian,
    "chl-scaled": ScaledFeedbackCHL,
    "generec": GeneRec,
    "coupled": CoupledLearning,
    "rbp": RecurrentBackprop,
    "bptt": BackpropThroughTime,
    "continual": ContinualEP,
    "recirculation": RecirculationRule,
    "holomorphic": HolomorphicEP,
    "vf-ep": VectorFieldEP,
}

#: Rule names of :func:`make_rule` (and ``eqprop train --rule``).
RULES = tuple(RULE_CLASSES)


@dataclass(frozen=True)
class RuleOption:
    """A rule parameter with a flat name (``eqprop train --NAME``, ``TrainConfig.replace(NAME=)``).

    Attributes
    ----------
    param : str
        The keyword argument of the rule classes that take it (:data:`RULE_CLASSES`).
    type : callable
        Parses the command-line text (an argparse ``type``).
    help : str
        The option's help line (its default is appended from the default configuration).
    """

    param: str
    type: Callable[[str], Any]
    help: str


#: Flat name (command-line ``dest``) -> :class:`RuleOption`, in the order of ``--help``.
#: A flat name applies to every rule whose class takes ``param``.
RULE_OPTIONS: dict[str, RuleOption] = {
    "beta": RuleOption(
        "beta",
        float,
        "nudging strength of --rule ep, continual or vf-ep (nonzero); --rule holomorphic: the "
        "radius |beta| > 0",
    ),
    "estimator": RuleOption("estimator", str, "--rule ep: one-sided, random-sign or symmetric"),
    "generec_form": RuleOption(
        "form", str, "--rule generec: basic, symmetric, midpoint or symmetric-midpoint"
    ),
    "eta": RuleOption(
        "eta",
        finite_float,
        "--rule coupled: clamp the output to y_free + eta (d - y_free), eta in (0, 1]",
    ),
    "coupled_variant": RuleOption(
        "variant", str, "--rule coupled: positive, negative or centered (both, contrasted)"
    ),
    "regression": RuleOption(
        "regression",
        finite_float,
        "--rule recirculation: regression lambda in [0, 1) of the visible group's second pass "
        "(Hinton & McClelland's 0.75)",
    ),
    "hidden_regression": RuleOption(
        "hidden_regression",
        finite_float,
        "--rule recirculation: the hidden groups' regression (None: --regression's)",
    ),
    "visible_activation": RuleOption(
        "visible_activation", str, "--rule recirculation: sigmoid or linear visible units"
    ),
    "hidden_activation": RuleOption(
        "hidden_activation", str, "--rule recirculation: sigmoid or linear hidden units"
    ),
    "points": RuleOption(
        "points",
        int,
        "--rule holomorphic: N >= 2 nudged phases at |beta| exp(2 pi i k / N) (N = 2 is the "
        "centered estimate)",
    ),
    "holomorphic_start": RuleOption(
        "start",
        str,
        "--rule holomorphic: each phase starts from the previous point's state (previous, "
        "the oscillating nudge) or from the free state (free)",
    ),
    "generalized": RuleOption(
        "generalized",
        on_off,
        "--rule holomorphic: on = the generalized estimator of Laborieux & Zenke 2024, for "
        "untied --feedback (off: the energy form, tied feedback)",
    ),
    "homeostasis": RuleOption(
        "homeostasis",
        finite_float,
        "--rule ep|vf-ep on untied feedback: strength >= 0 of the Jacobian homeostasis "
        "penalty (Laborieux & Zenke 2024; 0: off)",
    ),
}


def rule_parameters(name: str) -> dict[str, Any]:
    """The parameters of rule ``name`` (its class's keyword arguments) with their defaults.

    Raises
    ------
    ValueError
        Unknown rule (the message lists :data:`RULES`).
    """
    cls = RULE_CLASSES[_check_choice("rule", name, tuple(RULE_CLASSES))]
    params = inspect.signature(cls.__init__).parameters
    return {
        p.name: p.default
        for p in list(params.values())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def make_rule(name: str, **params: Any) -> LearningRule:
    """A rule by name (:data:`RULES`) from its parameters.

    ``params`` are the class's keyword arguments, or flat names of :data:`RULE_OPTIONS`
    (``generec_form`` for GeneRec's ``form``, ``variant`` or ``coupled_variant`` for
    coupled learning's); names another rule takes are ignored (one call can carry the
    parameters of several rules), others raise. ``"ep"``: :class:`EquilibriumPropagation`
    (``beta``, ``estimator``); ``"chl"``: :class:`ContrastiveHebbian`; ``"chl-scaled"``:
    :class:`ScaledFeedbackCHL` (its gamma is the network's feedback scale);
    ``"generec"``: :class:`GeneRec` (``form``); ``"coupled"``: :class:`CoupledLearning`
    (``eta``, ``variant``); ``"rbp"``: :class:`RecurrentBackprop`; ``"bptt"``:
    :class:`BackpropThroughTime` (through all ``T`` free steps); ``"continual"``:
    :class:`ContinualEP` (``beta``; it applies its own updates during the nudged phase,
    ``estimate(..., apply=optimizer.step)``); ``"recirculation"``:
    :class:`RecirculationRule` (the parameters of an unsupervised loop trained by
    :class:`eqprop.recirculation.LoopTrainer`, not by phases); ``"holomorphic"``:
    :class:`HolomorphicEP` (``beta`` its radius :math:`|\\beta|`, ``points``, ``start``,
    ``generalized``; graph networks with holomorphic activations). ``"vf-ep"``:
    :class:`VectorFieldEP` (``beta``; ``W`` and a free ``B`` both get local contrastive
    updates, Scellier et al. 2018). ``"ep"`` and ``"vf-ep"`` take ``homeostasis``
    (:mod:`eqprop.rules.homeostasis`).

    Raises
    ------
    ValueError
        Unknown name, or a parameter outside its range (the rule's own message).
    """
    takes = rule_parameters(name)
    known = {p for rule in RULE_CLASSES for p in rule_parameters(rule)}
    kwargs = {}
    for key, value in params.items():
        param = RULE_OPTIONS[key].param if key in RULE_OPTIONS else key
        if param in takes:
            kwargs[param] = value
        elif param not in known:
            raise ValueError(
                f"unknown rule parameter {key!r}; the rules take {', '.join(sorted(known))}"
            )
    return RULE_CLASSES[name](**kwargs)
