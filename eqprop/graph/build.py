"""Building graph networks: a chain builder and the converter from today's chain.

:func:`chain` covers the common case (sizes, activation, output activation, feedback
mode, gain, optional skip couplings); :func:`from_network` turns an
:class:`eqprop.network.Network` (the dense tied chain) into the equivalent
:class:`~eqprop.graph.model.GraphNetwork`, parameters copied, layer names ``"x"``,
``"h1"`` .. ``"h{L-1}"``, ``"y"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eqprop.graph.model import FEEDBACK_MODES, Coupling, GraphNetwork, Layer

__all__ = [
    "ConvArchitecture",
    "ConvLayerSpec",
    "chain",
    "chain_layer_names",
    "chain_mismatch",
    "chain_parameter_names",
    "conv_chain",
    "conv_network",
    "extend_chain",
    "from_network",
    "is_conv_architecture",
    "parse_conv_architecture",
    "parse_skip",
    "to_network",
]


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


@dataclass(frozen=True)
class ConvLayerSpec:
    """One conv layer of a :class:`ConvArchitecture`: ``channels`` output channels, a
    ``kernel`` x ``kernel`` convolution with ``stride`` and zero ``padding``, then an
    optional ``pool`` (``"max"``/``"avg"``) of ``pool_size`` x ``pool_size`` windows
    moved by ``pool_size``."""

    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: str | None = None
    pool_size: int = 2


@dataclass(frozen=True)
class ConvArchitecture:
    """A convolutional chain: an image input, conv layers, then dense layers (the last
    one the output). Parsed from text by :func:`parse_conv_architecture`."""

    input_shape: tuple[int, int, int]
    convs: tuple[ConvLayerSpec, ...]
    dense: tuple[int, ...]

    def shapes(self) -> list[tuple[int, int, int]]:
        """Shape ``(channels, height, width)`` of the input and of each conv layer."""
        from eqprop.graph.conv import conv_output_hw
        from eqprop.graph.pool import pool_output_hw

        out = [self.input_shape]
        for i, cv in enumerate(self.convs):
            _, h, w = out[-1]
            hw = conv_output_hw((h, w), (cv.kernel, cv.kernel), cv.stride, cv.padding)
            if cv.pool is not None and min(hw) >= 1:
                hw = pool_output_hw(hw, cv.pool_size, cv.pool_size)
            if hw[0] < 1 or hw[1] < 1:
                raise ValueError(
                    f"conv layer {i + 1}: the image {(h, w)} is too small for kernel "
                    f"{cv.kernel}, stride {cv.stride}, padding {cv.padding}"
                    + (f" and pooling {cv.pool_size}" if cv.pool else "")
                )
            out.append((cv.channels, hw[0], hw[1]))
        return out

    @property
    def sizes(self) -> tuple[int, ...]:
        """Units per layer, input first (conv layers flattened), as a chain's sizes."""
        return tuple(int(np.prod(sh)) for sh in self.shapes()) + self.dense


def is_conv_architecture(spec: str) -> bool:
    """Whether ``spec`` is a conv architecture (its first part an image shape ``CxHxW``)."""
    return isinstance(spec, str) and "x" in spec.split("-", 1)[0].lower()


_CONV_TOKEN = re.compile(r"c(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?")
_POOL_TOKEN = re.compile(r"(m|a)?p(\d+)")


