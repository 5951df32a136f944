"""Building graph networks: a chain builder and the converter from today's chain.

:func:`chain` covers the common case (sizes, activation, output activation, feedback
mode, gain, optional skip couplings); :func:`from_network` turns an
:class:`eqprop.network.Network` (the dense tied chain) into the equivalent
:class:`~eqprop.graph.model.GraphNetwork`, parameters copied, layer names ``"x"``,
``"h1"`` .. ``"h{L-1}"``, ``"y"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eqprop.graph.model import FEEDBACK_MODES, Coupling, GraphNetwork, Layer

__all__ = ["chain", "chain_layer_names", "from_network"]


def chain_layer_names(n_layers: int) -> list[str]:
    """``["x", "h1", ..., "h{n-2}", "y"]`` for ``n_layers`` layers, input first."""
    return ["x"] + [f"h{i}" for i in range(1, n_layers - 1)] + ["y"]


def _default_box(kind: str, activation: str) -> tuple[float, float] | None:
    """(0, 1) for a hard-sigmoid hopfield layer (the projected Euler step), else None."""
    return (0.0, 1.0) if kind == "hopfield" and activation == "hardsigmoid" else None


def from_network(net) -> GraphNetwork:
    """The :class:`GraphNetwork` equal to a chain :class:`eqprop.network.Network`.

    Same kind, activation (every state layer), cost, boxes (``net.bounds`` on every
    state layer) and parameters (copied). With ``cost="cross-entropy"`` the last layer
    becomes a ``readout`` layer outside the state, as in the chain.
    """
    sizes = list(net.sizes)
    names = chain_layer_names(len(sizes))
    readout = net.cost == "cross-entropy"
    layers = [Layer(names[0], sizes[0], role="input")]
    for i in range(1, len(sizes)):
        last = i == len(sizes) - 1
        role = ("readout" if readout else "output") if last else "hidden"
        layers.append(
            Layer(
                names[i],
                sizes[i],
                role=role,
                activation=net.activation,
                box=None if role == "readout" else net.bounds,
                bias=np.array(net.biases[i - 1]),
            )
        )
    couplings = [
        Coupling(names[i - 1], names[i], np.array(net.weights[i - 1])) for i in range(1, len(sizes))
    ]
    return GraphNetwork(layers, couplings, kind=net.kind, cost=net.cost, dtype=net.dtype)


def chain(
    sizes: Sequence[int],
    *,
    kind: str = "hopfield",
    activation: str = "hardsigmoid",
    output_activation: str | None = None,
    cost: str = "squared",
    feedback: str = "tied",
    gamma: float = 1.0,
    skip: Sequence[tuple[int, int]] = (),
    dtype="float64",
    seed: int | np.random.Generator | None = 0,
    gain: float = 1.0,
) -> GraphNetwork:
    """A chain ``sizes[0] -> ... -> sizes[-1]`` with Glorot-uniform weights, zero biases.

    Parameters
    ----------
    sizes : sequence of int
        Input first.
    kind, cost : str
        See :class:`~eqprop.graph.model.GraphNetwork`. ``cost="cross-entropy"`` keeps the
        output in the state (softmax of the output state, P_MLP style); use
        :func:`from_network` or the general constructor for a readout outside the state.
    activation, output_activation : str
        Hidden layers' activation, and the output's (default: the same).
    feedback : {"tied", "scaled", "free", "random"}
        Feedback of every coupling between state layers (couplings from the input are
        tied: they send no feedback). ``free`` starts ``B = W^T``; ``random`` draws ``B``
        independently with the same bound.
    gamma : float
        Feedback scale of ``feedback="scaled"``.
    skip : sequence of (int, int)
        Extra couplings ``(i, j)`` between layer indices ``i < j - 1`` (0 = input).
    dtype, seed, gain
        Parameter dtype; seed of the draws; multiplier of the Glorot bound
        :math:`\\sqrt{6/(n_i + n_j)}`.
    """
    if feedback not in FEEDBACK_MODES:
        raise ValueError(
            f"unknown feedback {feedback!r}; choose one of {', '.join(FEEDBACK_MODES)}"
        )
    sizes = [int(n) for n in sizes]
    if len(sizes) < 2:
        raise ValueError(f"sizes must list >= 2 layer sizes, got {sizes}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    names = chain_layer_names(len(sizes))
    out_act = activation if output_activation is None else output_activation
    dt = np.dtype(dtype)
    layers = [Layer(names[0], sizes[0], role="input")]
    for i in range(1, len(sizes)):
        last = i == len(sizes) - 1
        act = out_act if last else activation
        layers.append(
            Layer(
                names[i],
                sizes[i],
                role="output" if last else "hidden",
                activation=act,
                box=None if dt.kind == "c" else _default_box(kind, act),
                bias=np.zeros(sizes[i]),
            )
        )
    pairs = [(i - 1, i) for i in range(1, len(sizes))]
    for i, j in skip:
        if not (0 <= i < j < len(sizes)) or j - i < 2:
            raise ValueError(
                f"skip ({i}, {j}): needs 0 <= i < j - 1 < {len(sizes) - 1} (adjacent layers "
                "are already coupled)"
            )
        pairs.append((int(i), int(j)))
    couplings = []
    for i, j in pairs:
        a = gain * np.sqrt(6.0 / (sizes[i] + sizes[j]))
        W = rng.uniform(-a, a, size=(sizes[i], sizes[j]))
        mode = "tied" if i == 0 else feedback
        B = None
        if mode == "free":
            B = W.T.copy()
        elif mode == "random":
            B = rng.uniform(-a, a, size=(sizes[j], sizes[i]))
        couplings.append(
            Coupling(
                names[i],
                names[j],
                W,
                feedback=mode,
                gamma=gamma if mode == "scaled" else 1.0,
                B=B,
            )
        )
    return GraphNetwork(layers, couplings, kind=kind, cost=cost, dtype=dt)
