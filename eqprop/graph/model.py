"""Networks built from layers and couplings, as plain data.

A :class:`GraphNetwork` is a list of :class:`Layer` (input first) and a list of
:class:`Coupling` joining pairs of layers. Everything numerical (drives, energies, maps,
gradients) lives elsewhere: :mod:`eqprop.graph.reference` (NumPy, the reference) and
:mod:`eqprop.graph.kernels` (Numba, for the solvers). This module only holds and checks
the description.

Conventions (the same as :mod:`eqprop.network`; see ``docs/couplings.rst``):

* one input layer, clamped, never part of the state; its activity is ``x`` itself;
* the state of a batch is one C-contiguous ``(batch, n_state)`` array holding the layers
  with role ``"hidden"`` and ``"output"`` concatenated in the order of ``layers``
  (:attr:`GraphNetwork.offsets`); a ``"readout"`` layer (softmax readout of the
  cross-entropy cost, Laborieux et al. 2021) is outside the state;
* a layer may have a ``shape`` ``(channels, height, width)``; its units are then held
  flattened in C order (channel slowest, column fastest), so a dense coupling from it
  reads the flattened activity and a ``conv2d`` coupling (:mod:`eqprop.graph.conv`) the
  image; its bias may be per unit ``(size,)`` or per channel ``(channels,)``;
* a dense coupling from ``source`` to ``target`` holds ``W`` of shape
  ``(source.size, target.size)``: the forward drive into the target is ``a_src @ W``;
  its feedback drive into the source is ``a_dst @ W.T`` (``tied``),
  ``gamma * a_dst @ W.T`` (``scaled``) or ``a_dst @ B`` with ``B`` of shape
  ``(target.size, source.size)`` (``free``: learned; ``random``: fixed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqprop.network import ACTIVATIONS as _CHAIN_ACTIVATIONS
from eqprop.network import activation_functions as _chain_activation_functions

__all__ = [
    "ACTIVATIONS",
    "COSTS",
    "COUPLING_TYPES",
    "DTYPES",
    "FEEDBACK_MODES",
    "HOLOMORPHIC_ACTIVATIONS",
    "KINDS",
    "ROLES",
    "Coupling",
    "GraphNetwork",
    "Layer",
    "layer_activation",
]

KINDS = ("hopfield", "prototypical")
ROLES = ("input", "hidden", "output", "readout")
ACTIVATIONS = (*_CHAIN_ACTIVATIONS, "identity")
HOLOMORPHIC_ACTIVATIONS = ("sigmoid", "shifted-sigmoid", "tanh", "identity")
FEEDBACK_MODES = ("tied", "scaled", "free", "random")
COUPLING_TYPES = ("dense", "conv2d")
COSTS = ("squared", "cross-entropy")
DTYPES = ("float32", "float64", "complex64", "complex128")


def layer_activation(name: str):
    """NumPy ``(f, f', f'', box)`` of a layer activation.

    The activations of :func:`eqprop.network.activation_functions` (one place for their
    formulas) plus ``identity`` (a linear layer: :math:`f(v) = v`, ``f' = 1``, no box).
    Element-wise; the holomorphic ones (:data:`HOLOMORPHIC_ACTIVATIONS`) also accept
    complex arrays.
    """
    if name == "identity":
        return (lambda v: v, np.ones_like, np.zeros_like, None)
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(map(repr, ACTIVATIONS))}"
        )
    return _chain_activation_functions(name)


@dataclass(eq=False)
class Layer:
    """A group of units.

    Parameters
    ----------
    name : str
        Unique within the network.
    size : int
        Number of units (>= 1); 0 (the default): the product of ``shape``.
    role : {"input", "hidden", "output", "readout"}
        ``input``: clamped to ``x``, outside the state. ``hidden``: in the state.
        ``output``: in the state, the cost reads its state (squared error, or softmax
        cross-entropy on the state as logits). ``readout``: outside the state, its
        activity is :math:`\\mathrm{softmax}(\\sum_c a_{src(c)} W_c + b)`, read by the
        cross-entropy cost only (today's ``cost="cross-entropy"`` readout).
    activation : str
        One of :data:`ACTIVATIONS`: :math:`\\rho` (hopfield kind) or :math:`\\sigma`
        (prototypical kind). Ignored for ``input`` and ``readout`` layers.
    box : (float, float) or None
        Interval the layer's state is projected onto after each step of the map (the
        projected Euler step of Scellier & Bengio 2017). Real dtypes only.
    bias : ndarray (size,) or (channels,) or None
        Bias :math:`b`; None: no bias (not a parameter). ``input`` layers take none. A
        layer with a ``shape`` may take one bias per channel, shared by its
        ``height * width`` positions (as a convolution's bias).
    shape : (int, int, int) or None
        ``(channels, height, width)`` of an image layer, its units flattened in C order
        into the state (unit ``(k, i, j)`` is column ``(k * height + i) * width + j``);
        None: a flat layer. Not for ``readout`` layers.
    """

    name: str
    size: int = 0
    role: str = "hidden"
    activation: str = "identity"
    box: tuple[float, float] | None = None
    bias: np.ndarray | None = None
    shape: tuple[int, int, int] | None = None

    @property
    def in_state(self) -> bool:
        return self.role in ("hidden", "output")

    @property
    def channel_bias(self) -> bool:
        """Whether the bias is one per channel (shape ``(channels,)``, not ``(size,)``)."""
        return (
            self.bias is not None
            and self.shape is not None
            and self.bias.shape == (self.shape[0],)
            and self.shape[0] != self.size
        )

    def bias_vector(self) -> np.ndarray:
        """The bias as one value per unit, (size,) (a per-channel bias repeated over the
        ``height * width`` positions of its channel); the layer must have a bias."""
        assert self.bias is not None
        if self.channel_bias:
            assert self.shape is not None
            return np.repeat(self.bias, self.shape[1] * self.shape[2])
        return self.bias

    def bias_gradient(self, per_unit: np.ndarray) -> np.ndarray:
        """A gradient per unit, (size,), turned into the bias's shape: summed over each
        channel's positions for a per-channel bias (the chain rule of
        :meth:`bias_vector`), unchanged otherwise."""
        if self.channel_bias:
            assert self.shape is not None
            return per_unit.reshape(self.shape[0], -1).sum(axis=1)
        return per_unit


@dataclass(eq=False)
class Coupling:
    """A coupling from layer ``source`` to layer ``target`` (dense unless ``type`` says).

    Parameters
    ----------
    source, target : str
        Layer names. ``target`` may not be the input; ``source`` may not be a readout.
    W : ndarray (source.size, target.size)
        Forward weights: the target's drive gets ``a_src @ W``.
    feedback : {"tied", "scaled", "free", "random"}
        What the source receives back from the target: ``a_dst @ W.T`` (tied: the network
        has an energy), ``gamma * a_dst @ W.T`` (scaled, Xie & Seung 2003),
        ``a_dst @ B`` (free: ``B`` is a parameter, vector-field EP, Scellier et al. 2018;
        random: ``B`` is fixed, feedback alignment, Lillicrap et al. 2016). Couplings from
        the input send no feedback (the input is clamped) and must be ``tied``.
    gamma : float
        Feedback scale of the ``scaled`` mode (1 for the others).
    B : ndarray (target.size, source.size) or None
        Feedback weights of the ``free`` and ``random`` modes (a ``conv2d`` coupling: a
        kernel of ``W``'s shape, checked by :func:`eqprop.graph.conv.check`).
    name : str, optional
        Default ``"source->target"``.
    type : {"dense", "conv2d"}
        Which module computes it (:mod:`eqprop.graph.dense`, :mod:`eqprop.graph.conv`).
    conv : eqprop.graph.conv.ConvSpec or None
        Kernel geometry and pooling of a ``conv2d`` coupling (whose ``W`` is
        ``(c_out, c_in, kh, kw)``); None for dense couplings.
    """

    source: str
    target: str
    W: np.ndarray
    feedback: str = "tied"
    gamma: float = 1.0
    B: np.ndarray | None = None
    name: str = ""
    type: str = "dense"
    conv: Any = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.source}->{self.target}"


def _one_of(what: str, value: Any, choices: Sequence[str], where: str) -> None:
    if value not in choices:
        raise ValueError(
            f"{where}: unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}"
        )


@dataclass(eq=False)
class GraphNetwork:
    """Layers and couplings of an energy-based (or vector-field) network (plain data).

    Parameters
    ----------
    layers : sequence of Layer
        Exactly one ``input`` layer and exactly one ``output`` or ``readout`` layer.
    couplings : sequence of Coupling
    kind : {"hopfield", "prototypical"}
        Hopfield: :math:`F = E + \\beta C`, gradient dynamics. Prototypical:
        :math:`F = -\\Phi + \\beta C`, map
        :math:`s \\leftarrow \\sigma(\\partial\\Phi/\\partial s)`.
    cost : {"squared", "cross-entropy"}
        ``squared``: :math:`\\tfrac12\\|s_{out} - d\\|^2` (needs an ``output`` layer).
        ``cross-entropy``: :math:`-\\sum_k d_k\\log\\mathrm{softmax}(z)_k` with ``z`` the
        output layer's state (P_MLP of Laborieux et al. 2021, a linear output inside the
        state) or the readout's logits (a ``readout`` layer).
    dtype : {"float32", "float64", "complex64", "complex128"}
        Parameters are copied into this dtype. Complex needs holomorphic activations.

    Raises
    ------
    ValueError
        One line naming the offending layer or coupling.
    """

    layers: list[Layer]
    couplings: list[Coupling]
    kind: str = "hopfield"
    cost: str = "squared"
    dtype: Any = "float64"
    _index: dict[str, int] = field(init=False, repr=False)
    _offsets: dict[str, tuple[int, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.layers = list(self.layers)
        self.couplings = list(self.couplings)
        _one_of("kind", self.kind, KINDS, "network")
        _one_of("cost", self.cost, COSTS, "network")
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            dt = None
        if dt is None or dt.name not in DTYPES:
            raise ValueError(
                f"network: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        self.dtype = dt
        self._check_layers()
        self._check_couplings()
        off, o = {}, 0
        for layer in self.layers:
            if layer.in_state:
                off[layer.name] = (o, o + layer.size)
                o += layer.size
        self._offsets = off

    # ------------------------------------------------------------------ checks
    def _check_layers(self) -> None:
        complex_ = self.dtype.kind == "c"
        self._index = {}
        for i, layer in enumerate(self.layers):
            where = f"layer {layer.name!r}"
            if not isinstance(layer, Layer):
                raise ValueError(f"layers[{i}] is a {type(layer).__name__}, not a Layer")
            if layer.name in self._index:
                raise ValueError(f"{where}: two layers have this name")
            self._index[layer.name] = i
            _one_of("role", layer.role, ROLES, where)
            _one_of("activation", layer.activation, ACTIVATIONS, where)
            self._check_shape(layer, where)
            size = layer.size
            if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
                raise ValueError(f"{where}: size must be an integer >= 1, got {size!r}")
            layer.size = int(size)
            if layer.role == "input" and layer.bias is not None:
                raise ValueError(f"{where}: an input layer takes no bias (it is clamped)")
            if layer.bias is not None:
                b = np.asarray(layer.bias)
                shapes = [(layer.size,)]
                if layer.shape is not None:
                    shapes.append((layer.shape[0],))
                if b.shape not in shapes:
                    per_channel = " or (channels,)" if layer.shape is not None else ""
                    raise ValueError(
                        f"{where}: bias must have shape ({layer.size},){per_channel}, got {b.shape}"
                    )
                layer.bias = np.array(b, dtype=self.dtype)
            if layer.in_state and complex_ and layer.activation not in HOLOMORPHIC_ACTIVATIONS:
                raise ValueError(
                    f"{where}: activation {layer.activation!r} is not holomorphic and cannot "
                    f"run with dtype {self.dtype.name}; use one of "
                    f"{', '.join(HOLOMORPHIC_ACTIVATIONS)} or a real dtype"
                )
            if layer.box is not None:
                if complex_:
                    raise ValueError(
                        f"{where}: a box (projection) is undefined for dtype {self.dtype.name}; "
                        "set box=None"
                    )
                lo, hi = (float(v) for v in layer.box)
                if not lo < hi:
                    raise ValueError(f"{where}: box must be (lo, hi) with lo < hi, got {layer.box}")
                layer.box = (lo, hi)
        roles = [layer.role for layer in self.layers]
        if roles.count("input") != 1:
            raise ValueError(f"network: needs exactly one input layer, got {roles.count('input')}")
        n_out = roles.count("output") + roles.count("readout")
        if n_out != 1:
            raise ValueError(f"network: needs exactly one output or readout layer, got {n_out}")
        out = self.output_layer
        if out.role == "readout" and self.cost != "cross-entropy":
            raise ValueError(
                f"layer {out.name!r}: a readout layer is the softmax of the cross-entropy "
                f"cost; cost {self.cost!r} needs role='output'"
            )
        if not any(layer.in_state for layer in self.layers):
            raise ValueError("network: no hidden or output layer, the state would be empty")

    @staticmethod
    def _check_shape(layer: Layer, where: str) -> None:
        if layer.shape is None:
            if isinstance(layer.size, int | np.integer) and layer.size == 0:
                raise ValueError(
                    f"{where}: size must be an integer >= 1, got 0; or give a shape "
                    "(channels, height, width)"
                )
            return
        shape = tuple(layer.shape)
        if len(shape) != 3 or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in shape
        ):
            raise ValueError(
                f"{where}: shape must be (channels, height, width), three integers >= 1, "
                f"got {layer.shape!r}"
            )
        if layer.role == "readout":
            raise ValueError(f"{where}: a readout layer is flat (its softmax); set shape=None")
        layer.shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        n = layer.shape[0] * layer.shape[1] * layer.shape[2]
        if isinstance(layer.size, int | np.integer) and layer.size == 0:
            layer.size = n
        elif layer.size != n:
            raise ValueError(
                f"{where}: size {layer.size!r} differs from the product of shape "
                f"{layer.shape} = {n}; give one of the two"
            )

    def _check_couplings(self) -> None:
        seen: dict[str, Coupling] = {}
        pairs: set[frozenset[str]] = set()
        for i, c in enumerate(self.couplings):
            if not isinstance(c, Coupling):
                raise ValueError(f"couplings[{i}] is a {type(c).__name__}, not a Coupling")
            where = f"coupling {c.name!r}"
            if c.name in seen:
                raise ValueError(f"{where}: two couplings have this name")
            seen[c.name] = c
            _one_of("type", c.type, COUPLING_TYPES, where)
            _one_of("feedback", c.feedback, FEEDBACK_MODES, where)
            for end in (c.source, c.target):
                if end not in self._index:
                    raise ValueError(
                        f"{where}: unknown layer {end!r}; layers are "
                        f"{', '.join(repr(layer.name) for layer in self.layers)}"
                    )
            if c.source == c.target:
                raise ValueError(f"{where}: joins layer {c.source!r} with itself")
            pair = frozenset((c.source, c.target))
            if pair in pairs:
                raise ValueError(
                    f"{where}: layers {c.source!r} and {c.target!r} are already coupled; "
                    "merge the two into one coupling"
                )
            pairs.add(pair)
            src, dst = self.layer(c.source), self.layer(c.target)
            if dst.role == "input":
                raise ValueError(
                    f"{where}: couples into the input layer {dst.name!r}, which is clamped; "
                    "swap source and target"
                )
            if src.role == "readout":
                raise ValueError(f"{where}: a readout layer {src.name!r} cannot be a source")
            if dst.role == "readout" and src.role == "input":
                raise ValueError(
                    f"{where}: the readout {dst.name!r} reads state layers only, not the input"
                )
            if c.type != "dense":
                if dst.role == "readout":
                    raise ValueError(
                        f"{where}: a readout reads dense couplings only, not {c.type!r}"
                    )
                from eqprop.graph.reference import coupling_module

                coupling_module(c).check(c, src, dst, self.dtype)
            else:
                if c.conv is not None:
                    raise ValueError(f"{where}: conv settings apply to type 'conv2d' only")
                w = np.asarray(c.W)
                if w.shape != (src.size, dst.size):
                    raise ValueError(
                        f"{where}: W must have shape (source size, target size) = "
                        f"({src.size}, {dst.size}), got {w.shape}"
                    )
                c.W = np.array(w, dtype=self.dtype)
            if c.feedback in ("free", "random") and c.type == "dense":
                if c.B is None:
                    raise ValueError(f"{where}: feedback {c.feedback!r} needs B")
                bm = np.asarray(c.B)
                if bm.shape != (dst.size, src.size):
                    raise ValueError(
                        f"{where}: B must have shape (target size, source size) = "
                        f"({dst.size}, {src.size}), got {bm.shape}"
                    )
                c.B = np.array(bm, dtype=self.dtype)
            elif c.B is not None and c.type == "dense":
                raise ValueError(f"{where}: feedback {c.feedback!r} takes no B (it uses W)")
            if c.feedback == "scaled":
                if not np.isfinite(c.gamma) or c.gamma <= 0:
                    raise ValueError(f"{where}: gamma must be finite and > 0, got {c.gamma!r}")
            elif c.gamma != 1.0:
                raise ValueError(
                    f"{where}: gamma applies to feedback 'scaled' only, got feedback "
                    f"{c.feedback!r} with gamma={c.gamma!r}"
                )
            c.gamma = float(c.gamma)
            if c.feedback != "tied" and (src.role == "input" or dst.role == "readout"):
                what = "the input sends" if src.role == "input" else "a readout sends"
                raise ValueError(
                    f"{where}: {what} no feedback through this coupling; use feedback='tied'"
                )

    # ------------------------------------------------------------------ layout
    def layer(self, name: str) -> Layer:
        """The layer called ``name``."""
        try:
            return self.layers[self._index[name]]
        except KeyError:
            raise ValueError(f"unknown layer {name!r}") from None

    @property
    def input_layer(self) -> Layer:
        return next(layer for layer in self.layers if layer.role == "input")

    @property
    def output_layer(self) -> Layer:
        """The ``output`` or ``readout`` layer (targets ``d`` have its size)."""
        return next(layer for layer in self.layers if layer.role in ("output", "readout"))

    @property
    def state_layers(self) -> list[Layer]:
        """Layers held in the state, in state order."""
        return [layer for layer in self.layers if layer.in_state]

    @property
    def offsets(self) -> dict[str, tuple[int, int]]:
        """State columns ``[start, stop)`` of each state layer, by name."""
        return dict(self._offsets)

    @property
    def n_state(self) -> int:
        return sum(layer.size for layer in self.state_layers)

    @property
    def n_in(self) -> int:
        return self.input_layer.size

    @property
    def n_out(self) -> int:
        return self.output_layer.size

    @property
    def is_tied(self) -> bool:
        """Whether every coupling's feedback is its forward map's transpose."""
        return all(c.feedback == "tied" for c in self.couplings)

    def require_energy(self, what: str = "an energy") -> None:
        """Raise unless the network has an energy (every coupling tied)."""
        for c in self.couplings:
            if c.feedback != "tied":
                raise ValueError(
                    f"coupling {c.name!r}: feedback {c.feedback!r} makes the network a vector "
                    f"field without {what}; only feedback='tied' has one"
                )

    def coupling(self, name: str) -> Coupling:
        for c in self.couplings:
            if c.name == name:
                return c
        raise ValueError(f"unknown coupling {name!r}")

    def parameters(self) -> dict[str, np.ndarray]:
        """The learnable arrays by name (the arrays themselves: update them in place).

        ``"<coupling>.W"`` for every coupling, ``"<coupling>.B"`` for ``free`` feedback,
        ``"<layer>.b"`` for every layer with a bias. A ``random`` coupling's ``B`` is
        fixed and not listed.
        """
        out: dict[str, np.ndarray] = {}
        for c in self.couplings:
            out[f"{c.name}.W"] = c.W
            if c.feedback == "free":
                assert c.B is not None
                out[f"{c.name}.B"] = c.B
        for layer in self.layers:
            if layer.bias is not None:
                out[f"{layer.name}.b"] = layer.bias
        return out

    def zero_state(self, batch: int) -> np.ndarray:
        return np.zeros((int(batch), self.n_state), dtype=self.dtype)

    def split(self, s: np.ndarray) -> dict[str, np.ndarray]:
        """Views of a ``(batch, n_state)`` array per state layer."""
        return {name: s[:, a:b] for name, (a, b) in self._offsets.items()}

    def copy(self) -> GraphNetwork:
        """Deep copy (own arrays)."""

        def arr(a):
            return None if a is None else np.array(a)

        layers = [
            Layer(la.name, la.size, la.role, la.activation, la.box, arr(la.bias), la.shape)
            for la in self.layers
        ]
        couplings = [
            Coupling(
                c.source,
                c.target,
                np.array(c.W),
                c.feedback,
                c.gamma,
                arr(c.B),
                c.name,
                c.type,
                c.conv,
            )
            for c in self.couplings
        ]
        return GraphNetwork(layers, couplings, self.kind, self.cost, self.dtype)

    def with_parameters(self, params: Mapping[str, np.ndarray]) -> GraphNetwork:
        """A copy with some learnable arrays replaced (names as in :meth:`parameters`)."""
        new = self.copy()
        mine = new.parameters()
        for k, v in params.items():
            if k not in mine:
                raise ValueError(f"unknown parameter {k!r}; known: {', '.join(mine)}")
            mine[k][...] = v
        return new