def parse_conv_architecture(spec: str) -> ConvArchitecture:
    """A conv architecture from text, parts joined by ``-``, input first.

    * the input image ``CxHxW`` (e.g. ``1x28x28``);
    * a conv layer ``c<channels>k<kernel>`` with optional ``s<stride>`` (default 1) and
      ``p<padding>`` (default 0), e.g. ``c32k5``, ``c128k3p1``, ``c64k3s2p1``;
    * after a conv layer, its pooling: ``p<size>`` or ``mp<size>`` (max) or
      ``ap<size>`` (average), windows ``size`` x ``size`` moved by ``size``;
    * then one or more dense layers by size; the last is the output.

    Ernoult et al. 2019's P-conv is ``1x28x28-c32k5-p2-c64k5-p2-10``; the CIFAR-10 net of
    Laborieux et al. 2021 ``3x32x32-c128k3p1-p2-c256k3p1-p2-c512k3p1-p2-c512k3-p2-10``.

    Raises
    ------
    ValueError
        One line naming the part that does not parse, or an image too small.
    """
    if not isinstance(spec, str):
        raise ValueError(f"conv architecture must be text, got {spec!r}")
    parts = [p.strip().lower() for p in spec.split("-")]
    where = f"architecture {spec!r}"
    try:
        shape = tuple(int(v) for v in parts[0].split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"{where}: the first part {parts[0]!r} must be the input image CxHxW, e.g. 1x28x28"
        )
    convs: list[ConvLayerSpec] = []
    dense: list[int] = []
    for part in parts[1:]:
        m = _CONV_TOKEN.fullmatch(part)
        pm = _POOL_TOKEN.fullmatch(part)
        if m:
            if dense:
                raise ValueError(f"{where}: conv layer {part!r} after a dense layer")
            ch, k, st, pad = (
                int(v) if v is not None else d
                for v, d in zip(m.groups(), (0, 0, 1, 0), strict=True)
            )
            if ch < 1 or k < 1 or st < 1:
                raise ValueError(f"{where}: {part!r} needs channels, kernel and stride >= 1")
            convs.append(ConvLayerSpec(ch, k, st, pad))
        elif pm:
            if not convs or dense or convs[-1].pool is not None:
                raise ValueError(
                    f"{where}: pooling {part!r} must follow a conv layer (one pooling each)"
                )
            size = int(pm.group(2))
            if size < 1:
                raise ValueError(f"{where}: pooling {part!r} needs a size >= 1")
            pool = "avg" if pm.group(1) == "a" else "max"
            last = convs[-1]
            convs[-1] = ConvLayerSpec(
                last.channels, last.kernel, last.stride, last.padding, pool, size
            )
        elif part.isdigit() and int(part) >= 1:
            dense.append(int(part))
        else:
            raise ValueError(
                f"{where}: cannot read {part!r}; write c<channels>k<kernel>[s<stride>]"
                "[p<padding>] for a conv layer, p<size> / ap<size> for its max / average "
                "pooling, a number for a dense layer"
            )
    if not convs:
        raise ValueError(f"{where}: no conv layer; write a dense chain as sizes, e.g. 784-500-10")
    if not dense:
        raise ValueError(f"{where}: end with the output layer's size, e.g. -10")
    arch = ConvArchitecture(shape, tuple(convs), tuple(dense))  # type: ignore[arg-type]
    try:
        arch.shapes()  # every image fits its kernel and pooling
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return arch


