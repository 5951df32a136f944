"""Layered energy-based networks: parameters, energies and their gradients.

Two kinds of network share one data structure, :class:`Network`:

``kind="hopfield"``
    The continuous Hopfield network of Scellier & Bengio (2017, Front. Comput.
    Neurosci. 11:24). Energy of a state ``s`` (layers 1..L, input ``x`` clamped)

    .. math::

        E(s) = \\tfrac12 \\sum_{l\\ge1} \\|s_l\\|^2
               - \\sum_{l\\ge1} \\rho(s_{l-1})^\\top W_l\\, \\rho(s_l)
               - \\sum_{l\\ge1} b_l^\\top \\rho(s_l),
        \\qquad \\rho(s_0) := x,

    with gradient dynamics :math:`ds/dt = -\\partial F/\\partial s`.

``kind="prototypical"``
    The discrete-time network of Ernoult et al. (2019, NeurIPS). Primitive function

    .. math::

        \\Phi(s) = \\sum_{l\\ge1} s_l^\\top (W_l^\\top s_{l-1}) + b_l^\\top s_l,
        \\qquad s_0 := x,

    with dynamics :math:`s_{t+1} = \\sigma(\\partial\\Phi/\\partial s(s_t))`.

Both kinds expose one *total function* whose parameter gradient the learning rules
contrast between phases,

.. math::

    F(\\theta, s, \\beta) = E(s) + \\beta C(s)        \\quad\\text{(hopfield)},\\qquad
    F(\\theta, s, \\beta) = -\\Phi(s) + \\beta C(s)   \\quad\\text{(prototypical)},

so that "lower F is better" for both, and the Equilibrium Propagation estimate of
:math:`\\partial\\mathcal{L}/\\partial\\theta` is
:math:`[\\partial_\\theta F(s^{\\beta_2},\\beta_2) - \\partial_\\theta F(s^{\\beta_1},\\beta_1)]
/(\\beta_2-\\beta_1)`.

Costs: ``cost="squared"``, :math:`C = \\tfrac12\\|y - d\\|^2` with ``y`` the output layer's
*state* (part of the energy); ``cost="cross-entropy"``, the last weight layer is a softmax
readout :math:`o = \\mathrm{softmax}(a_{L-1} W_L + b_L)` outside the energy
(Laborieux et al. 2021, Front. Neurosci. 15:633674) and :math:`C = -\\sum_k d_k \\log o_k`,
with :math:`a = \\rho(s)` (hopfield) or :math:`a = s` (prototypical).

Conventions (see ``docs/networks.rst``): layer 0 is the input (clamped, never part of the
state); ``W_l`` has shape ``(sizes[l-1], sizes[l])`` so a batch pre-activation is
``a_{l-1} @ W_l``; the state of a batch is one C-contiguous ``(batch, n_state)`` array with
the state layers concatenated in order (``net.offsets``). The input layer's activity is
``x`` itself (not ``rho(x)``; the two coincide for ``hardsigmoid`` and ``x`` in [0, 1]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from eqprop import kernels as K

__all__ = [
    "ACTIVATIONS",
    "COSTS",
    "INITS",
    "KINDS",
    "Gradient",
    "Network",
    "activation_functions",
    "activities",
    "contrast_gradient",
    "cost",
    "energy",
    "init_network",
    "output",
    "parameter_gradient",
    "state_gradient",
]

KINDS = ("hopfield", "prototypical")
ACTIVATIONS = ("hardsigmoid", "sigmoid", "tanh", "shifted-sigmoid")
COSTS = ("squared", "cross-entropy")
INITS = ("glorot", "fan-in")
_DTYPES = {"float32": np.float32, "float64": np.float64}


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")


def _as_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _logistic(v, gain=1.0, centre=0.0):
    return 0.5 * (1.0 + np.tanh(0.5 * gain * (v - centre)))


def activation_functions(name: str):
    """NumPy ``(f, f', f'', box)`` of an activation, with :mod:`eqprop.kernels`' conventions.

    ``hardsigmoid``: :math:`f(v) = \\min(\\max(v, 0), 1)`, ``f' = 1`` on the closed
    interval [0, 1] (one-sided at the kinks) and 0 outside. ``sigmoid``:
    :math:`f(v) = 1/(1 + e^{-v})`. ``tanh``. ``shifted-sigmoid``:
    :math:`f(v) = 1/(1 + e^{-4(v - 1/2)})`, the default activation of Ernoult et al.
    (2019)'s code, with the centre (1/2) and central slope (1) of the hard sigmoid.
    ``box`` is the default clipping box of the state (a network's ``bounds`` wins).
    Element-wise on arrays of any shape and float dtype.
    """
    if name == "hardsigmoid":
        return (
            lambda v: np.clip(v, 0.0, 1.0),
            lambda v: ((v >= 0.0) & (v <= 1.0)).astype(v.dtype),
            np.zeros_like,
            (0.0, 1.0),
        )
    if name in ("sigmoid", "shifted-sigmoid"):
        gain, centre = (1.0, 0.0) if name == "sigmoid" else (4.0, 0.5)

        def sig(v):
            return _logistic(v, gain, centre)

        def dsig(v):
            y = sig(v)
            return gain * y * (1.0 - y)

        def d2sig(v):
            y = sig(v)
            return gain * gain * y * (1.0 - y) * (1.0 - 2.0 * y)

        return sig, dsig, d2sig, (0.0, 1.0)
    if name == "tanh":
        return (
            np.tanh,
            lambda v: 1.0 - np.tanh(v) ** 2,
            lambda v: -2.0 * np.tanh(v) * (1.0 - np.tanh(v) ** 2),
            None,
        )
    _check_choice("activation", name, ACTIVATIONS)
    raise AssertionError(f"activation {name!r} is listed but not implemented")


@dataclass(eq=False)
class Gradient:
    """Estimates of :math:`\\partial\\mathcal{L}/\\partial\\theta`, averaged over the batch.

    Shaped like ``net.weights`` / ``net.biases``; plain gradient descent does
    ``W -= lr * dW``. ``dW[l-1]`` and ``db[l-1]`` belong to layer ``l``.

    Attributes
    ----------
    dW : list of ndarray
        ``dW[l-1]`` with shape ``(sizes[l-1], sizes[l])``.
    db : list of ndarray
        ``db[l-1]`` with shape ``(sizes[l],)``.
    """

    dW: list[np.ndarray]
    db: list[np.ndarray]

    def flat(self) -> np.ndarray:
        """All entries in the network's packed order (``W_1, ..., W_L, b_1, ..., b_L``)."""
        return np.concatenate([w.ravel() for w in self.dW] + [b.ravel() for b in self.db])


@dataclass(eq=False)
class Network:
    """A layered Hopfield or prototypical network (plain data).

    Parameters
    ----------
    sizes : tuple of int
        Layer sizes, input first: ``(n_in, n_1, ..., n_L)``; at least one weight layer
        (two for ``cost="cross-entropy"``, whose last layer is the readout).
    kind : {"hopfield", "prototypical"}
    activation : {"hardsigmoid", "sigmoid", "tanh", "shifted-sigmoid"}
        :math:`\\rho` (hopfield) or :math:`\\sigma` (prototypical), see
        :func:`activation_functions`. ``hardsigmoid`` is ``clip(s, 0, 1)``; for the
        hopfield kind the state is then projected onto [0, 1] after every update (the
        paper's projected Euler step). The smooth ones leave the state unbounded.
    cost : {"squared", "cross-entropy"}
    weights : list of ndarray
        ``weights[l-1]`` is ``W_l`` with shape ``(sizes[l-1], sizes[l])``.
    biases : list of ndarray
        ``biases[l-1]`` is ``b_l`` with shape ``(sizes[l],)``.

    Notes
    -----
    The constructor copies the parameters into one flat C-contiguous buffer (packed order
    ``W_1 .. W_L, b_1 .. b_L``) and makes ``weights`` / ``biases`` views of it, so the
    kernels read all parameters without a copy. In-place updates (``W -= lr * dW``) keep
    this fast path; assigning a new array to ``net.weights[i]`` also works (the kernels
    then pack a copy per call).
    """

    sizes: tuple[int, ...]
    kind: str
    activation: str
    cost: str
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    _flat: np.ndarray = field(init=False, repr=False)
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.sizes = tuple(int(n) for n in self.sizes)
        _check_choice("kind", self.kind, KINDS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("cost", self.cost, COSTS)
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise ValueError(f"sizes must list >= 2 positive layer sizes, got {self.sizes}")
        if self.cost == "cross-entropy" and len(self.sizes) < 3:
            raise ValueError(
                "cost='cross-entropy' needs a hidden layer before the softmax readout: "
                f"sizes must have >= 3 entries, got {self.sizes}"
            )
        L = len(self.sizes) - 1
        if len(self.weights) != L or len(self.biases) != L:
            raise ValueError(
                f"sizes {self.sizes} need {L} weight matrices and {L} bias vectors, "
                f"got {len(self.weights)} and {len(self.biases)}"
            )
        dt = _as_dtype(np.asarray(self.weights[0]).dtype)
        self._flat = np.empty(self.n_params, dtype=dt)
        self._write_flat(self._flat, self.weights, self.biases)
        self.weights, self.biases = self._views(self._flat)
        # the view objects themselves: while the lists still hold them, packed() is free
        self._cache["views"] = tuple(self.weights + self.biases)

    # ----------------------------------------------------------------- layout
    @property
    def dtype(self) -> np.dtype:
        """Floating dtype of parameters and states (float32 or float64)."""
        return self._flat.dtype

    @property
    def n_layers(self) -> int:
        """Number of weight layers ``L`` (including a cross-entropy readout)."""
        return len(self.sizes) - 1

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Sizes of the layers held in the state (all but the input, and the readout)."""
        stop = -1 if self.cost == "cross-entropy" else None
        return self.sizes[1:stop]

    @property
    def n_state(self) -> int:
        """Number of state columns: sum of :attr:`state_sizes`."""
        return int(sum(self.state_sizes))

    @property
    def offsets(self) -> np.ndarray:
        """Column offsets of the state layers, length ``len(state_sizes) + 1``."""
        key = ("offsets", self.sizes, self.cost)
        off = self._cache.get(key)
        if off is None:
            off = np.concatenate([[0], np.cumsum(self.state_sizes)]).astype(np.int64)
            self._cache[key] = off
        return off

    @property
    def n_out(self) -> int:
        """Size of the output (targets ``d`` have this many columns)."""
        return self.sizes[-1]

    @property
    def n_params(self) -> int:
        s = self.sizes
        return int(sum(s[i] * s[i + 1] + s[i + 1] for i in range(len(s) - 1)))

    def _param_offsets(self) -> tuple[list[int], list[int]]:
        s, off, wo, bo = self.sizes, 0, [], []
        for i in range(len(s) - 1):
            wo.append(off)
            off += s[i] * s[i + 1]
        for i in range(len(s) - 1):
            bo.append(off)
            off += s[i + 1]
        return wo, bo

    def _views(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        s = self.sizes
        key = ("param_offsets", s)
        po = self._cache.get(key)
        if po is None:
            po = self._cache[key] = self._param_offsets()
        wo, bo = po
        ws = [flat[o : o + s[i] * s[i + 1]].reshape(s[i], s[i + 1]) for i, o in enumerate(wo)]
        bs = [flat[o : o + s[i + 1]] for i, o in enumerate(bo)]
        return ws, bs

    def _write_flat(self, flat, weights, biases) -> None:
        s = self.sizes
        for l, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
            w, b = np.asarray(w), np.asarray(b)
            if w.shape != (s[l - 1], s[l]):
                raise ValueError(
                    f"W_{l} must have shape (sizes[{l - 1}], sizes[{l}]) = {(s[l - 1], s[l])}, "
                    f"got {w.shape}"
                )
            if b.shape != (s[l],):
                raise ValueError(f"b_{l} must have shape ({s[l]},), got {b.shape}")
        wv, bv = self._views(flat)
        for dst, src in zip(wv + bv, list(weights) + list(biases), strict=True):
            dst[...] = src

    def packed(self) -> np.ndarray:
        """All parameters as one flat C-contiguous array (``W_1..W_L, b_1..b_L``).

        Returns the internal buffer itself (no copy) while ``weights``/``biases`` are still
        its views; otherwise a freshly packed copy in the network's dtype.
        """
        mine = self._cache.get("views")
        theirs = self.weights + self.biases
        if mine is not None and len(mine) == len(theirs):
            if all(a is b for a, b in zip(mine, theirs, strict=True)):
                return self._flat
        flat = np.empty_like(self._flat)
        self._write_flat(flat, self.weights, self.biases)
        return flat

    def layout(self, nudge: str = "inside") -> np.ndarray:
        """Integer description of the network read by the kernels (see :mod:`eqprop.kernels`).

        Cached per description and nudge: do not modify the returned array.
        """
        key = ("layout", self.sizes, self.kind, self.activation, self.cost, nudge)
        lay = self._cache.get(key)
        if lay is None:
            lay = self._make_layout(nudge)
            self._cache[key] = lay
        return lay

    def _make_layout(self, nudge: str) -> np.ndarray:
        nudge_code = {"inside": 0, "outside": 1, "clamp": 2}.get(nudge)
        if nudge_code is None:
            raise ValueError(f"unknown nudge {nudge!r}; choose 'inside' or 'outside'")
        if nudge == "clamp" and self.cost != "squared":
            raise ValueError(
                "clamping the output needs cost='squared' (with cross-entropy the output is a "
                "readout outside the state)"
            )
        wo, bo = self._param_offsets()
        return K.make_layout(
            KINDS.index(self.kind),
            ACTIVATIONS.index(self.activation),
            COSTS.index(self.cost),
            nudge_code,
            self.sizes,
            wo,
            bo,
            [int(v) for v in self.offsets],
        )

    @property
    def bounds(self) -> tuple[float, float] | None:
        """Box the state is projected onto: (0, 1) for a hardsigmoid Hopfield net, else None."""
        if self.kind == "hopfield" and self.activation == "hardsigmoid":
            return (0.0, 1.0)
        return None

    def __reduce__(self):
        # rebuild through the constructor so that weights/biases are views of the new
        # flat buffer again (pickle and deepcopy would otherwise restore independent arrays)
        return (
            type(self),
            (
                self.sizes,
                self.kind,
                self.activation,
                self.cost,
                [np.array(w) for w in self.weights],
                [np.array(b) for b in self.biases],
            ),
        )

    def copy(self) -> Network:
        """Deep copy (own parameter buffer)."""
        return dataclasses.replace(
            self,
            weights=[np.array(w, dtype=self.dtype) for w in self.weights],
            biases=[np.array(b, dtype=self.dtype) for b in self.biases],
        )

    def zero_state(self, batch: int) -> np.ndarray:
        """All-zero state ``(batch, n_state)`` in the network's dtype."""
        return np.zeros((int(batch), self.n_state), dtype=self.dtype)


def _check_sizes(sizes: object) -> tuple[int, ...]:
    """Layer sizes as a tuple of ints, or ValueError naming the offending value.

    Rejects a string (``"4-3-2"``: pass ``[4, 3, 2]``), sizes that are not whole
    numbers (``2.5`` is not rounded), booleans, fewer than two layers and sizes < 1.
    """
    if isinstance(sizes, (str, bytes)):
        raise ValueError(
            f"sizes is the string {sizes!r}; pass a sequence of ints, input first, e.g. "
            "[4, 3, 2] (eqprop.train.parse_architecture turns '4-3-2' into one)"
        )
    try:
        values = list(sizes)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(
            f"sizes is {sizes!r}; pass a sequence of layer sizes, e.g. [4, 3, 2]"
        ) from None
    out = []
    for v in values:
        whole = isinstance(v, (int, np.integer)) or (
            isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer()
        )
        if isinstance(v, (bool, np.bool_)) or not whole:
            raise ValueError(
                f"layer size {v!r} in sizes {values!r} is not a whole number; give integers"
            )
        out.append(int(v))
    if len(out) < 2 or min(out) < 1:
        raise ValueError(f"sizes must list >= 2 positive layer sizes, got {tuple(out)}")
    return tuple(out)


def init_network(
    sizes: Sequence[int],
    kind: str = "hopfield",
    activation: str = "hardsigmoid",
    cost: str = "squared",
    dtype: str | np.dtype | type = "float32",
    seed: int | np.random.Generator | None = 0,
    gain: float | Sequence[float] = 1.0,
    init: str = "glorot",
) -> Network:
    """Create a network with random weights (Glorot-uniform by default).

    ``init="glorot"``: :math:`W_l \\sim \\mathcal{U}(-a_l, a_l)`,
    :math:`a_l = g_l\\sqrt{6/(n_{l-1} + n_l)}` (Glorot & Bengio 2010, as used by
    Scellier & Bengio 2017), :math:`b_l = 0`. ``init="fan-in"``: :math:`W_l` and
    :math:`b_l` both :math:`\\sim \\mathcal{U}(-a_l, a_l)` with
    :math:`a_l = g_l/\\sqrt{n_{l-1}}`, the default initialisation of PyTorch's
    ``nn.Linear``, which the code of Ernoult et al. (2019) keeps.

    Parameters
    ----------
    sizes : sequence of int
        ``(n_in, n_1, ..., n_L)``, input first.
    kind, activation, cost : str
        See :class:`Network`.
    dtype : {"float32", "float64"}
    seed : int, Generator or None
        Seed of ``numpy.random.default_rng`` (or a Generator used as is).
    gain : float or sequence of float
        Multiplier :math:`g_l` of the bound, one for all layers or one per layer.
    init : {"glorot", "fan-in"}
        See above.

    Returns
    -------
    Network
    """
    _check_choice("kind", kind, KINDS)
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("cost", cost, COSTS)
    _check_choice("init", init, INITS)
    dt = _as_dtype(dtype)
    sizes = _check_sizes(sizes)
    L = len(sizes) - 1
    try:
        if np.ndim(gain) == 0:
            gains = [float(gain)] * L  # type: ignore[arg-type]
        else:
            gains = [float(g) for g in gain]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"gain is {gain!r}; give a number or one number per weight layer"
        ) from None
    if len(gains) != L:
        raise ValueError(f"gain needs one value or {L} values (one per weight layer)")
    bad_gains = [g for g in gains if not (np.isfinite(g) and g >= 0)]
    if bad_gains:
        raise ValueError(
            f"gain {bad_gains[0]!r}: the bound of the initial weights must be finite and >= 0 "
            "(e.g. gain=1.0; 0 gives zero weights)"
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    weights, biases = [], []
    for l in range(1, L + 1):
        if init == "glorot":
            a = gains[l - 1] * np.sqrt(6.0 / (sizes[l - 1] + sizes[l]))
        else:
            a = gains[l - 1] / np.sqrt(sizes[l - 1])
        weights.append(rng.uniform(-a, a, size=(sizes[l - 1], sizes[l])).astype(dt))
        if init == "glorot":
            biases.append(np.zeros(sizes[l], dtype=dt))
        else:
            biases.append(rng.uniform(-a, a, size=sizes[l]).astype(dt))
    return Network(sizes, kind, activation, cost, weights, biases)


# --------------------------------------------------------------------------- validation
def _finite_in_dtype(net: Network, arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as a C-contiguous array in ``net.dtype``; ValueError on NaN or inf entries."""
    arr = np.ascontiguousarray(arr, dtype=net.dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _batch_columns(
    net: Network, a, batch: int, what: str, n: int, name: str, note: str = ""
) -> np.ndarray:
    """``a`` as a finite C-contiguous ``(batch, n)`` array in ``net.dtype`` (``what``: n's name)."""
    arr = np.asarray(a)
    if arr.ndim != 2 or arr.shape != (batch, n):
        raise ValueError(
            f"{name} must have shape (batch, {what}) = ({batch}, {n}){note}, got {arr.shape}"
        )
    return _finite_in_dtype(net, arr, name)


def check_input(net: Network, x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a C-contiguous ``(batch, sizes[0])`` array in the network's dtype.

    Raises
    ------
    ValueError
        Wrong number of dimensions or columns, an empty batch, or non-finite entries.
    """
    arr = np.asarray(x)
    if arr.ndim == 1 and arr.shape[0] == net.sizes[0]:
        raise ValueError(f"{name} must be 2-D (batch, {net.sizes[0]}); use {name}[None, :]")
    if arr.ndim != 2 or arr.shape[1] != net.sizes[0] or arr.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (batch, {net.sizes[0]}) for sizes {net.sizes}, got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return _finite_in_dtype(net, arr, name)


def check_target(net: Network, d, batch: int, name: str = "d") -> np.ndarray:
    """Return targets as a C-contiguous ``(batch, n_out)`` array in the network's dtype."""
    return _batch_columns(net, d, batch, "n_out", net.n_out, name, " (one-hot or real targets)")


def check_state(net: Network, s, batch: int, name: str = "s") -> np.ndarray:
    """Return a state as a C-contiguous ``(batch, n_state)`` array in the network's dtype."""
    return _batch_columns(net, s, batch, "n_state", net.n_state, name)


def _target_or_zeros(net, d, batch):
    if d is None:
        return np.zeros((batch, net.n_out), dtype=net.dtype)
    return check_target(net, d, batch)


def _scalars(net, beta: float, eps: float = 0.0) -> np.ndarray:
    return np.array([beta, eps], dtype=net.dtype)


# --------------------------------------------------------------------------- evaluation
def _prepare(net: Network, x, s, d):
    """Checked state and targets plus the kernel inputs shared by energy and state_gradient."""
    x = check_input(net, x)
    s = check_state(net, s, x.shape[0])
    d = _target_or_zeros(net, d, x.shape[0])
    theta, lay = net.packed(), net.layout()
    drive = K.input_drive(theta, lay, x)
    work = K.make_work(lay, x.shape[0], net.dtype)
    return s, theta, lay, drive, d, work


def energy(net: Network, x, s, d=None, beta: float = 0.0) -> np.ndarray:
    """Total function :math:`F = E + \\beta C` (hopfield) or :math:`-\\Phi + \\beta C`.

    Parameters
    ----------
    net : Network
    x : ndarray (batch, sizes[0])
    s : ndarray (batch, n_state)
    d : ndarray (batch, n_out), optional
        Targets; needed when ``beta != 0``.
    beta : float

    Returns
    -------
    ndarray (batch,)
        One value per sample, in the network's dtype.
    """
    s, theta, lay, drive, d, work = _prepare(net, x, s, d)
    return K.total_energy(s, theta, lay, drive, d, _scalars(net, beta), work)


def state_gradient(net: Network, x, s, d=None, beta: float = 0.0) -> np.ndarray:
    """:math:`\\partial F/\\partial s` per sample, shape ``(batch, n_state)``.

    Hopfield: :math:`\\partial F/\\partial s_l = s_l - \\rho'(s_l)\\odot(\\rho(s_{l-1})W_l
    + b_l + \\rho(s_{l+1})W_{l+1}^\\top) + \\beta\\,\\partial C/\\partial s_l`;
    prototypical: :math:`-(s_{l-1}W_l + b_l + s_{l+1}W_{l+1}^\\top) + \\beta\\,\\partial
    C/\\partial s_l`. For ``hardsigmoid`` :math:`\\rho'(s) = 1` on the closed interval
    [0, 1] and 0 outside (a one-sided choice at the kinks).
    """
    s, theta, lay, drive, d, work = _prepare(net, x, s, d)
    out = np.empty_like(s)
    K.evaluate(s, out, theta, lay, drive, d, _scalars(net, beta), work, 0, s.shape[1], 2)
    return out


def contrast_gradient(
    net: Network,
    x,
    d,
    states: Sequence[np.ndarray],
    betas: Sequence[float],
    coeffs: Sequence[float],
) -> Gradient:
    """:math:`\\sum_k c_k\\, \\partial F/\\partial\\theta(s_k, \\beta_k)`, averaged over the batch.

    The building block of contrastive rules: EP one-sided is
    ``states=(s0, sb), betas=(0, b), coeffs=(-1/b, 1/b)``. Layers whose presynaptic
    activity is the input (same for all k) cost one matrix product whatever the number
    of states; the others one product over the states stacked along the batch.

    Hopfield: :math:`\\partial E/\\partial W_l = -\\rho(s_{l-1})^\\top\\rho(s_l)`,
    :math:`\\partial E/\\partial b_l = -\\rho(s_l)`; prototypical the same with
    :math:`s` for :math:`\\rho(s)`; a cross-entropy readout adds
    :math:`\\beta\\, a_{L-1}^\\top (o - d)` and :math:`\\beta (o - d)`.
    """
    x = check_input(net, x)
    B = x.shape[0]
    if not (len(states) == len(betas) == len(coeffs)) or len(states) == 0:
        raise ValueError("states, betas and coeffs must be non-empty and of equal length")
    S = np.empty((len(states), B, net.n_state), dtype=net.dtype)
    for k, s in enumerate(states):
        S[k] = check_state(net, s, B, name=f"states[{k}]")
    d = _target_or_zeros(net, d, B)
    return _contrast(net, x, d, S, betas, coeffs)


def _activities_np(net: Network, S: np.ndarray) -> np.ndarray:
    if net.kind == "prototypical":
        return S
    return activation_functions(net.activation)[0](S)


def _contrast(net, x, d, S, betas, coeffs, theta=None) -> Gradient:
    """Core of :func:`contrast_gradient` (no validation); ``S`` is (K, batch, n_state).

    NumPy/BLAS products: layer 1 ``x^T (sum_k c_k a_1^k)``, deeper layers one product
    over the K states stacked along the batch.
    """
    dt = net.dtype
    nK, B, _ = S.shape
    c = np.asarray(coeffs, dtype=dt)
    bt = np.asarray(betas, dtype=dt)
    A = _activities_np(net, S)
    G = np.empty(net.n_params, dtype=dt)  # every entry is written below
    dW, db = net._views(G)
    off = net.offsets
    cs = c * dt.type(-1.0 / B)  # fold -1/B into the small factor, not the product
    for l in range(1, len(off)):
        al = A[:, :, off[l - 1] : off[l]]
        if l == 1:
            csum = cs[0] * al[0]
            for k in range(1, nK):
                csum += cs[k] * al[k]
            np.dot(x.T, csum, out=dW[0])
            np.sum(csum, axis=0, out=db[0])
        else:
            prev = np.ascontiguousarray(A[:, :, off[l - 2] : off[l - 1]]).reshape(nK * B, -1)
            cl = (cs[:, None, None] * al).reshape(nK * B, -1)
            np.dot(prev.T, cl, out=dW[l - 1])
            np.sum(cl, axis=0, out=db[l - 1])
    cb = c * bt / dt.type(B)
    if net.cost == "cross-entropy":
        if not np.any(cb != 0):
            dW[-1][...] = 0
            db[-1][...] = 0
            return Gradient(dW, db)
        top = np.ascontiguousarray(A[:, :, off[-2] : off[-1]]).reshape(nK * B, -1)
        z = top @ net.weights[-1] + net.biases[-1]
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        z = z.reshape(nK, B, -1)
        z -= d[None]
        z *= cb[:, None, None]
        z = z.reshape(nK * B, -1)
        np.dot(top.T, z, out=dW[-1])
        np.sum(z, axis=0, out=db[-1])
    return Gradient(dW, db)


def parameter_gradient(net: Network, x, s, d=None, beta: float = 0.0) -> Gradient:
    """:math:`\\partial F/\\partial\\theta(s, \\beta)` averaged over the batch (see
    :func:`contrast_gradient`)."""
    return contrast_gradient(net, x, d, [s], [beta], [1.0])


def cost(net: Network, s, d) -> np.ndarray:
    """Per-sample cost ``(batch,)``: :math:`\\tfrac12\\|s_L - d\\|^2` (squared) or
    :math:`-\\sum_k d_k\\log o_k` (cross-entropy readout)."""
    s = np.asarray(s)
    if s.ndim != 2:
        raise ValueError(f"s must have shape (batch, {net.n_state}), got {s.shape}")
    s = check_state(net, s, s.shape[0])
    d = check_target(net, d, s.shape[0])
    lay = net.layout()
    return K.cost_value(s, net.packed(), lay, d, K.make_work(lay, s.shape[0], net.dtype))


def activities(net: Network, s) -> np.ndarray:
    """:math:`\\rho(s)` (hopfield) or ``s`` itself (prototypical), same shape as ``s``."""
    s = np.asarray(s, dtype=net.dtype)
    if net.kind == "prototypical":
        return s.copy()
    return K.activate(np.ascontiguousarray(s), ACTIVATIONS.index(net.activation))


def output(net: Network, s) -> np.ndarray:
    """Network output ``(batch, n_out)`` of a state.

    ``cost="squared"``: the output layer's state :math:`y = s_L`. ``cost="cross-entropy"``:
    the readout's probabilities :math:`\\mathrm{softmax}(a_{L-1}W_L + b_L)`.
    """
    s = np.asarray(s, dtype=net.dtype)
    if s.ndim != 2 or s.shape[1] != net.n_state:
        raise ValueError(f"s must have shape (batch, {net.n_state}), got {s.shape}")
    if net.cost == "squared":
        return np.array(s[:, -net.n_out :])
    a = activities(net, s)[:, net.offsets[-2] :]
    z = a @ net.weights[-1] + net.biases[-1]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
