"""Recirculation: learning codes in a closed loop of unit groups (Hinton & McClelland, 1988).

The rule of G. E. Hinton and J. L. McClelland, "Learning representations by
recirculation", *Neural Information Processing Systems* (NIPS 1987), D. Z. Anderson (ed.),
American Institute of Physics, 1988, pp. 358-366, on eqprop's layers and dense couplings.

**As layers and couplings** (:func:`loop_network`): the loop is the chain
``v -> h1 -> ... -> h{K-1} -> r`` of :mod:`eqprop.graph`, one dense coupling per loop edge
whose forward drive (:func:`eqprop.graph.dense.forward_drive`) is the edge's map; the
visible group is the input layer ``v`` on its first visit and the output layer ``r`` (with
the visible bias) on its second. :func:`graph_recirculate` runs the passes on the
couplings, :func:`recirculation_gradient` gives the update as a
:class:`~eqprop.graph.gradient.GraphGradient` by parameter name (for
:class:`eqprop.optim.SGD`). The :class:`LoopWeights` functions below (which also run a
stack of loops at once) are adapters over the same schedule and coupling functions.

A **loop** is ``K >= 2`` groups of units: group 0 is the *visible* group, groups
``1 .. K-1`` are *hidden*, and coupling ``k`` maps group ``k`` to group ``(k + 1) % K``
(so for ``K = 2`` the couplings are the encoder, visible -> hidden, and the decoder,
hidden -> visible; the two are separate matrices, not each other's transpose). A vector
goes round the loop twice, one group per time step ``t = 0, 1, ..., 2K - 1``; the group
active at time ``t`` is ``t % K``. With :math:`y(t)` the activity at time ``t``,
:math:`a(t) = y(t-1) W + b` its net input (``W`` of shape ``(fan_in, fan_out)``, ``b`` the
bias of the receiving group) and :math:`\\sigma` the group's activation:

.. math::

    y(0) &= v \\\\
    y(t) &= \\sigma(a(t)), \\qquad 1 \\le t \\le K - 1
        \\quad\\text{(first pass)} \\\\
    y(K) &= \\lambda_v\\, y(0) + (1 - \\lambda_v)\\, \\sigma(a(K))
        \\quad\\text{(regressed reconstruction)} \\\\
    y(t) &= \\lambda_h\\, y(t - K) + (1 - \\lambda_h)\\, \\sigma(a(t)),
        \\qquad K + 1 \\le t \\le 2K - 1

The regression parameter :math:`\\lambda` makes the second pass an average of the first
pass and the recirculated vector: the paper regresses both the visible group (its
"reconstruction") and the hidden group on the second pass. For ``K = 2`` these are the
paper's four states: :math:`y_i(0)`, :math:`y_j(1) = \\sigma(\\sum_i w_{ji} y_i(0))`,
:math:`y_i(2) = \\lambda y_i(0) + (1 - \\lambda)\\sigma(\\sum_j w_{ij} y_j(1))` and
:math:`y_j(3) = \\lambda y_j(1) + (1 - \\lambda)\\sigma(\\sum_i w_{ji} y_i(2))` (biases as
weights from an always-on unit).

**Learning rule.** Every weight changes by its presynaptic activity times the difference
of its postsynaptic activity between the two passes:

.. math::

    \\Delta w_{ij} = \\varepsilon\\, y_j(1)\\,[y_i(0) - y_i(2)] \\quad\\text{(decoder)},\\qquad
    \\Delta w_{ji} = \\varepsilon\\, y_i(2)\\,[y_j(1) - y_j(3)] \\quad\\text{(encoder)},

and a bias by the postsynaptic difference alone. For a group ``g`` visited at times
``t1 = g`` and ``t2 = g + K`` (``t1 = 0``, ``t2 = K`` for the visible group) the
presynaptic activity is the state that drove ``y(t2)``, that is ``y(t2 - 1)``; deeper loops
(``K > 2``) use the same two-pass schedule and rule group by group.

**Relation to gradient descent.** The error minimised is the squared reconstruction error
of the first pass, :math:`E = \\sum_{c, i} (v_i - r_i)^2` with
:math:`r = \\sigma(a(K))` computed from the first-pass states
(:func:`squared_reconstruction_error`, exact gradient :func:`reconstruction_gradient`).
The decoder rule is a delta rule: :math:`y_i(0) - y_i(2) = (1 - \\lambda)(v_i - r_i)`, so it
is gradient descent on ``E`` exactly when the visible units are linear (for logistic ones it
lacks the factor :math:`\\sigma'(a_i)`). For the encoder,
:math:`y_j(1) - y_j(3) \\approx (1 - \\lambda_h)(1 - \\lambda)\\,\\sigma'(a_j)
\\sum_i w_{ji} (v_i - r_i)` to first order in :math:`1 - \\lambda`: backprop's error signal,
carried back by the encoder weights instead of the decoder's transpose. With linear visible
units, symmetric weights (encoder = decoder transpose) and :math:`\\lambda \\to 1` the
update is therefore parallel to :math:`-\\partial E / \\partial W` group by group: this is
the kind of restricted case in which, as the paper's abstract states, recirculation performs
gradient descent in the squared reconstruction error (tested in
``tests/test_recirculation.py``; ``docs/recirculation.rst`` plots the cosine outside that
case).

Everything here is float64 NumPy, batched over the leading axis (``(batch, n)`` states);
updates are summed over the batch (the weight change of one sweep through the cases, as in
the paper's batch training) unless ``reduce="mean"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from eqprop.graph import dense
from eqprop.graph.gradient import GraphGradient
from eqprop.graph.model import Coupling, GraphNetwork, Layer, layer_activation
from eqprop.network import activation_functions

__all__ = [
    "ACTIVATIONS",
    "GRAPH_ACTIVATIONS",
    "RECONSTRUCTION",
    "VISIBLE",
    "LoopPasses",
    "LoopWeights",
    "RecirculationRun",
    "RecirculationSettings",
    "SeedStudy",
    "cosine_by_parameter",
    "encoder_patterns",
    "graph_recirculate",
    "init_loop",
    "loop_network",
    "loop_of",
    "parse_sizes",
    "recirculate",
    "recirculation_gradient",
    "recirculation_update",
    "reconstruction_gradient",
    "reconstruction_graph_gradient",
    "squared_reconstruction_error",
    "train_seeds",
    "train_until_criterion",
]

#: Activations a group may use: the logistic function of the paper, or the identity
#: (linear units, the case of the paper's gradient-descent analysis).
ACTIVATIONS = ("sigmoid", "linear")

#: How updates and gradients are reduced over the batch.
REDUCTIONS = ("sum", "mean")


def _check_name(kind: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(map(repr, choices))}")


def _activation(name: str) -> tuple[Callable[[np.ndarray], np.ndarray], Callable]:
    """``(f, f')`` of a group's activation (the logistic one is eqprop's ``sigmoid``)."""
    _check_name("activation", name, ACTIVATIONS)
    if name == "linear":
        return (lambda a: a), np.ones_like
    f, df, _, _ = activation_functions("sigmoid")
    return f, df


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not (np.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(
            f"{name} must lie in [0, 1) (lambda = 1 would make both passes equal and the "
            f"update zero), got {value!r}"
        )
    return value


@dataclass(frozen=True)
class RecirculationSettings:
    """Settings of the two-pass loop and its learning rule.

    Parameters
    ----------
    learning_rate : float
        :math:`\\varepsilon > 0`, multiplies every weight and bias change.
    regression : float
        :math:`\\lambda_v \\in [0, 1)`: the visible group's second-pass state is
        ``regression * v + (1 - regression) * reconstruction``. Paper's encoder runs: 0.75.
    hidden_regression : float or None
        :math:`\\lambda_h \\in [0, 1)` of the hidden groups' second-pass states; ``None``
        (default) uses ``regression`` (the paper regresses both groups).
    visible_activation, hidden_activation : {"sigmoid", "linear"}
        Activations of the visible group and of every hidden group (logistic in the paper).
    """

    learning_rate: float = 1.0
    regression: float = 0.75
    hidden_regression: float | None = None
    visible_activation: str = "sigmoid"
    hidden_activation: str = "sigmoid"

    def __post_init__(self):
        lr = float(self.learning_rate)
        if not (np.isfinite(lr) and lr > 0.0):
            raise ValueError(
                f"learning_rate must be a finite number > 0, got {self.learning_rate!r}"
            )
        object.__setattr__(self, "learning_rate", lr)
        object.__setattr__(self, "regression", _check_fraction("regression", self.regression))
        if self.hidden_regression is not None:
            value = _check_fraction("hidden_regression", self.hidden_regression)
            object.__setattr__(self, "hidden_regression", value)
        _check_name("visible_activation", self.visible_activation, ACTIVATIONS)
        _check_name("hidden_activation", self.hidden_activation, ACTIVATIONS)

    @property
    def hidden_lambda(self) -> float:
        """The hidden groups' regression (``regression`` when not set)."""
        return self.regression if self.hidden_regression is None else self.hidden_regression

    def activation_of(self, group: int) -> str:
        """Activation name of ``group`` (0 is the visible group)."""
        return self.visible_activation if group == 0 else self.hidden_activation


@dataclass(frozen=True)
class LoopWeights:
    """Parameters of a closed loop of ``K >= 2`` groups, or an update or gradient of them.

    Parameters
    ----------
    weights : tuple of ndarray
        ``weights[k]``, float64 of shape ``(n_k, n_{(k+1) % K})``, maps group ``k`` to group
        ``(k + 1) % K``. For ``K = 2``: ``weights[0]`` is the encoder (visible -> hidden),
        ``weights[1]`` the decoder (hidden -> visible).
    biases : tuple of ndarray
        ``biases[g]``, float64 of shape ``(n_g,)``, bias of group ``g`` (0 is visible).

    A *stack* of independent loops of the same sizes (one per seed, say) has the same
    leading axes ``lead`` on every array: weights ``(*lead, n_k, n_{k+1})``, biases
    ``(*lead, n_g)``; every function here then works on all of them at once.

    Raises
    ------
    ValueError
        Fewer than two groups, arrays of the wrong rank or leading shape, or sizes that do
        not close the loop (the error names the coupling and both sizes).
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def __post_init__(self):
        weights = tuple(np.ascontiguousarray(w, dtype=np.float64) for w in self.weights)
        biases = tuple(np.ascontiguousarray(b, dtype=np.float64) for b in self.biases)
        n_groups = len(weights)
        if n_groups < 2:
            raise ValueError(
                f"a recirculation loop needs at least 2 groups (visible and hidden), got "
                f"{n_groups} weight matrices"
            )
        if len(biases) != n_groups:
            raise ValueError(
                f"a loop of {n_groups} groups needs {n_groups} bias vectors, got {len(biases)}"
            )
        lead = weights[0].shape[:-2]
        for k, w in enumerate(weights):
            if w.ndim < 2 or w.shape[:-2] != lead:
                raise ValueError(
                    f"weights[{k}] must have shape (*lead, fan_in, fan_out) with the leading "
                    f"shape {lead} of weights[0], got shape {w.shape}"
                )
        for k, w in enumerate(weights):
            k_next = (k + 1) % n_groups
            nxt = weights[k_next]
            if w.shape[-1] != nxt.shape[-2]:
                raise ValueError(
                    f"the loop does not close: weights[{k}] has shape {w.shape} (group "
                    f"{k_next} of size {w.shape[-1]}) but weights[{k_next}] has shape "
                    f"{nxt.shape} (it reads a group of size {nxt.shape[-2]})"
                )
        for g, b in enumerate(biases):
            size = weights[g].shape[-2]
            if b.shape != (*lead, size):
                raise ValueError(
                    f"biases[{g}] must have shape {(*lead, size)} for group {g} of size {size}, "
                    f"got {b.shape}"
                )
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "biases", biases)

    @property
    def n_groups(self) -> int:
        """Number of groups ``K`` in the loop."""
        return len(self.weights)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Group sizes, visible first."""
        return tuple(w.shape[-2] for w in self.weights)

    @property
    def lead_shape(self) -> tuple[int, ...]:
        """Leading (stack) shape shared by every array; ``()`` for a single loop."""
        return self.weights[0].shape[:-2]

    def parameters(self) -> dict[str, np.ndarray]:
        """Named arrays: ``W{k}`` (coupling ``k``) and ``b{g}`` (bias of group ``g``)."""
        named = {f"W{k}": w for k, w in enumerate(self.weights)}
        named.update({f"b{g}": b for g, b in enumerate(self.biases)})
        return named

    def plus(self, update: LoopWeights) -> LoopWeights:
        """``self + update`` array by array (apply a recirculation update)."""
        if update.sizes != self.sizes or update.lead_shape != self.lead_shape:
            raise ValueError(
                f"update of a {update.sizes} loop (stack {update.lead_shape}) applied to a "
                f"{self.sizes} loop (stack {self.lead_shape})"
            )
        return LoopWeights(
            tuple(w + dw for w, dw in zip(self.weights, update.weights)),
            tuple(b + db for b, db in zip(self.biases, update.biases)),
        )


@dataclass(frozen=True)
class LoopPasses:
    """States of the two passes round a loop of ``K`` groups.

    Attributes
    ----------
    states : tuple of ndarray
        ``2K`` arrays; ``states[t]`` of shape ``(batch, n_{t % K})`` is the activity at time
        ``t`` (``states[0]`` is the original visible batch).
    net_inputs : tuple of ndarray
        ``net_inputs[t - 1]`` is :math:`a(t) = y(t-1) W + b`, for ``t = 1 .. 2K - 1``.
    reconstruction : ndarray
        The unregressed reconstruction :math:`r = \\sigma(a(K))`, shape ``(batch, n_0)``.
    """

    states: tuple[np.ndarray, ...]
    net_inputs: tuple[np.ndarray, ...]
    reconstruction: np.ndarray


def parse_sizes(text: str) -> tuple[int, ...]:
    """Group sizes from ``"4-2-4"`` (encoder notation: visible, hidden..., visible again) or
    ``"4-2"`` (the loop's groups).

    A trailing size equal to the first closes the loop and is dropped: ``"4-2-4"`` and
    ``"4-2"`` are the same two-group loop; ``"8-4-3-8"`` is a three-group loop.
    """
    try:
        sizes = [int(s) for s in text.split("-")]
    except ValueError as exc:
        raise ValueError(f"sizes must look like '4-2-4', got {text!r}") from exc
    if len(sizes) >= 3 and sizes[-1] == sizes[0]:
        sizes = sizes[:-1]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(
            f"sizes {text!r}: a loop needs a visible and at least one hidden group, each of "
            f"size >= 1 (e.g. '4-2-4')"
        )
    return tuple(sizes)


def init_loop(sizes: Sequence[int], rng: np.random.Generator, scale: float = 0.5) -> LoopWeights:
    """A loop with weights and biases drawn uniformly from ``[-scale, scale]``.

    Parameters
    ----------
    sizes : sequence of int
        Group sizes, visible first (``(4, 2)`` for the 4-2-4 encoder).
    rng : numpy.random.Generator
    scale : float
        Half-width of the uniform initialisation (> 0).
    """
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"a loop needs >= 2 groups of size >= 1, got sizes {sizes}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    n_groups = len(sizes)
    weights = tuple(
        rng.uniform(-scale, scale, size=(sizes[k], sizes[(k + 1) % n_groups]))
        for k in range(n_groups)
    )
    biases = tuple(rng.uniform(-scale, scale, size=n) for n in sizes)
    return LoopWeights(weights, biases)


def encoder_patterns(n: int) -> np.ndarray:
    """The ``n`` one-hot patterns of an ``n``-unit encoder problem, shape ``(n, n)``."""
    if n < 1:
        raise ValueError(f"an encoder problem needs n >= 1 visible units, got {n}")
    return np.eye(n)


def _check_loop(loop: object) -> None:
    """Refuse anything but a :class:`LoopWeights` (a layered network is not a loop)."""
    if not isinstance(loop, LoopWeights):
        hint = (
            " (a layered eqprop network has no decoder closing it into a loop)"
            if hasattr(loop, "sizes") and hasattr(loop, "weights")
            else ""
        )
        if isinstance(loop, GraphNetwork):
            hint = " (for a graph network use graph_recirculate and recirculation_gradient)"
        raise ValueError(
            f"recirculation runs on a closed loop of groups, an "
            f"eqprop.recirculation.LoopWeights (build one with init_loop(sizes)), got "
            f"{type(loop).__name__}{hint}"
        )


def _check_visible(sizes: Sequence[int], v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim < 2 or v.shape[-1] != sizes[0]:
        raise ValueError(
            f"visible batch must have shape (batch, {sizes[0]}) (or (*lead, batch, "
            f"{sizes[0]}) for a stack of loops) for a loop of sizes {tuple(sizes)}, "
            f"got {v.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError("visible batch has non-finite entries")
    return np.ascontiguousarray(v)


# ------------------------------------------------------------------------------------
# The loop as layers and couplings (eqprop.graph): one dense coupling per loop edge.

#: Name of the visible layer (the graph's input: the first pass's clamped vector).
VISIBLE = "v"
#: Name of the visible group's second visit (the graph's output: the reconstruction).
RECONSTRUCTION = "r"
#: Layer activation of each group activation (eqprop.graph calls a linear unit identity).
GRAPH_ACTIVATIONS = {"sigmoid": "sigmoid", "linear": "identity"}


def _group_names(n_groups: int) -> list[str]:
    """Layer names of the unrolled loop: ``v, h1, ..., h{K-1}, r``."""
    return [VISIBLE, *(f"h{g}" for g in range(1, n_groups)), RECONSTRUCTION]


def loop_network(loop: LoopWeights, settings: RecirculationSettings) -> GraphNetwork:
    """The loop as a :class:`~eqprop.graph.GraphNetwork`: a chain
    ``v -> h1 -> ... -> h{K-1} -> r`` of dense couplings, one per loop edge.

    Coupling ``k`` (``"v->h1"``, ..., ``"h{K-1}->r"``) holds ``loop.weights[k]``: its
    forward drive :func:`eqprop.graph.dense.forward_drive` is the loop's map from group
    ``k`` to group ``k + 1`` (for ``K = 2``: ``"v->h1"`` the encoder, ``"h1->r"`` the
    decoder, two separate matrices). The visible group appears twice: as the input layer
    ``v`` (the clamped first-pass vector, no bias) and as the output layer ``r`` (the
    reconstruction it receives, with the visible bias ``loop.biases[0]``); the loop closes
    by feeding ``r``'s regressed state back in as ``v``'s activity in the second pass
    (:func:`graph_recirculate`). Hidden group ``g`` is layer ``h{g}`` with bias
    ``loop.biases[g]``. The couplings' feedback is ``tied`` and never read (the loop's way
    back is the decoder, not a transpose). Parameters are copies, float64; a single loop
    only (no stack).
    """
    _check_loop(loop)
    if loop.lead_shape != ():
        raise ValueError(
            f"loop_network builds one network, got a stack of loops of shape {loop.lead_shape}"
        )
    K = loop.n_groups
    names = _group_names(K)
    act = [GRAPH_ACTIVATIONS[settings.activation_of(g % K)] for g in range(K + 1)]
    layers = [Layer(VISIBLE, loop.sizes[0], role="input")]
    for g in range(1, K + 1):
        role = "output" if g == K else "hidden"
        layers.append(Layer(names[g], loop.sizes[g % K], role, act[g], bias=loop.biases[g % K]))
    couplings = [Coupling(names[k], names[k + 1], loop.weights[k]) for k in range(K)]
    return GraphNetwork(layers, couplings, dtype="float64")


def _loop_parts(net: GraphNetwork, settings: RecirculationSettings | None = None):
    """``(couplings, layers)`` of a loop network in loop order (``layers[g]`` is the layer
    holding group ``g``'s bias: ``r`` for ``g = 0``); ValueError naming what is not a loop."""
    if not isinstance(net, GraphNetwork):
        raise ValueError(f"expected an eqprop.graph.GraphNetwork, got {type(net).__name__}")
    out = net.output_layer
    vis = net.input_layer
    not_loop = "recirculation needs a loop network (see eqprop.recirculation.loop_network)"
    if out.role != "output" or out.size != vis.size:
        raise ValueError(
            f"{not_loop}: the output layer {out.name!r} must be the visible group's "
            f"reconstruction, of the input's size {vis.size} (got {out.role} of size {out.size})"
        )
    chain, name = [], vis.name
    for _ in range(len(net.couplings)):
        outgoing = [c for c in net.couplings if c.source == name]
        if len(outgoing) != 1:
            raise ValueError(
                f"{not_loop}: layer {name!r} feeds {len(outgoing)} couplings; a loop is a chain "
                f"{vis.name} -> hidden ... -> {out.name} with one coupling per edge"
            )
        chain.append(outgoing[0])
        name = outgoing[0].target
    if name != out.name or len(chain) != len(net.layers) - 1 or len(chain) < 2:
        raise ValueError(
            f"{not_loop}: the couplings do not form one chain {vis.name} -> hidden ... -> "
            f"{out.name} through every layer"
        )
    layers = [net.layer(c.target) for c in chain]  # h1 .. h{K-1}, r
    layers = [layers[-1], *layers[:-1]]
    for c in chain:
        if c.type != "dense" or c.feedback != "tied":
            raise ValueError(
                f"coupling {c.name!r}: recirculation reads dense forward drives only; use a "
                f"dense coupling with feedback 'tied' (unused), got {c.type!r} / {c.feedback!r}"
            )
    inverse = {v: k for k, v in GRAPH_ACTIVATIONS.items()}
    for g, layer in enumerate(layers):
        if layer.bias is None or layer.channel_bias or layer.box is not None:
            raise ValueError(
                f"layer {layer.name!r}: a recirculation group needs one bias per unit and no box"
            )
        if layer.activation not in inverse:
            raise ValueError(
                f"layer {layer.name!r}: activation {layer.activation!r} is not a recirculation "
                f"group's; use one of {', '.join(map(repr, GRAPH_ACTIVATIONS.values()))}"
            )
        if settings is not None and inverse[layer.activation] != settings.activation_of(g):
            raise ValueError(
                f"layer {layer.name!r} has activation {layer.activation!r} but the settings say "
                f"{settings.activation_of(g)!r} for group {g}; make them agree"
            )
    if net.dtype.kind != "f":
        raise ValueError(f"recirculation runs on real numbers, got dtype {net.dtype.name}")
    return chain, layers


def loop_of(net: GraphNetwork) -> LoopWeights:
    """The :class:`LoopWeights` (copies) of a :func:`loop_network` network; ValueError
    if ``net`` is not a loop."""
    chain, layers = _loop_parts(net)
    return LoopWeights(tuple(c.W for c in chain), tuple(la.bias for la in layers))  # type: ignore[misc]


def _two_passes(couplings, biases, funcs, lambdas, v) -> LoopPasses:
    """The schedule of the module docstring, written once for both routes.

    ``couplings[k]`` (a dense :class:`~eqprop.graph.model.Coupling`) drives group
    ``(k + 1) % K`` from group ``k`` through :func:`eqprop.graph.dense.forward_drive`;
    ``biases[g]`` broadcasts against a ``(..., batch, n_g)`` state; ``funcs[g]`` and
    ``lambdas[g]`` are group ``g``'s activation and regression.
    """
    K = len(couplings)
    states: list[np.ndarray] = [v]
    nets: list[np.ndarray] = []
    reconstruction = v
    for t in range(1, 2 * K):
        g = t % K
        net = dense.forward_drive(couplings[(g - 1) % K], states[t - 1]) + biases[g]
        out = funcs[g](net)
        if t < K:
            state = out
        else:
            state = lambdas[g] * states[t - K] + (1.0 - lambdas[g]) * out
            if t == K:
                reconstruction = out
        nets.append(net)
        states.append(state)
    return LoopPasses(tuple(states), tuple(nets), reconstruction)


def _update_terms(passes: LoopPasses, n_groups: int):
    """``(k, g, pre, diff)`` for each group ``g`` and the coupling ``k = (g - 1) % K``
    feeding it: presynaptic ``y(t2 - 1)`` and postsynaptic difference
    ``y(t1) - y(t2)`` (``t1 = g``, ``t2 = g + K``). The rule's one statement."""
    if len(passes.states) != 2 * n_groups:
        raise ValueError(
            f"passes of a {len(passes.states) // 2}-group loop given for a {n_groups}-group loop"
        )
    for g in range(n_groups):
        t1, t2 = g, g + n_groups
        yield (g - 1) % n_groups, g, passes.states[t2 - 1], passes.states[t1] - passes.states[t2]


def _bias_sum(diff: np.ndarray) -> np.ndarray:
    """A group's postsynaptic difference summed over the batch, :math:`\\sum_c [y(t_1) -
    y(t_2)]` (the bias is a weight from an always-on unit)."""
    return diff.sum(axis=-2)


def _lambdas(settings: RecirculationSettings, n_groups: int) -> list[float]:
    return [settings.regression] + [settings.hidden_lambda] * (n_groups - 1)


def graph_recirculate(net: GraphNetwork, v, settings: RecirculationSettings) -> LoopPasses:
    """The two passes of :func:`recirculate` on a loop network (:func:`loop_network`).

    Every net input is a coupling's :func:`eqprop.graph.dense.forward_drive` plus the
    receiving layer's bias; the activations are the layers' own
    (:func:`eqprop.graph.model.layer_activation`), which must agree with ``settings``; the
    regressions are ``settings.regression`` (visible) and ``settings.hidden_lambda``.
    ``v`` of shape ``(batch, n_0)``; the states are float64.
    """
    chain, layers = _loop_parts(net, settings)
    v = _check_visible([la.size for la in layers], v)
    funcs = [layer_activation(la.activation)[0] for la in layers]
    biases = [la.bias for la in layers]
    return _two_passes(chain, biases, funcs, _lambdas(settings, len(chain)), v)


def recirculation_gradient(net: GraphNetwork, passes: LoopPasses) -> GraphGradient:
    """Recirculation's update of a loop network as a gradient estimate, by parameter name.

    For the coupling ``c`` feeding group ``g`` (visited at ``t1`` and ``t2 = t1 + K``):

    .. math::

        g_{c.W} = -\\tfrac{1}{B}\\, y(t_2 - 1)^\\top [y(t_1) - y(t_2)], \\qquad
        g_{g.b} = -\\tfrac{1}{B} \\textstyle\\sum_c [y(t_1) - y(t_2)],

    the first from the coupling module's :func:`eqprop.graph.dense.weight_gradient`
    (presynaptic activity times postsynaptic difference, bilinear), ``B`` the batch size.
    SGD (``p -= lr * g``, :class:`eqprop.optim.SGD`) with rate ``lr`` then applies
    Hinton & McClelland's :math:`\\Delta w = \\varepsilon\\, y_{pre} (y^{(1)}_{post} -
    y^{(2)}_{post})` with :math:`\\varepsilon = lr` and the batch mean. ``passes`` from
    :func:`graph_recirculate` on ``net``.
    """
    chain, layers = _loop_parts(net)
    grads: dict[str, np.ndarray] = {}
    for k, g, pre, diff in _update_terms(passes, len(chain)):
        grads[f"{chain[k].name}.W"] = dense.weight_gradient(chain[k], pre, diff)
        batch = diff.shape[0]
        grads[f"{layers[g].name}.b"] = layers[g].bias_gradient(-_bias_sum(diff) / batch)
    return GraphGradient({name: grads[name] for name in net.parameters()})


def _stack_couplings(loop: LoopWeights) -> list[Coupling]:
    """The loop's edges as dense couplings holding the (possibly stacked) weights, not
    checked as a network: :func:`eqprop.graph.dense.forward_drive` broadcasts over the
    stack's leading axes."""
    K = loop.n_groups
    names = _group_names(K)
    return [Coupling(names[k], names[k + 1], loop.weights[k]) for k in range(K)]


def recirculate(loop: LoopWeights, v, settings: RecirculationSettings) -> LoopPasses:
    """Run the two passes of the loop on a visible batch ``v`` of shape ``(batch, n_0)``.

    The equations are in the module docstring: the first pass is ``y(1 .. K-1)`` and the
    reconstruction ``sigma(a(K))``; the second pass regresses every group towards its
    first-pass state with ``settings.regression`` (visible) and
    ``settings.hidden_lambda`` (hidden). The same schedule and coupling drives as
    :func:`graph_recirculate` (a loop's edges are dense couplings), on a loop or a stack
    of loops.
    """
    _check_loop(loop)
    v = _check_visible(loop.sizes, v)
    K = loop.n_groups
    funcs = [_activation(settings.activation_of(g))[0] for g in range(K)]
    biases = [b[..., None, :] for b in loop.biases]
    return _two_passes(_stack_couplings(loop), biases, funcs, _lambdas(settings, K), v)


def _transpose(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def _reduce_factor(reduce: str, batch: int) -> float:
    _check_name("reduce", reduce, REDUCTIONS)
    return 1.0 if reduce == "sum" else 1.0 / batch


def recirculation_update(
    loop: LoopWeights, passes: LoopPasses, settings: RecirculationSettings, reduce: str = "sum"
) -> LoopWeights:
    """The recirculation weight and bias changes (to be *added* to the loop).

    For group ``g`` visited at ``t1`` and ``t2 = t1 + K`` (``t1 = g``, or 0 for the visible
    group), with the coupling ``k = (g - 1) % K`` feeding it:

    .. math::

        \\Delta W_k = \\varepsilon\\, y(t_2 - 1)^\\top [y(t_1) - y(t_2)], \\qquad
        \\Delta b_g = \\varepsilon \\textstyle\\sum_c [y(t_1) - y(t_2)],

    summed over the batch (``reduce="sum"``, the paper's update after a sweep through the
    cases) or averaged (``"mean"``). For ``K = 2`` this is Hinton & McClelland's
    :math:`\\Delta w_{ij} = \\varepsilon y_j(1)[y_i(0) - y_i(2)]` (decoder) and
    :math:`\\Delta w_{ji} = \\varepsilon y_i(2)[y_j(1) - y_j(3)]` (encoder).

    The same terms as :func:`recirculation_gradient` (:math:`-\\varepsilon B` times it,
    ``B`` the batch size, for ``"sum"``): the coupling module's
    :func:`eqprop.graph.dense.activity_product` of the presynaptic activity and the
    postsynaptic difference, before the batch mean, on a loop or a stack of loops.
    """
    _check_loop(loop)
    K = loop.n_groups
    factor = settings.learning_rate * _reduce_factor(reduce, passes.states[0].shape[-2])
    couplings = _stack_couplings(loop)
    d_weights: list[np.ndarray] = [np.empty(0)] * K
    d_biases: list[np.ndarray] = [np.empty(0)] * K
    for k, g, pre, diff in _update_terms(passes, K):
        d_weights[k] = factor * dense.activity_product(couplings[k], pre, diff)
        d_biases[g] = factor * _bias_sum(diff)
    return LoopWeights(tuple(d_weights), tuple(d_biases))


def squared_reconstruction_error(loop: LoopWeights, v, settings: RecirculationSettings):
    """:math:`E = \\sum_{c, i} (v_{ci} - r_{ci})^2`, the first pass's squared reconstruction
    error summed over the batch and the visible units (no factor 1/2).

    A float for one loop; an array of the stack's leading shape for a stack of loops.
    """
    passes = recirculate(loop, v, settings)
    error = np.sum((passes.states[0] - passes.reconstruction) ** 2, axis=(-2, -1))
    return float(error) if np.ndim(error) == 0 else error


def reconstruction_gradient(
    loop: LoopWeights, v, settings: RecirculationSettings, reduce: str = "sum"
) -> LoopWeights:
    """Exact gradient :math:`\\partial E / \\partial \\theta` of
    :func:`squared_reconstruction_error` through the first pass of the loop (backprop).

    With :math:`\\delta(K) = -2 (v - r) \\odot \\sigma'(a(K))` and
    :math:`\\delta(t-1) = \\delta(t) W^\\top \\odot \\sigma'(a(t-1))`, the coupling feeding
    the group active at ``t`` gets :math:`y(t-1)^\\top \\delta(t)` and that group's bias
    :math:`\\sum_c \\delta(t)`, for ``t = K, ..., 1``. The regression does not enter: ``E``
    is defined on the first pass. ``reduce="mean"`` divides by the batch size.
    """
    passes = recirculate(loop, v, settings)
    n_groups = loop.n_groups
    derivs = [_activation(settings.activation_of(g))[1] for g in range(n_groups)]
    factor = _reduce_factor(reduce, passes.states[0].shape[-2])
    d_weights: list[np.ndarray] = [np.empty(0)] * n_groups
    d_biases: list[np.ndarray] = [np.empty(0)] * n_groups
    delta = (
        -2.0
        * (passes.states[0] - passes.reconstruction)
        * derivs[0](passes.net_inputs[n_groups - 1])
    )
    for t in range(n_groups, 0, -1):
        g = t % n_groups
        k = (g - 1) % n_groups
        d_weights[k] = factor * (_transpose(passes.states[t - 1]) @ delta)
        d_biases[g] = factor * delta.sum(axis=-2)
        if t > 1:
            delta = (delta @ _transpose(loop.weights[k])) * derivs[t - 1](passes.net_inputs[t - 2])
    return LoopWeights(tuple(d_weights), tuple(d_biases))


def _graph_names(net: GraphNetwork, arrays: LoopWeights) -> GraphGradient:
    """A single loop's arrays under ``net``'s parameter names (``W_k`` -> coupling ``k``'s
    ``.W``, ``b_g`` -> the bias of the layer holding group ``g``)."""
    chain, layers = _loop_parts(net)
    named = {f"{c.name}.W": w for c, w in zip(chain, arrays.weights, strict=True)}
    named.update({f"{la.name}.b": b for la, b in zip(layers, arrays.biases, strict=True)})
    return GraphGradient({name: named[name] for name in net.parameters()})


def reconstruction_graph_gradient(
    net: GraphNetwork, v, settings: RecirculationSettings
) -> GraphGradient:
    """The exact gradient of the batch-mean squared reconstruction error of a loop network
    (:func:`reconstruction_gradient` with ``reduce="mean"``), by parameter name: the
    backprop reference that :func:`recirculation_gradient` is compared with."""
    _loop_parts(net, settings)
    return _graph_names(net, reconstruction_gradient(loop_of(net), v, settings, reduce="mean"))


def cosine_by_parameter(a: LoopWeights, b: LoopWeights) -> dict[str, float]:
    """Cosine similarity of two updates, per named array (``W0``, ``W1``, ..., ``b0``, ...)
    and over all of them concatenated (``"all"``); ``nan`` where either array is zero."""

    def cosine(x: np.ndarray, y: np.ndarray) -> float:
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        return float(np.dot(x.ravel(), y.ravel()) / (nx * ny)) if nx > 0 and ny > 0 else np.nan

    pa, pb = a.parameters(), b.parameters()
    out = {name: cosine(pa[name], pb[name]) for name in pa}
    out["all"] = cosine(
        np.concatenate([x.ravel() for x in pa.values()]),
        np.concatenate([x.ravel() for x in pb.values()]),
    )
    return out


def _train_stack(loop: LoopWeights, patterns, settings, criterion, max_updates):
    """Batch recirculation on a loop or a stack of loops; a member stops changing once its
    error is below ``criterion``. Returns ``(updates, errors, loop)``: ``updates`` of the
    stack's shape (-1 where the criterion was never reached), ``errors`` of shape
    ``(n_recorded, *lead)``."""
    if not (np.isfinite(criterion) and criterion > 0):
        raise ValueError(f"criterion must be a finite number > 0, got {criterion!r}")
    if int(max_updates) < 0:
        raise ValueError(f"max_updates must be >= 0, got {max_updates!r}")
    _check_loop(loop)
    patterns = _check_visible(loop.sizes, patterns)
    lead = loop.lead_shape
    updates = np.full(lead, -1, dtype=np.int64)
    errors: list[np.ndarray] = []
    for update in range(int(max_updates) + 1):
        passes = recirculate(loop, patterns, settings)
        error = np.sum((patterns - passes.reconstruction) ** 2, axis=(-2, -1))
        errors.append(error)
        newly = (error < criterion) & (updates < 0)
        updates = np.where(newly, update, updates)
        active = updates < 0
        if update == max_updates or not np.any(active):
            break
        step = recirculation_update(loop, passes, settings)
        mask = active.astype(np.float64)
        step = LoopWeights(
            tuple(dw * mask[..., None, None] for dw in step.weights),
            tuple(db * mask[..., None] for db in step.biases),
        )
        loop = loop.plus(step)
    return updates, np.asarray(errors), loop


@dataclass(frozen=True)
class RecirculationRun:
    """Outcome of :func:`train_until_criterion`.

    Attributes
    ----------
    updates_to_criterion : int or None
        Number of weight updates after which the squared reconstruction error first fell
        below the criterion (0 if it started below); ``None`` if it never did within
        ``max_updates``.
    errors : ndarray
        Squared reconstruction error before each update and after the last one.
    loop : LoopWeights
        The final weights.
    """

    updates_to_criterion: int | None
    errors: np.ndarray
    loop: LoopWeights

    @property
    def converged(self) -> bool:
        """Whether the criterion was reached."""
        return self.updates_to_criterion is not None


def train_until_criterion(
    loop: LoopWeights,
    patterns,
    settings: RecirculationSettings,
    criterion: float = 0.1,
    max_updates: int = 5000,
) -> RecirculationRun:
    """Batch recirculation learning on ``patterns`` until :func:`squared_reconstruction_error`
    (summed over all patterns and visible units) is below ``criterion``.

    One update = both passes for every pattern, then the summed
    :func:`recirculation_update` is added to the weights. ``loop`` must be a single loop
    (see :func:`train_seeds` for many).
    """
    if loop.lead_shape != ():
        raise ValueError(
            f"train_until_criterion trains one loop, got a stack of shape {loop.lead_shape}; "
            f"use train_seeds"
        )
    updates, errors, final = _train_stack(loop, patterns, settings, criterion, max_updates)
    count = int(updates)
    return RecirculationRun(None if count < 0 else count, errors, final)


@dataclass(frozen=True)
class SeedStudy:
    """Outcome of :func:`train_seeds`.

    Attributes
    ----------
    seeds : ndarray of int
    updates_to_criterion : ndarray of float
        Per seed; ``nan`` where the criterion was not reached within ``max_updates``.
    loop : LoopWeights
        The final weights, stacked over seeds (leading axis = seed).
    """

    seeds: np.ndarray
    updates_to_criterion: np.ndarray
    loop: LoopWeights

    @property
    def converged(self) -> np.ndarray:
        """Boolean per seed."""
        return np.isfinite(self.updates_to_criterion)


def train_seeds(
    sizes: Sequence[int],
    seeds: Sequence[int],
    patterns,
    settings: RecirculationSettings,
    scale: float = 0.5,
    criterion: float = 0.1,
    max_updates: int = 5000,
) -> SeedStudy:
    """:func:`train_until_criterion` for every seed at once (one stacked NumPy run).

    Seed ``s`` starts from ``init_loop(sizes, np.random.default_rng(s), scale)``, so each
    member follows the same arithmetic as a single run from that seed.
    """
    seed_array = np.asarray(list(seeds), dtype=np.int64)
    if seed_array.ndim != 1 or seed_array.size == 0:
        raise ValueError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    members = [init_loop(sizes, np.random.default_rng(int(s)), scale) for s in seed_array]
    stack = LoopWeights(
        tuple(np.stack([m.weights[k] for m in members]) for k in range(len(members[0].weights))),
        tuple(np.stack([m.biases[g] for m in members]) for g in range(len(members[0].biases))),
    )
    updates, _, final = _train_stack(stack, patterns, settings, criterion, max_updates)
    counts = np.where(updates < 0, np.nan, updates.astype(np.float64))
    return SeedStudy(seed_array, counts, final)


# ------------------------------------------------------------------------------------
# Training a loop on a dataset's images (``eqprop train --rule recirculation``)

#: History variables of :class:`LoopTrainer` (name -> (long_name, units)).
LOOP_HISTORY: dict[str, tuple[str, str]] = {
    "train_reconstruction": (
        "squared reconstruction error per training image (sum over the visible units), "
        "first pass, during the epoch (each minibatch before its update)",
        "1",
    ),
    "valid_reconstruction": (
        "squared reconstruction error per validation image at the end of the epoch",
        "1",
    ),
    "test_reconstruction": (
        "squared reconstruction error per test image at the end of the epoch",
        "1",
    ),
    "train_time": ("wall time of the training part of the epoch", "s"),
    "samples_per_second": ("training samples processed per second of training time", "s-1"),
}


def loop_scale(sizes: Sequence[int]) -> float:
    """Half-width of the uniform initialisation of a dataset loop, ``min(0.5, 1/sqrt(n_0))``:
    the encoder problems' 0.5 for small loops, smaller for images (784 visible units would
    saturate the hidden group at 0.5)."""
    return float(min(0.5, 1.0 / np.sqrt(float(sizes[0]))))


def scaled_update(update: LoopWeights, lrs: Sequence[float]) -> LoopWeights:
    """``update`` with coupling ``k`` (and the bias of the group it feeds, ``(k + 1) % K``)
    multiplied by ``lrs[k]``: one learning rate per coupling, encoder first."""
    K = update.n_groups
    if len(lrs) != K:
        raise ValueError(f"a loop of {K} groups takes {K} learning rates (one per coupling)")
    weights = tuple(lrs[k] * w for k, w in enumerate(update.weights))
    biases = tuple(lrs[(g - 1) % K] * b for g, b in enumerate(update.biases))
    return LoopWeights(weights, biases)


class LoopTrainer:
    """Recirculation on a dataset's images: the ``eqprop train --rule recirculation`` loop.

    What training a recirculation network from the command line means: the images are the
    visible vectors of an autoencoder loop, ``architecture`` ``"n-k-n"`` (visible, hidden
    group(s), the visible size again, e.g. ``64-16-64`` on digits, ``784-64-784`` on
    MNIST; :func:`parse_sizes`), and each minibatch gets one recirculation update
    (:func:`recirculate`, :func:`recirculation_update` with ``reduce="mean"``, Hinton &
    McClelland 1988) scaled per coupling by ``config.lrs`` (:func:`scaled_update`, encoder
    first). The regression is ``config.regression`` (:math:`\\lambda`, the paper's 0.75 by
    default) and ``config.hidden_regression`` (the hidden groups'; None: the same); the
    activations ``config.visible_activation`` / ``config.hidden_activation`` (logistic by
    default, as in the paper). Recirculation is unsupervised: the labels are not used, and
    the history records the squared reconstruction error per image
    (:data:`LOOP_HISTORY`, :func:`squared_reconstruction_error` over the batch) instead of
    classification error. Weights start uniform in ``±loop_scale(sizes)`` from
    ``config.seed``; minibatches are shuffled by :func:`eqprop.train.training_generator`.

    Writes ``config.json``, ``history.nc`` and ``loop.npz`` (the weights ``W{k}``, biases
    ``b{g}``) to ``config.output`` after every epoch; no resumable checkpoint.

    Parameters
    ----------
    config : eqprop.train.TrainConfig
        ``rule="recirculation"``; validated (ValueError naming what to change).
    data : DatasetSplits, optional
        Instead of ``load_dataset(config.dataset)``; ``config.limit`` still applies.
    command, quiet, stream, overwrite
        As :class:`eqprop.train.Trainer`.
    """

    def __init__(
        self,
        config: object,
        data: object = None,
        *,
        command: object = None,
        quiet: bool = False,
        stream: object = None,
        overwrite: bool = False,
    ) -> None:
        import sys

        from eqprop.train import check_output_folder, training_generator

        cfg = config.validate()  # type: ignore[attr-defined]
        if cfg.rule.name != "recirculation":
            raise ValueError(f"LoopTrainer trains rule 'recirculation', got rule {cfg.rule.name!r}")
        self.config = cfg
        run, dcfg = cfg.run, cfg.data
        self.lrs = cfg.optimizer.lrs
        if run.output:
            check_output_folder(run.output, overwrite=overwrite)
        self.command = command
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.sizes = parse_sizes(cfg.network.architecture)
        self.settings = cfg.make_rule().settings  # RecirculationRule: checked settings
        if data is None:
            from eqprop.data import load_dataset

            data = load_dataset(dcfg.dataset, data_dir=dcfg.data_dir, limit=dcfg.limit)
        elif dcfg.limit is not None:
            import dataclasses

            rest = [getattr(data, f.name) for f in dataclasses.fields(data)][3:]  # type: ignore[arg-type]
            data = type(data)(  # type: ignore[call-arg]
                data.train.head(dcfg.limit),  # type: ignore[attr-defined]
                data.valid.head(dcfg.limit),  # type: ignore[attr-defined]
                data.test.head(dcfg.limit),  # type: ignore[attr-defined]
                *rest,
            )
        self.data = data
        n_visible = self.sizes[0]
        for name in ("train", "valid", "test"):
            x = getattr(data, name).x
            if x.ndim != 2 or x.shape[1] != n_visible:
                raise ValueError(
                    f"dataset {dcfg.dataset!r} has images of {x.shape[1:]} values but the loop "
                    f"{cfg.network.architecture!r} has a visible group of {n_visible}; start "
                    "and end the architecture with the image size"
                )
        self.x_train = np.ascontiguousarray(data.train.x, dtype=np.float64)  # type: ignore[attr-defined]
        if self.x_train.shape[0] < 1:
            raise ValueError(f"dataset {dcfg.dataset!r} has no training samples")
        self.loop = init_loop(self.sizes, np.random.default_rng(run.seed), loop_scale(self.sizes))
        self.rng = training_generator(run.seed)
        self.epoch = 0
        self.history: dict[str, list[float]] = {k: [] for k in LOOP_HISTORY}

    def step(self, v: np.ndarray) -> float:
        """One recirculation update on the minibatch ``v``; returns its summed squared
        reconstruction error before the update."""
        passes = recirculate(self.loop, v, self.settings)
        error = float(np.sum((passes.states[0] - passes.reconstruction) ** 2))
        update = recirculation_update(self.loop, passes, self.settings, reduce="mean")
        self.loop = self.loop.plus(scaled_update(update, self.lrs))
        return error

    def train_epoch(self) -> dict[str, float]:
        """One epoch of minibatch updates; returns ``train_reconstruction`` and timings."""
        import time

        from eqprop.train import TrainingDiverged

        n = self.x_train.shape[0]
        bs = self.config.run.batch_size
        perm = self.rng.permutation(n) if self.config.run.shuffle else np.arange(n)
        total = 0.0
        t0 = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, n, bs):
                total += self.step(self.x_train[perm[start : start + bs]])
        elapsed = time.perf_counter() - t0
        bad = [k for k, a in self.loop.parameters().items() if not np.all(np.isfinite(a))]
        if bad or not np.isfinite(total):
            raise TrainingDiverged(
                f"recirculation diverged in epoch {self.epoch + 1}: "
                f"{', '.join(bad) or 'the reconstruction error'} became NaN or infinite; "
                f"lower the learning rates (lrs={list(self.lrs)})"
            )
        return {
            "train_reconstruction": total / n,
            "train_time": elapsed,
            "samples_per_second": n / elapsed if elapsed > 0 else float("nan"),
        }

    def evaluate(self, split: object) -> float:
        """Squared reconstruction error per image of ``split`` (NaN if it is empty)."""
        x = np.asarray(split.x, dtype=np.float64)  # type: ignore[attr-defined]
        if x.shape[0] == 0:
            return float("nan")
        bs = self.config.run.eval_batch_size
        total = sum(
            float(squared_reconstruction_error(self.loop, x[s : s + bs], self.settings))
            for s in range(0, x.shape[0], bs)
        )
        return total / x.shape[0]

    def history_dataset(self):
        """The history as an xarray Dataset (dim ``epoch``, provenance attributes)."""
        import xarray as xr

        from eqprop.provenance import dataset_attrs, variable

        data_vars = {
            k: variable("epoch", np.asarray(self.history[k], dtype=np.float64), ln, u)
            for k, (ln, u) in LOOP_HISTORY.items()
        }
        epochs = np.arange(1, self.epoch + 1, dtype=np.int64)
        ds = xr.Dataset(data_vars, coords={"epoch": variable("epoch", epochs, "epoch", "1")})
        c = self.config
        title = f"eqprop recirculation history: {c.data.dataset} loop {c.network.architecture}"
        ds.attrs.update(
            dataset_attrs(
                title, self.config.to_dict(), command=self.command, seeds=[self.config.run.seed]
            )
        )
        return ds

    def run(self, epochs: int | None = None):
        """Train until ``epochs`` epochs in total (default ``config.epochs``); returns the
        history dataset."""
        from pathlib import Path

        from eqprop.provenance import write_netcdf

        target = self.config.run.epochs if epochs is None else int(epochs)
        out = Path(self.config.run.output) if self.config.run.output else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(self.config.to_json() + "\n")
        while self.epoch < target:
            row = self.train_epoch()
            row["valid_reconstruction"] = self.evaluate(self.data.valid)  # type: ignore[attr-defined]
            row["test_reconstruction"] = self.evaluate(self.data.test)  # type: ignore[attr-defined]
            self.epoch += 1
            for k in LOOP_HISTORY:
                self.history[k].append(float(row[k]))
            if not self.quiet:
                print(
                    f"epoch {self.epoch}/{target}  reconstruction error per image: train "
                    f"{row['train_reconstruction']:.4f}  valid {row['valid_reconstruction']:.4f}  "
                    f"test {row['test_reconstruction']:.4f}  {row['samples_per_second']:.0f} "
                    f"samples/s",
                    file=self.stream,  # type: ignore[arg-type]
                )
            if out is not None:
                write_netcdf(self.history_dataset(), out / "history.nc")
                np.savez(out / "loop.npz", **self.loop.parameters())  # type: ignore[arg-type]
        return self.history_dataset()