def conv_network(
    arch: ConvArchitecture,
    *,
    kind: str = "prototypical",
    activation: str = "hardsigmoid",
    output_activation: str | None = None,
    cost: str = "squared",
    box: tuple[float, float] | None = None,
    feedback: str = "tied",
    gamma: float = 1.0,
    dtype="float64",
    seed: int | np.random.Generator | None = 0,
) -> GraphNetwork:
    """The :class:`~eqprop.graph.model.GraphNetwork` of a :class:`ConvArchitecture`.

    Layers ``"x"`` (input image), ``"h1"`` .. (conv layers, then the hidden dense layers,
    activation ``activation``) and ``"y"`` (output, ``output_activation``, default
    ``activation``); one ``conv2d`` coupling into each conv layer (with its pooling), a
    dense coupling into each dense layer (from the previous layer, flattened).

    Weights uniform in :math:`\\pm 1/\\sqrt{\\text{fan-in}}` (fan-in ``C_in kh kw`` for a
    convolution, PyTorch's default bound), drawn in layer order; biases zero, one per
    channel for the conv layers. ``box`` applies to every state layer (default (0, 1)
    for a hard-sigmoid hopfield net, the projected Euler step; none otherwise, where the
    activation bounds the state itself). ``feedback`` (:data:`FEEDBACK_MODES`) on the
    couplings between state layers (those from the input stay tied): ``"scaled"`` by
    ``gamma``; ``"free"`` starts ``B`` equal to the forward weights (``W`` for a conv
    coupling, whose ``B`` has ``W``'s shape; ``W^T`` for a dense one); ``"random"`` draws
    ``B`` uniform in the same bound as ``W``, right after that coupling's ``W`` (so the
    tied and scaled draws are those of before).
    """
    from eqprop.graph.conv import ConvSpec

    if feedback not in FEEDBACK_MODES:
        raise ValueError(
            f"unknown feedback {feedback!r}; choose one of {', '.join(FEEDBACK_MODES)}"
        )
    if feedback != "scaled" and gamma != 1.0:
        raise ValueError(f"feedback scale {gamma!r} applies to feedback 'scaled' only")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if box is None:
        box = _default_box(kind, activation)
    shapes = arch.shapes()
    layers = [Layer("x", role="input", shape=shapes[0])]
    couplings = []

    def fb(src: Layer, W: np.ndarray, bound: float, is_conv: bool) -> dict:
        if src.role == "input" or feedback == "tied":
            return {}
        if feedback == "scaled":
            return dict(feedback=feedback, gamma=gamma)
        shape = W.shape if is_conv else W.T.shape
        if feedback == "free":
            B = W.copy() if is_conv else W.T.copy()
        else:
            B = rng.uniform(-bound, bound, size=shape)
        return dict(feedback=feedback, B=B)

    for i, cv in enumerate(arch.convs):
        prev, new = shapes[i], shapes[i + 1]
        name = f"h{i + 1}"
        layers.append(
            Layer(name, activation=activation, box=box, bias=np.zeros(cv.channels), shape=new)
        )
        bound = 1.0 / np.sqrt(prev[0] * cv.kernel * cv.kernel)
        W = rng.uniform(-bound, bound, size=(cv.channels, prev[0], cv.kernel, cv.kernel))
        spec = ConvSpec(stride=cv.stride, padding=cv.padding, pool=cv.pool, pool_size=cv.pool_size)
        couplings.append(
            Coupling(
                layers[-2].name,
                name,
                W,
                type="conv2d",
                conv=spec,
                **fb(layers[-2], W, bound, True),
            )
        )
    out_act = activation if output_activation is None else output_activation
    for j, n in enumerate(arch.dense):
        last = j == len(arch.dense) - 1
        prev_layer = layers[-1]
        fan_in = int(np.prod(prev_layer.shape)) if prev_layer.shape else prev_layer.size
        if last:
            out_box = box if out_act == activation else _default_box(kind, out_act)
            layers.append(
                Layer("y", n, role="output", activation=out_act, box=out_box, bias=np.zeros(n))
            )
        else:
            name = f"h{len(arch.convs) + j + 1}"
            layers.append(Layer(name, n, activation=activation, box=box, bias=np.zeros(n)))
        bound = 1.0 / np.sqrt(fan_in)
        W = rng.uniform(-bound, bound, (fan_in, n))
        couplings.append(
            Coupling(layers[-2].name, layers[-1].name, W, **fb(layers[-2], W, bound, False))
        )
    return GraphNetwork(layers, couplings, kind=kind, cost=cost, dtype=dtype)


