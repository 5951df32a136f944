"""Holomorphic Equilibrium Propagation: exact gradients from nudges on a circle.

Laborieux & Zenke (2022, NeurIPS), "Holomorphic Equilibrium Propagation Computes Exact
Gradients Through Finite Size Oscillations". With every coupling tied and holomorphic
activations, the total function :math:`F(s, \\beta)` of :mod:`eqprop.graph.reference` is
holomorphic in the state and in :math:`\\beta`, and so is

.. math:: g(\\beta) = \\frac{\\partial F}{\\partial\\theta}\\bigl(s^*_\\beta, \\beta\\bigr)

along a branch of fixed points :math:`s^*_\\beta` continued from the free one. EP's
theorem (Scellier & Bengio 2017) is :math:`g'(0) = \\nabla_\\theta\\mathcal L`, and
Cauchy's formula on the circle :math:`\\beta = |\\beta| e^{i t}` makes it an integral of
finite nudges:

.. math:: \\nabla_\\theta\\mathcal L = \\frac{1}{2\\pi i}\\oint \\frac{g(\\beta)}{\\beta^2}
          d\\beta = \\frac{1}{2\\pi|\\beta|}\\int_0^{2\\pi} g(|\\beta| e^{it})\\, e^{-it}\\,dt,

the first Fourier coefficient of :math:`t \\mapsto g(|\\beta|e^{it})` divided by
:math:`|\\beta|`. With :math:`N` phases at :math:`\\beta_k = |\\beta| e^{2\\pi i k/N}` the
trapezoidal rule gives the estimate

.. math:: \\widehat{\\nabla}_N = \\frac{1}{N|\\beta|}\\sum_{k=0}^{N-1} g(\\beta_k)\\,
          e^{-2\\pi i k/N} = \\frac1N\\sum_{k=0}^{N-1}\\frac{g(\\beta_k) - g(0)}{\\beta_k}

(the free term :math:`g(0)` drops out because :math:`\\sum_k e^{-2\\pi ik/N} = 0`; it is
subtracted anyway, so that :math:`N = 2` is literally the centered estimate
:math:`[g(|\\beta|) - g(-|\\beta|)]/(2|\\beta|)` of Laborieux et al. 2021). This is the
normalisation of the paper's code (``models/mlp.py`` of
github.com/Laborieux-Axel/holomorphic_eqprop: the mean over the :math:`N` points of
:math:`\\partial E/\\partial\\theta` divided by the complex :math:`\\beta_k`, real part
kept; SGD subtracts it), and eqprop's :class:`~eqprop.network.Gradient` convention
(an estimate of :math:`\\partial\\mathcal L/\\partial\\theta`, batch mean; SGD does
``W -= lr * dW``).

With :math:`g(\\beta) = \\sum_n c_n\\beta^n`, the sum keeps the Taylor terms whose order
is 1 modulo :math:`N`: :math:`\\widehat{\\nabla}_N = c_1 + c_{N+1}|\\beta|^N +
c_{2N+1}|\\beta|^{2N} + \\dots`, so at fixed :math:`|\\beta|` inside the radius of
convergence the error falls geometrically with :math:`N` (doubling :math:`N` about squares
it) down to the float64 floor.

Phases: the paper's oscillating nudge runs the phases one after the other, each starting
from the previous point's state (``start="previous"``; the first from the free state); its
code's noiseless fast path starts each from the free state (``start="free"``). At
convergence both give the same estimate when both land on the same branch of fixed
points (close neighbouring points make the previous-state start follow the branch).

Generalized form (Laborieux & Zenke 2024, ICLR, "Improving equilibrium propagation
without weight symmetry through Jacobian homeostasis"): with untied feedback (``free``,
``random``, ``scaled``) there is no energy and :math:`g(\\beta)` is not defined, but the
dynamics :math:`s \\leftarrow G(s, \\theta, \\beta)` still have a branch of fixed points.
Generalized EP (Scellier et al. 2018) contracts the local derivative of the dynamics with
respect to the parameters, at the free state, with the neuronal error vector
:math:`\\delta = da^*_\\beta/d\\beta|_{\\beta=0}` (:math:`a = \\rho(s)` hopfield, :math:`s`
prototypical), and the paper estimates :math:`\\delta` exactly at finite nudges with the
same Cauchy integral, now of the activities:

.. math:: \\delta_N = \\frac1N\\sum_{k=0}^{N-1}\\frac{a(s^*_{\\beta_k}) - a(s^*_0)}{\\beta_k},
          \\qquad \\widehat{\\nabla}^{\\mathrm{gen}}_N = -\\Lambda(a^0, \\delta_N)

(real part kept), with :math:`\\Lambda` the bilinear local products of
:func:`generalized_gradient` (a dense coupling's ``W``: :math:`\\overline{a^{0\\top}_{src}
\\delta_{dst}}`, plus :math:`\\overline{\\delta_{src}^\\top a^0_{dst}}` when tied; a free
``B``: :math:`\\overline{a^{0\\top}_{dst}\\delta_{src}}`; a bias: :math:`\\overline{\\delta_l}`;
a readout: its direct :math:`\\partial C/\\partial\\theta`). As :math:`N\\to\\infty`,
:math:`\\delta_N \\to q\\odot(I - J)^{-1}\\partial G/\\partial\\beta` (:math:`J =
\\partial G/\\partial s` at the free state, :math:`q = da/ds`), whereas recurrent backprop
(:mod:`eqprop.graph.backprop`) solves with :math:`(I - J^\\top)`: the estimate is exact when
the Jacobian is symmetric in the sense of EP (tied feedback; then it is EP's theorem,
:math:`d/d\\beta` of :math:`\\partial F/\\partial\\theta = -\\overline{a_{src}^\\top
a_{dst}}`), and its remaining bias for an asymmetric network is the one the paper's
Jacobian homeostasis reduces. This is the estimator of the paper's released code
(github.com/Laborieux-Axel/generalized-holo-ep, ``models/dyn.py``: the mean over the
:math:`N` points of the activities divided by :math:`\\beta_k`, real part, contracted with
the vector-field derivative at the free state, plus the readout's direct gradient); the
text of the paper available to us gave only its abstract. It differs from the energy form
at finite :math:`N` (the energy form's Fourier coefficient of the product
:math:`a_{src}^\\top a_{dst}` also aliases the cross terms), not in the limit.

Everything here is NumPy on the reference map (:func:`eqprop.graph.reference.fixed_point_map`)
in ``complex128`` (the reference route); :class:`eqprop.rules.holomorphic.HolomorphicEP`
runs the same estimator with the phases through :mod:`solvers` on the Numba graph map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqprop.graph import reference as R
from eqprop.graph.model import HOLOMORPHIC_ACTIVATIONS, Coupling, GraphNetwork, Layer

__all__ = [
    "FORMS",
    "START_MODES",
    "CirclePhase",
    "HolomorphicResult",
    "RelaxResult",
    "activity_coefficient",
    "as_complex",
    "check_holomorphic",
    "circle_points",
    "combine",
    "estimate_from_states",
    "generalized_gradient",
    "holomorphic_ep",
    "plan",
    "real_beta_ep",
    "relative_error",
    "relax",
]

START_MODES = ("previous", "free")
FORMS = ("energy", "generalized")
REAL_ESTIMATORS = ("one-sided", "centered")
DIVERGED = 1e12  # relax gives up once one update exceeds this (the state is blowing up)


# ----------------------------------------------------------------------------- checks
def _check_points(points: Any) -> int:
    if isinstance(points, bool) or not isinstance(points, int | np.integer) or points < 2:
        raise ValueError(
            f"points must be an integer >= 2 (N = 2 is the centered estimate), got {points!r}"
        )
    return int(points)


def _check_radius(beta: Any) -> float:
    try:
        r = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"|beta| must be a real number > 0, got {beta!r}") from None
    if not np.isfinite(r) or r <= 0:
        raise ValueError(
            f"|beta| must be finite and > 0 (the radius of the circle of nudges), got {beta!r}"
        )
    return r


def _check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(
            f"unknown holomorphic EP form {form!r}; choose 'energy' (the Fourier coefficient "
            "of dF/dtheta, tied networks) or 'generalized' (Laborieux & Zenke 2024, any "
            "feedback)"
        )
    return form


def _check_start(start: str) -> str:
    if start not in START_MODES:
        raise ValueError(
            f"unknown start {start!r}; choose 'previous' (each phase from the previous "
            "point's state, the oscillating nudge) or 'free' (each from the free state)"
        )
    return start


def check_holomorphic(net: GraphNetwork, form: str = "energy") -> None:
    """Raise a one-line ``ValueError`` unless ``net`` can run holomorphic EP.

    Needs every state layer's activation holomorphic
    (:data:`~eqprop.graph.model.HOLOMORPHIC_ACTIVATIONS`; a hard sigmoid is not), no boxes
    (a projection is not holomorphic) and, for ``form="energy"``, every coupling tied (an
    energy, so that :math:`g(\\beta)` is defined). ``conv2d`` couplings run with average
    pooling or none: a max pool selects by an order of the values, which complex states
    do not have (its argmax is not a holomorphic function), so it is refused, naming the
    coupling and its target layer.
    """
    _check_form(form)
    for c in net.couplings:
        if c.type == "conv2d" and c.conv is not None and c.conv.pool == "max":
            raise ValueError(
                f"holomorphic EP: coupling {c.name!r} max-pools into layer {c.target!r}; a "
                "max pool's argmax is not holomorphic (complex states have no order): use "
                "average pooling (ap2 in a conv architecture, ConvSpec(pool='avg'))"
            )
    for layer in net.state_layers:
        if layer.activation not in HOLOMORPHIC_ACTIVATIONS:
            raise ValueError(
                f"holomorphic EP: layer {layer.name!r} has activation {layer.activation!r}, "
                f"which is not holomorphic; use one of {', '.join(HOLOMORPHIC_ACTIVATIONS)}"
            )
        if layer.box is not None:
            raise ValueError(
                f"holomorphic EP: layer {layer.name!r} has box {layer.box}, a projection "
                "that is not holomorphic; set box=None"
            )
    if form == "energy":
        net.require_energy(
            "the energy holomorphic EP differentiates (the generalized form takes untied "
            "feedback: form='generalized', HolomorphicEP(generalized=True))"
        )


def as_complex(net: GraphNetwork, dtype: Any = "complex128", form: str = "energy") -> GraphNetwork:
    """A ``complex128`` copy of ``net`` (same layers, couplings and parameters), after
    :func:`check_holomorphic` (``form``). A complex network of that dtype is returned as
    it is."""
    check_holomorphic(net, form)
    if net.dtype == np.dtype(dtype):
        return net

    def arr(a):
        return None if a is None else np.array(a)

    layers = [
        Layer(la.name, la.size, la.role, la.activation, la.box, arr(la.bias), la.shape)
        for la in net.layers
    ]
    couplings = [
        Coupling(
            c.source, c.target, np.array(c.W), c.feedback, c.gamma, arr(c.B), c.name, c.type, c.conv
        )
        for c in net.couplings
    ]
    return GraphNetwork(layers, couplings, net.kind, net.cost, dtype)


# ----------------------------------------------------------------------------- plan
def circle_points(points: int, beta: float) -> np.ndarray:
    """:math:`\\beta_k = |\\beta| e^{2\\pi i k/N}`, ``k = 0..N-1``, complex128 (N,).

    Points on the axes (``4k/N`` an integer) are exact (:math:`\\pm|\\beta|`,
    :math:`\\pm i|\\beta|`), so that ``N = 2`` nudges at exactly :math:`\\pm|\\beta|`.
    """
    n, r = _check_points(points), _check_radius(beta)
    k = np.arange(n)
    out = r * np.exp(2j * np.pi * k / n)
    axis = (4 * k) % n == 0
    out[axis] = r * np.array([1, 1j, -1, -1j])[(4 * k[axis]) // n]
    return out


@dataclass(frozen=True)
class CirclePhase:
    """One nudged phase of holomorphic EP.

    Attributes
    ----------
    name : str
        ``"nudged0"`` .. ``"nudged{N-1}"``.
    beta : complex
        :math:`\\beta_k`.
    start : {"free", "previous"}
        Initial state: the free state, or the final state of the phase before (the first
        phase always starts from the free state).
    weight : complex
        Its weight :math:`1/(N\\beta_k)` in :func:`combine`.
    """

    name: str
    beta: complex
    start: str
    weight: complex


def plan(points: int, beta: float, start: str = "previous") -> tuple[CirclePhase, ...]:
    """The ``N`` phases of holomorphic EP, in the order they run (module docstring)."""
    _check_start(start)
    betas = circle_points(points, beta)
    n = betas.size
    return tuple(
        CirclePhase(
            f"nudged{k}",
            complex(b),
            "free" if (start == "free" or k == 0) else "previous",
            complex(1.0 / (n * b)),
        )
        for k, b in enumerate(betas)
    )


def combine(
    phases: Sequence[CirclePhase],
    nudged: Sequence[Mapping[str, np.ndarray]],
    free: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """:math:`\\frac1N\\sum_k [g(\\beta_k) - g(0)]/\\beta_k`, complex, by parameter name.

    ``nudged[k]`` is :math:`\\partial F/\\partial\\theta(s^*_{\\beta_k}, \\beta_k)` and
    ``free`` is :math:`\\partial F/\\partial\\theta(s^*_0, 0)`
    (:func:`eqprop.graph.reference.parameter_gradient`, batch means).
    """
    if len(phases) != len(nudged):
        raise ValueError(f"combine: {len(phases)} phases but {len(nudged)} gradients")
    out: dict[str, np.ndarray] = {}
    for name, g0 in free.items():
        acc = np.zeros_like(np.asarray(g0, dtype=np.complex128))
        for ph, g in zip(phases, nudged, strict=True):
            acc += ph.weight * (g[name] - g0)
        out[name] = acc
    return out


def activity_coefficient(
    phases: Sequence[CirclePhase],
    nudged: Sequence[Mapping[str, np.ndarray]],
    free: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """:math:`\\delta_N = \\frac1N\\sum_k [a(s^*_{\\beta_k}) - a(s^*_0)]/\\beta_k` per state
    layer (batch, size), complex: the estimate of the neuronal error vector
    :math:`da^*_\\beta/d\\beta|_0` of the generalized form (module docstring).

    ``nudged[k]`` and ``free`` are the activities
    (:func:`eqprop.graph.reference.activities`) of the phases' states, by layer name; the
    input's entry is skipped.
    """
    if len(phases) != len(nudged):
        raise ValueError(f"activity_coefficient: {len(phases)} phases but {len(nudged)} states")
    out: dict[str, np.ndarray] = {}
    for name, a0 in free.items():
        if name not in nudged[0]:
            continue
        acc = np.zeros(np.shape(a0), dtype=np.complex128)
        for ph, a in zip(phases, nudged, strict=True):
            acc += ph.weight * (a[name] - a0)
        out[name] = acc
    return out


def generalized_gradient(
    net: GraphNetwork, x, s0, delta: Mapping[str, np.ndarray], d
) -> dict[str, np.ndarray]:
    """:math:`-\\Lambda(a^0, \\delta)`: the local parameter derivative of the dynamics at the
    free state contracted with an error vector ``delta`` (module docstring), batch mean,
    by parameter name (the dtype of ``delta``: complex in, complex out).

    A dense coupling ``src -> dst`` gets :math:`-\\overline{a^{0\\top}_{src}\\delta_{dst}}`,
    plus :math:`-\\overline{\\delta^\\top_{src} a^0_{dst}}` when tied (times
    :math:`\\gamma` when scaled); a free ``B`` gets :math:`-\\overline{a^{0\\top}_{dst}
    \\delta_{src}}` (a random ``B`` is fixed); a state layer's bias
    :math:`-\\overline{\\delta_l}`; the parameters of a readout their direct
    :math:`\\partial C/\\partial\\theta` at ``s0``.

    Parameters
    ----------
    net : GraphNetwork
        Dense and ``conv2d`` couplings (:func:`check_holomorphic` with
        ``form="generalized"``); a conv coupling's terms are its module's
        :func:`~eqprop.graph.conv.weight_gradient` of the same pairs of activities.
    x, d : ndarray
        Input (batch, n_in) and targets (batch, n_out).
    s0 : ndarray (batch, n_state)
        The free state.
    delta : dict of ndarray
        Error vector per state layer, (batch, size) (:func:`activity_coefficient`).
    """
    check_holomorphic(net, "generalized")
    x = R._batch(net, x, net.n_in, "x", None)
    s0 = R._batch(net, s0, net.n_state, "s0", x.shape[0])
    d = R._batch(net, d, net.n_out, "d", x.shape[0])
    acts = R.activities(net, x, s0)
    off, out_layer, n = net.offsets, net.output_layer, x.shape[0]
    err = None
    if out_layer.role == "readout":
        err = R._softmax(R.readout_logits(net, acts)) - d
    grads: dict[str, np.ndarray] = {}
    for c in net.couplings:
        a_src = acts[c.source]
        if c.target == out_layer.name and err is not None:
            grads[f"{c.name}.W"] = a_src.T @ err / n
            continue
        if c.type != "dense":  # the same bilinear products in the kernels' shape
            m = R.coupling_module(c)
            gW = m.weight_gradient(c, a_src, delta[c.target])
            if c.source in off:
                back = m.weight_gradient(c, delta[c.source], acts[c.target], at=a_src)
                if c.feedback in ("tied", "scaled"):
                    gW = gW + (c.gamma if c.feedback == "scaled" else 1.0) * back
                elif c.feedback == "free":
                    grads[f"{c.name}.B"] = back
            grads[f"{c.name}.W"] = gW
            continue
        gW = -(a_src.T @ delta[c.target]) / n
        if c.source in off:
            if c.feedback in ("tied", "scaled"):
                gain = c.gamma if c.feedback == "scaled" else 1.0
                gW = gW - gain * (delta[c.source].T @ acts[c.target]) / n
            elif c.feedback == "free":
                grads[f"{c.name}.B"] = -(acts[c.target].T @ delta[c.source]) / n
        grads[f"{c.name}.W"] = gW
    grads.update(R.bias_gradients(net, delta, err))
    return grads


def estimate_from_states(
    cnet: GraphNetwork,
    x: np.ndarray,
    d: np.ndarray,
    phases: Sequence[CirclePhase],
    free: np.ndarray,
    states: Sequence[np.ndarray],
    form: str = "energy",
    path: str = "auto",
) -> dict[str, np.ndarray]:
    """The complex estimate by parameter name from the free state and the phases' states
    (complex ``cnet``, its dtype for ``x``, ``d`` and the states).

    ``"energy"``: :func:`combine` of :math:`\\partial F/\\partial\\theta`; ``"generalized"``:
    :func:`generalized_gradient` of :func:`activity_coefficient`. ``path`` chooses how the
    energy form is computed: ``"combine"`` (one :func:`eqprop.graph.reference.parameter_gradient`
    per phase, any coupling type) or ``"bilinear"`` (dense couplings; the same sum
    rewritten with the activity coefficient :math:`\\delta_N`, equal to round-off: a
    coupling term :math:`-\\overline{a_{src}^\\top a_{dst}}` has the coefficient
    :math:`-\\overline{a^{0\\top}_{src}\\delta_{dst} + \\delta_{src}^\\top a^0_{dst}} -
    \\frac1N\\sum_k \\overline{\\Delta_{k,src}^\\top\\Delta_{k,dst}}/\\beta_k` with
    :math:`\\Delta_k = a(s^*_{\\beta_k}) - a(s^*_0)`, zero for the input, so a coupling from
    the input costs one product instead of :math:`N + 1`); ``"auto"`` takes the bilinear
    path when every coupling is dense.
    """
    if path not in ("auto", "combine", "bilinear"):
        raise ValueError(f"unknown path {path!r}; choose 'auto', 'combine' or 'bilinear'")
    dense = all(c.type == "dense" for c in cnet.couplings)
    if _check_form(form) == "energy" and (path == "combine" or (path == "auto" and not dense)):
        g0 = R.parameter_gradient(cnet, x, free, d, 0.0)
        grads = [
            R.parameter_gradient(cnet, x, s, d, p.beta) for p, s in zip(phases, states, strict=True)
        ]
        return combine(phases, grads, g0)
    acts = [R.activities(cnet, x, s) for s in states]
    acts0 = R.activities(cnet, x, free)
    delta = activity_coefficient(phases, acts, acts0)
    out = generalized_gradient(cnet, x, free, delta, d)
    if form == "generalized":
        return out
    # the energy form: the cross terms of the products, and the readout's mean over phases
    n, off, ro = x.shape[0], cnet.offsets, cnet.output_layer
    for c in cnet.couplings:
        if c.source in off and c.target in off:
            for ph, a in zip(phases, acts, strict=True):
                ds, dd = a[c.source] - acts0[c.source], a[c.target] - acts0[c.target]
                out[f"{c.name}.W"] = out[f"{c.name}.W"] - ph.weight * (ds.T @ dd) / n
    if ro.role == "readout":
        errs = [R._softmax(R.readout_logits(cnet, a)) - d for a in acts]
        for c in cnet.couplings:
            if c.target == ro.name:
                terms = [a[c.source].T @ e / n for a, e in zip(acts, errs, strict=True)]
                out[f"{c.name}.W"] = sum(terms) / len(terms)
        if ro.bias is not None:
            out[f"{ro.name}.b"] = sum(e.mean(axis=0) for e in errs) / len(errs)
    return out


# ----------------------------------------------------------------------------- relaxation
@dataclass(eq=False)
class RelaxResult:
    """A fixed point of the nudged map and how it was reached."""

    state: np.ndarray
    iterations: int
    residual: float


def relax(
    net: GraphNetwork,
    x,
    d=None,
    beta: complex = 0.0,
    *,
    s0=None,
    eps: float = 0.5,
    nudge: str = "inside",
    atol: float = 1e-13,
    max_iter: int = 100000,
) -> RelaxResult:
    """Picard iteration :math:`s \\leftarrow g(s, \\beta)` of the reference map to a fixed
    point, real or complex ``beta`` (NumPy, any dtype of ``net``).

    Parameters
    ----------
    net : GraphNetwork
        Complex for a complex ``beta``.
    x, d : ndarray
        Input (batch, n_in) and targets (batch, n_out; needed when ``beta != 0``).
    beta : complex
        Nudging strength.
    s0 : ndarray (batch, n_state), optional
        Initial state (zeros when None).
    eps, nudge
        As in :func:`eqprop.graph.reference.fixed_point_map`.
    atol : float
        Stop when :math:`\\max|g(s) - s| \\le` ``atol`` (modulus for complex states).
    max_iter : int
        Give up after this many iterations, or as soon as one update exceeds
        :data:`DIVERGED` or is not finite.

    Raises
    ------
    ValueError
        No fixed point to ``atol`` in ``max_iter`` iterations (the map does not contract
        there: a smaller ``eps``, a smaller ``|beta|``, or a branch that ended).
    """
    if net.dtype.kind != "c" and np.iscomplexobj(beta) and np.imag(beta) != 0:
        raise ValueError(f"beta {beta!r} is complex but the network's dtype is {net.dtype.name}")
    x = R._batch(net, x, net.n_in, "x", None)
    s = net.zero_state(x.shape[0]) if s0 is None else R._batch(net, s0, net.n_state, "s0", None)
    if net.dtype.kind != "c":
        beta = float(np.real(beta))
    res = np.inf
    with np.errstate(over="ignore", invalid="ignore"):  # a blow-up raises below
        for it in range(1, max_iter + 1):
            g = R.fixed_point_map(net, x, s, d, beta, eps=eps, nudge=nudge)
            res = float(np.max(np.abs(g - s)))
            s = g
            if res <= atol:
                return RelaxResult(s, it, res)
            if not res < DIVERGED:
                break
    raise ValueError(
        f"relax: no fixed point at beta={beta:.4g} to atol={atol:g} in {it} iterations "
        f"(last update {res:.3g}); the map does not contract there"
    )


# ----------------------------------------------------------------------------- estimators
@dataclass(eq=False)
class HolomorphicResult:
    """The holomorphic EP estimate by parameter name, with its phases.

    Attributes
    ----------
    grads : dict of ndarray
        Estimates of :math:`\\partial\\mathcal L/\\partial\\theta` (batch mean): the real
        part of :func:`combine` for a real network (``float64``), the complex value for a
        complex one.
    phases : tuple of CirclePhase
    states : list of ndarray
        Fixed point of each phase (complex128, (batch, n_state)).
    info : dict
        ``iterations`` (per phase), ``residuals``, ``max_imag`` (largest imaginary part
        of the coefficient, round-off for a real network), ``free_state``.
    """

    grads: dict[str, np.ndarray]
    phases: tuple[CirclePhase, ...]
    states: list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)


def holomorphic_ep(
    net: GraphNetwork,
    x,
    d,
    *,
    points: int,
    beta: float,
    start: str = "previous",
    form: str = "energy",
    s_free=None,
    eps: float = 0.5,
    nudge: str = "inside",
    atol: float = 1e-13,
    max_iter: int = 100000,
) -> HolomorphicResult:
    """Holomorphic EP's estimate of :math:`\\nabla_\\theta\\overline{C(s^*_0)}` from ``points``
    nudged phases on the circle of radius ``beta`` (module docstring).

    Parameters
    ----------
    net : GraphNetwork
        Tied, holomorphic activations, no boxes (:func:`check_holomorphic`); real
        networks run as their ``complex128`` copy (:func:`as_complex`).
    x, d : ndarray
        Input (batch, n_in) and targets (batch, n_out), real.
    points : int
        :math:`N \\ge 2`.
    beta : float
        Radius :math:`|\\beta| > 0`.
    start : {"previous", "free"}
        Where each phase starts (module docstring).
    form : {"energy", "generalized"}
        The Fourier coefficient of :math:`\\partial F/\\partial\\theta` (tied networks), or
        the generalized estimator of Laborieux & Zenke (2024), :func:`generalized_gradient`
        of :func:`activity_coefficient` (any feedback; module docstring).
    s_free : ndarray (batch, n_state), optional
        The free fixed point (relaxed from zeros when None); the estimate is of the
        gradient at this state.
    eps, nudge, atol, max_iter
        As in :func:`relax` (every phase is relaxed to ``atol``).

    Raises
    ------
    ValueError
        ``points < 2``, ``beta <= 0``, an unknown ``start``, a network that is not
        holomorphic, or a phase that does not converge.
    """
    phases = plan(points, beta, start)  # checks points, beta, start
    cnet = as_complex(net, form=form)
    x = R._batch(cnet, x, cnet.n_in, "x", None)
    d = R._batch(cnet, d, cnet.n_out, "d", x.shape[0])
    if s_free is None:
        free = relax(cnet, x, eps=eps, atol=atol, max_iter=max_iter).state
    else:
        free = R._batch(cnet, s_free, cnet.n_state, "s_free", x.shape[0])
    states, iters, resid = [], [], []
    prev = free
    for ph in phases:
        s0 = free if ph.start == "free" else prev
        r = relax(cnet, x, d, ph.beta, s0=s0, eps=eps, nudge=nudge, atol=atol, max_iter=max_iter)
        states.append(r.state)
        iters.append(r.iterations)
        resid.append(r.residual)
        prev = r.state
    coef = estimate_from_states(cnet, x, d, phases, free, states, form)
    max_imag = max(float(np.max(np.abs(v.imag))) for v in coef.values())
    out = coef if net.dtype.kind == "c" else {k: v.real.copy() for k, v in coef.items()}
    info = {"iterations": iters, "residuals": resid, "max_imag": max_imag, "free_state": free}
    return HolomorphicResult(out, phases, states, info)


def real_beta_ep(
    net: GraphNetwork,
    x,
    d,
    *,
    beta: float,
    estimator: str = "centered",
    s_free=None,
    eps: float = 0.5,
    nudge: str = "inside",
    atol: float = 1e-13,
    max_iter: int = 100000,
) -> dict[str, np.ndarray]:
    """Classic EP with a real ``beta`` on the reference map, for comparison.

    ``"one-sided"``: :math:`[g(\\beta) - g(0)]/\\beta` (bias :math:`O(\\beta)`);
    ``"centered"``: :math:`[g(\\beta) - g(-\\beta)]/(2\\beta)` (bias :math:`O(\\beta^2)`,
    Laborieux et al. 2021), each nudged phase started from the free state. Any dtype of
    ``net`` (the reference map: boxes and hard sigmoids allowed).
    """
    if estimator not in REAL_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose 'one-sided' or 'centered'")
    b = _check_radius(beta)
    x = R._batch(net, x, net.n_in, "x", None)
    d = R._batch(net, d, net.n_out, "d", x.shape[0])
    kw: dict[str, Any] = dict(eps=eps, atol=atol, max_iter=max_iter)
    free = relax(net, x, **kw).state if s_free is None else s_free
    plus = relax(net, x, d, b, s0=free, nudge=nudge, **kw).state
    gp = R.parameter_gradient(net, x, plus, d, b)
    if estimator == "one-sided":
        g0 = R.parameter_gradient(net, x, free, d, 0.0)
        return {k: (gp[k] - g0[k]) / b for k in gp}
    minus = relax(net, x, d, -b, s0=free, nudge=nudge, **kw).state
    gm = R.parameter_gradient(net, x, minus, d, -b)
    return {k: (gp[k] - gm[k]) / (2 * b) for k in gp}


def relative_error(estimate: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]):
    """:math:`\\|\\hat g - g\\| / \\|g\\|` over all parameters concatenated (Euclidean)."""
    keys = sorted(reference)
    if sorted(estimate) != keys:
        raise ValueError(f"relative_error: parameters differ ({sorted(estimate)} vs {keys})")
    diff = np.concatenate([np.ravel(estimate[k] - reference[k]) for k in keys])
    ref = np.concatenate([np.ravel(reference[k]) for k in keys])
    return float(np.linalg.norm(diff) / np.linalg.norm(ref))
