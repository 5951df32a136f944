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

Rules that clamp the output (the output layer must be part of the state, ``cost="squared"``):

* contrastive Hebbian learning (Movellan 1991), :class:`ContrastiveHebbian`;
* GeneRec (O'Reilly 1996) in four forms, :class:`GeneRec`;
* coupled learning (Stern et al. 2021) in three variants, :class:`CoupledLearning`.

:func:`make_rule` builds any of them by name (``RULES``); it is what
:class:`eqprop.train.Trainer` and ``eqprop train --rule`` use. See ``docs/rules.rst``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eqprop import kernels as K
from eqprop.network import Gradient, Network, _activities_np, _contrast, check_target, output
from eqprop.phases import Clamped, Dynamics, Phase, clamp, free_phase, run_phase

__all__ = [
    "COUPLED_VARIANTS",
    "ESTIMATORS",
    "GENEREC_FORMS",
    "RULES",
    "ContrastiveHebbian",
    "CoupledLearning",
    "EquilibriumPropagation",
    "GeneRec",
    "Gradient",
    "LearningRule",
    "PhaseSpec",
    "RuleStep",
    "coupled_target",
    "generec_gradient",
    "make_rule",
]

ESTIMATORS = ("one-sided", "random-sign", "symmetric")
GENEREC_FORMS = ("basic", "symmetric", "midpoint", "symmetric-midpoint")
COUPLED_VARIANTS = ("positive", "negative", "centered")
#: Rule names of :func:`make_rule` (and ``eqprop train --rule``).
RULES = ("ep", "chl", "generec", "coupled")


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
    #: Whether the rule clamps the output layer, which must then be part of the state.
    clamps_output = False

    def check_cost(self, cost: str) -> None:
        """Raise ValueError if the rule cannot run on a network with this ``cost``."""
        if self.clamps_output and cost != "squared":
            raise ValueError(
                f"rule {self.name!r} clamps the output layer, which a cost={cost!r} readout "
                "keeps outside the state; use cost='squared' (--cost squared) or rule 'ep'"
            )

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
        self.check_cost(net.cost)
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
            target = d
            if spec.eta is not None:
                target = coupled_target(free.state[:, -net.n_out :], d, spec.eta, net.bounds)
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
    clamps_output = True

    def __init__(self, steps: str = "K"):
        self.spec = PhaseSpec("clamped", 0.0, start="free", steps=steps, clamp=True)

    def __repr__(self) -> str:
        return f"ContrastiveHebbian(steps={self.spec.steps!r})"

    def plan(self, rng):
        return (self.spec,)

    def combine(self, net, cx, d, phases):
        S = np.stack([phases["free"].state, phases["clamped"].state])
        return _contrast(net, cx.x, d, S, [0.0, 0.0], [-1.0, 1.0], cx.theta)


def _check_choice(what: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return value


class GeneRec(LearningRule):
    r"""GeneRec, the generalized recirculation algorithm (O'Reilly 1996, Neural Computation
    8:895-938), in its four forms.

    Minus phase: the free phase, activities :math:`a^-`. Plus phase: the output layer
    clamped to the targets, started from the free state (``dyn.K`` steps, or ``dyn.T``
    with ``steps="T"``; phase name ``"clamped"``), activities :math:`a^+`. For the weight
    from unit :math:`i` of layer :math:`l-1` (presynaptic, input side; the clamped input
    ``x`` for layer 1) to unit :math:`j` of layer :math:`l` (postsynaptic), the paper's
    increment is :math:`\Delta W_{ij} = \epsilon\, a_i^-\,(a_j^+ - a_j^-)`. eqprop returns
    estimates of :math:`\partial\mathcal L/\partial\theta` (SGD does ``W -= lr * dW``), so
    with the batch mean :math:`\langle\cdot\rangle`:

    * ``"basic"``: :math:`dW_{ij} = -\langle a_i^-\,(a_j^+ - a_j^-)\rangle`;
    * ``"midpoint"``: the presynaptic activity at the midpoint of the phases,
      :math:`-\langle \tfrac12(a_i^- + a_i^+)\,(a_j^+ - a_j^-)\rangle`;
    * ``"symmetric"``: the basic term plus its mirror image (the same update for the
      weight read in either direction), :math:`-\langle a_i^-(a_j^+ - a_j^-) +
      (a_i^+ - a_i^-)\,a_j^-\rangle`;
    * ``"symmetric-midpoint"``: both, :math:`-\langle \bar a_i(a_j^+ - a_j^-) +
      (a_i^+ - a_i^-)\,\bar a_j\rangle` with :math:`\bar a = \tfrac12(a^- + a^+)`, which
      is exactly :math:`-\langle a_i^+a_j^+ - a_i^-a_j^-\rangle`: contrastive Hebbian
      learning (:class:`ContrastiveHebbian`), as O'Reilly (1996) shows.

    Biases (a presynaptic unit at activity 1 in both phases): :math:`db_j =
    -\langle a_j^+ - a_j^-\rangle` in every form. Activities are :math:`\rho(s)`
    (hopfield) or ``s`` (prototypical). Squared cost only (the output must be in the
    state). The forms are written from the paper's description (the symmetric form keeps
    the weights symmetric, the midpoint form is a second-order, Runge-Kutta-like step);
    the CHL identity is tested to float64 precision.

    Parameters
    ----------
    form : {"basic", "symmetric", "midpoint", "symmetric-midpoint"}
    steps : {"K", "T"}
        Step budget of the plus phase in fixed-steps mode.
    """

    name = "generec"
    clamps_output = True

    def __init__(self, form: str = "basic", steps: str = "K"):
        self.form = _check_choice("GeneRec form", form, GENEREC_FORMS)
        self.spec = PhaseSpec("clamped", 0.0, start="free", steps=steps, clamp=True)

    def __repr__(self) -> str:
        return f"GeneRec(form={self.form!r}, steps={self.spec.steps!r})"

    def plan(self, rng):
        return (self.spec,)

    def combine(self, net, cx, d, phases):
        return generec_gradient(net, cx.x, phases["free"].state, phases["clamped"].state, self.form)


def generec_gradient(
    net: Network, x: np.ndarray, s_minus: np.ndarray, s_plus: np.ndarray, form: str
) -> Gradient:
    """GeneRec's update (see :class:`GeneRec`) from the minus and plus states.

    Parameters
    ----------
    net : Network
    x : ndarray (batch, sizes[0])
        Clamped input, network dtype.
    s_minus, s_plus : ndarray (batch, n_state)
        Free and output-clamped states.
    form : {"basic", "symmetric", "midpoint", "symmetric-midpoint"}

    Returns
    -------
    Gradient
        Batch mean, network dtype.
    """
    _check_choice("GeneRec form", form, GENEREC_FORMS)
    midpoint = form in ("midpoint", "symmetric-midpoint")
    symmetric = form in ("symmetric", "symmetric-midpoint")
    am, ap = _activities_np(net, s_minus), _activities_np(net, s_plus)
    off = [int(v) for v in net.offsets]
    B = x.shape[0]
    dW, db = [], []
    for l in range(1, len(off)):
        post_m, post_p = am[:, off[l - 1] : off[l]], ap[:, off[l - 1] : off[l]]
        if l == 1:
            pre_m = pre_p = x
        else:
            pre_m, pre_p = am[:, off[l - 2] : off[l - 1]], ap[:, off[l - 2] : off[l - 1]]
        dpost = post_p - post_m
        g = (0.5 * (pre_m + pre_p) if midpoint else pre_m).T @ dpost
        if symmetric and l > 1:  # the input is clamped: pre_p - pre_m = 0 for layer 1
            g += (pre_p - pre_m).T @ (0.5 * (post_m + post_p) if midpoint else post_m)
        dW.append(np.ascontiguousarray(-g / B, dtype=net.dtype))
        db.append(np.ascontiguousarray(-dpost.mean(axis=0), dtype=net.dtype))
    return Gradient(dW, db)


class CoupledLearning(LearningRule):
    r"""Coupled learning (Stern, Hexner, Rocks & Liu 2021, Phys. Rev. X 11:021045), with the
    positive, negative and centered variants compared by Scellier et al. (2023, NeurIPS,
    "Energy-based learning algorithms for analog computing").

    After the free phase (state :math:`s^0`, output :math:`y^0`), each clamped phase holds
    the output at :math:`y^{\pm\eta} = y^0 \pm \eta\,(d - y^0)` (:func:`coupled_target`,
    projected onto the state's box if the network has one;
    ``PhaseSpec(..., clamp=True, eta=±eta)``, phase names ``"clamped+"`` /
    ``"clamped-"``) and relaxes the hidden layers from the free state, ``dyn.K`` steps.
    With :math:`G(s) = \partial F/\partial\theta(s)` (both at :math:`\beta = 0`):

    * ``"positive"``: :math:`\widehat\nabla = [G(s^{+\eta}) - G(s^0)]/\eta`;
    * ``"negative"``: :math:`\widehat\nabla = [G(s^0) - G(s^{-\eta})]/\eta`;
    * ``"centered"``: :math:`\widehat\nabla = [G(s^{+\eta}) - G(s^{-\eta})]/(2\eta)`.

    Positive with :math:`\eta = 1` is contrastive Hebbian learning.

    **The limit** :math:`\eta\to0` (for an energy :math:`E` with a nonsingular Hessian
    :math:`H = \partial^2E/\partial s^2` at the free state, blocks :math:`h` hidden and
    :math:`y` output). The clamped state moves along
    :math:`ds/d\eta = (-H_{hh}^{-1}H_{hy}\,\delta,\ \delta)`, :math:`\delta = d - y^0`,
    which equals :math:`H^{-1}(0,\ S\delta)` with
    :math:`S = H_{yy} - H_{yh}H_{hh}^{-1}H_{hy} = [(H^{-1})_{yy}]^{-1}` the Schur
    complement of the hidden block. All three variants tend to

    .. math:: \lim_{\eta\to0}\widehat\nabla
              = \frac{\partial^2 E}{\partial\theta\,\partial s}\,H^{-1}
                \begin{pmatrix}0\\ S\,(d - y^0)\end{pmatrix}
              = \Big(\frac{dy^0}{d\theta}\Big)^{\!\top} S\,(y^0 - d),

    whereas the gradient of the squared loss (EP's limit) is
    :math:`(dy^0/d\theta)^\top (y^0 - d)`: clamping prescribes the output's displacement,
    EP's nudge the force on it, so coupled learning's output error is preconditioned by
    :math:`S` (positive definite when :math:`H` is; the limit is a descent direction but
    not the gradient unless :math:`S \propto I`). The one-sided variants approach the
    limit at first order in :math:`\eta`, the centered one at second order (tested).

    Parameters
    ----------
    eta : float
        Clamping factor in (0, 1] (1: clamp to the targets).
    variant : {"positive", "negative", "centered"}
    steps : {"K", "T"}
        Step budget of the clamped phases in fixed-steps mode.
    """

    name = "coupled"
    clamps_output = True

    def __init__(self, eta: float = 0.5, variant: str = "centered", steps: str = "K"):
        try:
            eta = float(eta)
        except (TypeError, ValueError):
            raise ValueError(f"CoupledLearning needs a number eta in (0, 1], got {eta!r}") from None
        if not (np.isfinite(eta) and 0.0 < eta <= 1.0):
            raise ValueError(
                f"CoupledLearning needs eta in (0, 1] (the fraction of the way from the free "
                f"output to the targets), got {eta}"
            )
        self.eta = eta
        self.variant = _check_choice("coupled-learning variant", variant, COUPLED_VARIANTS)
        plus = PhaseSpec("clamped+", 0.0, steps=steps, clamp=True, eta=eta)
        minus = PhaseSpec("clamped-", 0.0, steps=steps, clamp=True, eta=-eta)
        self.specs = {"positive": (plus,), "negative": (minus,), "centered": (plus, minus)}[
            self.variant
        ]

    def __repr__(self) -> str:
        return (
            f"CoupledLearning(eta={self.eta}, variant={self.variant!r}, "
            f"steps={self.specs[0].steps!r})"
        )

    def plan(self, rng):
        return self.specs

    def combine(self, net, cx, d, phases):
        eta = self.eta
        if self.variant == "positive":
            low, high, span = phases["free"], phases["clamped+"], eta
        elif self.variant == "negative":
            low, high, span = phases["clamped-"], phases["free"], eta
        else:
            low, high, span = phases["clamped-"], phases["clamped+"], 2.0 * eta
        S = np.stack([low.state, high.state])
        return _contrast(net, cx.x, d, S, [0.0, 0.0], [-1.0 / span, 1.0 / span], cx.theta)


def make_rule(
    name: str,
    *,
    beta: float = 1.0,
    estimator: str = "one-sided",
    generec_form: str = "basic",
    eta: float = 0.5,
    variant: str = "centered",
) -> LearningRule:
    """A rule by name (``RULES``) with its parameters; the others are ignored.

    ``"ep"``: :class:`EquilibriumPropagation` (``beta``, ``estimator``); ``"chl"``:
    :class:`ContrastiveHebbian`; ``"generec"``: :class:`GeneRec` (``generec_form``);
    ``"coupled"``: :class:`CoupledLearning` (``eta``, ``variant``).

    Raises
    ------
    ValueError
        Unknown name, or a parameter outside its range (the rule's own message).
    """
    _check_choice("rule", name, RULES)
    if name == "ep":
        return EquilibriumPropagation(beta=beta, estimator=estimator)
    if name == "chl":
        return ContrastiveHebbian()
    if name == "generec":
        return GeneRec(form=generec_form)
    return CoupledLearning(eta=eta, variant=variant)