def conv_chain(
    input_shape: tuple[int, int, int],
    channels: Sequence[int],
    n_out: int,
    *,
    kernels: Sequence[int] | int = 3,
    paddings: Sequence[int] | int = 1,
    strides: Sequence[int] | int = 1,
    pool: str | None = "max",
    pool_size: int = 2,
    kind: str = "prototypical",
    activation: str = "hardsigmoid",
    output_activation: str | None = None,
    cost: str = "squared",
    box: tuple[float, float] | None = None,
    feedback: str = "tied",
    gamma: float = 1.0,
    dtype="float64",
    seed: int | np.random.Generator | None = 0,
) -> GraphNetwork:
    """A convolutional chain: image input, ``len(channels)`` conv layers (each a
    ``conv2d`` coupling with its pooling), one dense coupling into a flat output (the
    :func:`conv_network` of that :class:`ConvArchitecture`).

    The architecture of Laborieux et al. 2021 (and Scellier et al. 2023) on CIFAR-10 is
    ``conv_chain((3, 32, 32), [128, 256, 512, 512], 10, kernels=3, paddings=[1, 1, 1, 0])``
    (their script's ``--channels 128 256 512 512 --kernels 3 3 3 3 --pools mmmm
    --paddings 1 1 1 0 --fc 10``): 32 -> 16 -> 8 -> 4 -> 1 after each 2x2 max pool.
    Ernoult et al. 2019's P-conv on MNIST is
    ``conv_chain((1, 28, 28), [32, 64], 10, kernels=5, paddings=0)``. ``feedback``,
    ``gamma``: as :func:`conv_network` (``feedback="random"``: feedback alignment through
    the convolutions, a fixed random kernel ``B`` per conv coupling between state layers).
    """
    channels = [int(c) for c in channels]
    n = len(channels)
    if n < 1:
        raise ValueError(f"channels must list >= 1 conv layer, got {channels}")

    def per_layer(v, what: str) -> list[int]:
        vals = [int(v)] * n if isinstance(v, int | np.integer) else [int(u) for u in v]
        if len(vals) != n:
            raise ValueError(f"{what} must give one value per conv layer ({n}), got {vals}")
        return vals

    ks = per_layer(kernels, "kernels")
    ps = per_layer(paddings, "paddings")
    ss = per_layer(strides, "strides")
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    convs = tuple(
        ConvLayerSpec(channels[i], ks[i], ss[i], ps[i], pool, pool_size) for i in range(n)
    )
    arch = ConvArchitecture(shape, convs, (int(n_out),))
    return conv_network(
        arch,
        kind=kind,
        activation=activation,
        output_activation=output_activation,
        cost=cost,
        box=box,
        feedback=feedback,
        gamma=gamma,
        dtype=dtype,
        seed=seed,
    )


def chain_mismatch(net: GraphNetwork) -> str | None:
    """Why ``net`` is not a network that :class:`eqprop.network.Network` represents, or None.

    It is one when (the image of :func:`from_network`): the layers are listed input
    first, hidden layers, then the ``output`` (``cost="squared"``) or ``readout``
    (``cost="cross-entropy"``, at least one hidden layer) last; every state layer has the
    same activation (not ``identity``), a ``(size,)`` bias and the box of the chain
    ((0, 1) for a hard-sigmoid hopfield network, else none); the couplings are exactly one
    dense, tied coupling from each layer to the next; the dtype is float32 or float64.
    """
    from eqprop.network import ACTIVATIONS as CHAIN_ACTIVATIONS

    if net.dtype.name not in ("float32", "float64"):
        return f"dtype {net.dtype.name} (the chain is float32/float64)"
    layers = net.layers
    if layers[0].role != "input":
        return "the input is not the first layer"
    last = "readout" if net.cost == "cross-entropy" else "output"
    if layers[-1].role != last:
        return f"the last layer is not the {last} of cost {net.cost!r}"
    if any(la.role != "hidden" for la in layers[1:-1]):
        return "a layer between input and output is not hidden"
    if last == "readout" and len(layers) < 3:
        return "a readout needs a hidden layer before it"
    state = net.state_layers
    act = state[0].activation
    if act not in CHAIN_ACTIVATIONS:
        return f"activation {act!r}"
    box = (0.0, 1.0) if net.kind == "hopfield" and act == "hardsigmoid" else None
    for la in layers[1:]:
        if la.in_state and la.activation != act:
            return f"layer {la.name!r} has activation {la.activation!r}, not {act!r}"
        if la.in_state and la.box != box:
            return f"layer {la.name!r} has box {la.box}, the chain's is {box}"
        if la.bias is None or la.channel_bias:
            return f"layer {la.name!r} has no per-unit bias"
    if len(net.couplings) != len(layers) - 1:
        return "it has skip couplings (or missing ones)"
    for i in range(1, len(layers)):
        c = _coupling_between(net, layers[i - 1].name, layers[i].name)
        if c is None:
            return f"no coupling {layers[i - 1].name!r} -> {layers[i].name!r}"
        if c.type != "dense" or c.feedback != "tied":
            return f"coupling {c.name!r} is {c.type} with feedback {c.feedback!r}"
    return None


