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
:mod:`eqprop.rules.holomorphic` (holomorphic EP, graph networks) and
:mod:`eqprop.rules.vfep` (vector-field EP, free-feedback graph networks; neither is in
``RULES`` yet: their phases need complex states or learned feedback that the trainer
does not configure yet); everything is importable from
:mod:`eqprop.rules`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eqprop._cli_options import finite_float
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
from eqprop.rules.rbp import RBP_METHODS, RecurrentBackprop
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
    "ContrastiveHebbian",
    "CoupledLearning",
    "EquilibriumPropagation",
    "GeneRec",
    "Gradient",
    "HolomorphicEP",
    "LearningRule",
    "PhaseSpec",
    "RecurrentBackprop",
    "RuleOption",
    "RuleStep",
    "ScaledFeedbackCHL",
    "VectorFieldEP",
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
    "beta": RuleOption("beta", float, "nudging strength of --rule ep (nonzero)"),
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
    :class:`BackpropThroughTime` (through all ``T`` free steps).

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