def _coupling_between(net: GraphNetwork, src: str, dst: str):
    for c in net.couplings:
        if c.source == src and c.target == dst:
            return c
    return None


def chain_parameter_names(net: GraphNetwork) -> tuple[list[str], list[str]]:
    """Names (:meth:`GraphNetwork.parameters`) of a chain's ``W_1..W_L`` and ``b_1..b_L``."""
    layers = net.layers
    w = []
    for i in range(1, len(layers)):
        c = _coupling_between(net, layers[i - 1].name, layers[i].name)
        assert c is not None
        w.append(f"{c.name}.W")
    return w, [f"{la.name}.b" for la in layers[1:]]


def to_network(net: GraphNetwork):
    """The :class:`eqprop.network.Network` equal to ``net`` (the inverse of
    :func:`from_network`; parameters copied). Raises ValueError naming why ``net`` is not
    a dense tied chain (:func:`chain_mismatch`)."""
    from eqprop.network import Network

    why = chain_mismatch(net)
    if why is not None:
        raise ValueError(f"network is not a dense tied chain: {why}")
    layers = net.layers
    weights = []
    for i in range(1, len(layers)):
        c = _coupling_between(net, layers[i - 1].name, layers[i].name)
        assert c is not None
        weights.append(c.W)
    biases = [np.asarray(la.bias) for la in layers[1:]]  # all present (chain_mismatch)
    return Network(
        tuple(la.size for la in layers),
        net.kind,
        net.state_layers[0].activation,
        net.cost,
        weights,
        biases,
    )


def parse_skip(
    spec: str | Sequence[tuple[int, int]] | None, n_layers: int
) -> list[tuple[int, int]]:
    """Skip couplings from ``"i-j"`` pairs separated by commas (``"0-2,1-3"``): layer
    indices, 0 the input, ``n_layers - 1`` the output, ``i < j - 1`` (adjacent layers are
    already coupled). None or ``""``: none. ValueError naming the bad pair."""
    if spec is None or spec == "":
        return []
    if isinstance(spec, str):
        pairs = []
        for part in spec.split(","):
            bits = part.strip().split("-")
            if len(bits) != 2 or not all(b.strip().isdigit() for b in bits):
                raise ValueError(
                    f"skip {part.strip()!r}: write a skip coupling as 'i-j' (layer indices, "
                    "0 = input), several separated by commas, e.g. '0-2,1-3'"
                )
            pairs.append((int(bits[0]), int(bits[1])))
    else:
        pairs = [(int(i), int(j)) for i, j in spec]
    seen = set()
    for i, j in pairs:
        if i == j:
            raise ValueError(f"skip {i}-{j}: couples layer {i} with itself")
        if j < i:
            raise ValueError(
                f"skip {i}-{j}: goes backwards; write it from the input side, {j}-{i} "
                "(its feedback carries the other direction)"
            )
        if not 0 <= i < j < n_layers:
            raise ValueError(f"skip {i}-{j}: layer indices must be in 0..{n_layers - 1}")
        if j - i < 2:
            raise ValueError(f"skip {i}-{j}: adjacent layers are already coupled")
        if (i, j) in seen:
            raise ValueError(f"skip {i}-{j}: given twice")
        seen.add((i, j))
    return pairs


def extend_chain(
    net: GraphNetwork,
    *,
    output_activation: str | None = None,
    feedback: str = "tied",
    gamma: float = 1.0,
    skip: Sequence[tuple[int, int]] = (),
    seed: int | np.random.Generator | None = 0,
) -> GraphNetwork:
    """A chain graph network (e.g. :func:`from_network`) changed: its output's activation,
    the feedback of every coupling between state layers, extra skip couplings.

    The chain's parameters are kept (copied). ``output_activation``: the output layer's
    activation (its box: (0, 1) for a hard-sigmoid hopfield layer, else none); a
    cross-entropy readout becomes an ``output`` layer in the state (softmax of its state,
    the P_MLP of Laborieux et al. 2021). ``feedback``, ``gamma``: as :func:`chain`
    (``free`` starts ``B = W^T``; ``random`` draws ``B`` uniform in the Glorot bound of
    the coupling); couplings from the input or into a readout stay tied (they carry no
    feedback). ``skip``: ``(i, j)`` layer-index pairs (:func:`parse_skip`), Glorot
    uniform ``W``, zero-mean, drawn after the random feedback matrices from ``seed``.
    A ``conv2d`` coupling keeps its type and geometry; its ``B`` has ``W``'s shape
    (``free``: a copy of ``W``; ``random``: uniform in :math:`\\pm 1/\\sqrt{C_{in} k_h
    k_w}`, the bound :func:`conv_network` draws ``W`` from).
    """
    if feedback not in FEEDBACK_MODES:
        raise ValueError(
            f"unknown feedback {feedback!r}; choose one of {', '.join(FEEDBACK_MODES)}"
        )
    if feedback != "scaled" and gamma != 1.0:
        raise ValueError(f"feedback scale {gamma!r} applies to feedback 'scaled' only")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    g = net.copy()
    layers = g.layers
    skip = parse_skip(list(skip), len(layers))
    cost = g.cost
    if output_activation is not None:
        out = layers[-1]
        if out.role == "readout":
            out.role = "output"
        out.activation = output_activation
        out.box = None if g.dtype.kind == "c" else _default_box(g.kind, output_activation)
    couplings = []
    for c in g.couplings:
        ends = (g.layer(c.source).role, g.layer(c.target).role)
        mode = "tied" if ends[0] == "input" or ends[1] == "readout" else feedback
        B = None
        conv = c.type == "conv2d"
        if mode == "free":
            B = c.W.copy() if conv else c.W.T.copy()
        elif mode == "random":
            if conv:  # PyTorch's default bound of the kernel, as conv_network draws W
                a = 1.0 / np.sqrt(np.prod(c.W.shape[1:]))
                B = rng.uniform(-a, a, size=c.W.shape)
            else:
                a = np.sqrt(6.0 / (c.W.shape[0] + c.W.shape[1]))
                B = rng.uniform(-a, a, size=c.W.T.shape)
        couplings.append(
            Coupling(
                c.source,
                c.target,
                c.W,
                feedback=mode,
                gamma=gamma if mode == "scaled" else 1.0,
                B=B,
                name=c.name,
                type=c.type,
                conv=c.conv,
            )
        )
    for i, j in skip:
        src, dst = layers[i], layers[j]
        a = np.sqrt(6.0 / (src.size + dst.size))
        W = rng.uniform(-a, a, size=(src.size, dst.size))
        mode = "tied" if src.role == "input" or dst.role == "readout" else feedback
        B = None
        if mode == "free":
            B = W.T.copy()
        elif mode == "random":
            B = rng.uniform(-a, a, size=(dst.size, src.size))
        couplings.append(
            Coupling(
                src.name, dst.name, W, feedback=mode, gamma=gamma if mode == "scaled" else 1.0, B=B
            )
        )
    return GraphNetwork(layers, couplings, kind=g.kind, cost=cost, dtype=g.dtype)
