"""Reference NumPy implementation of a :class:`~eqprop.graph.model.GraphNetwork`.

Readable, not fast: every quantity is a sum over the couplings (their module, e.g.
:mod:`eqprop.graph.dense`) and the layers. Real and complex dtypes (complex: holomorphic
activations; no conjugation anywhere, every formula is holomorphic in the state).

Notation: :math:`a_l = \\rho_l(s_l)` (hopfield) or :math:`a_l = s_l` (prototypical),
:math:`a_{in} = x`. The drive of a state layer is

.. math:: u_l = b_l + \\sum_{c:\\,dst(c)=l} a_{src(c)} W_c
          + \\sum_{c:\\,src(c)=l} \\mathrm{fb}_c(a_{dst(c)}),

with :math:`\\mathrm{fb}_c(a) = a W_c^\\top` (tied), :math:`\\gamma_c a W_c^\\top`
(scaled), :math:`a B_c` (free, random); couplings into a readout do not take part.
With every coupling tied, the total function

.. math::

    F(s, \\beta) = \\underbrace{\\sum_l \\tfrac12 s_l\\cdot s_l}_{\\text{hopfield only}}
      - \\sum_l b_l\\cdot a_l - \\sum_c \\langle a_{src(c)} W_c, a_{dst(c)}\\rangle
      + \\beta\\, C(s)

(:math:`E + \\beta C` for hopfield, :math:`-\\Phi + \\beta C` for prototypical) has
:math:`\\partial F/\\partial s_l = s_l - \\rho'_l(s_l)\\odot u_l + \\beta\\,\\partial
C/\\partial s_l` (hopfield) and :math:`-u_l + \\beta\\,\\partial C/\\partial s_l`
(prototypical). Whatever the feedback, the dynamics are

* hopfield: vector field :math:`f = -(s - \\rho'(s)\\odot u + \\beta\\,\\partial C/\\partial s)`,
  map :math:`g(s) = \\Pi(s + \\epsilon f)` (projected Euler step);
* prototypical: map :math:`g(s)_l = \\Pi(\\sigma_l(u_l - \\beta\\,\\partial C/\\partial s_l))`
  (nudge inside) or :math:`\\Pi(\\sigma_l(u_l)) - \\beta\\,\\partial C/\\partial s_l`
  (outside), vector field :math:`g(s) - s`,

with :math:`\\Pi` the projection of each layer onto its box (if it has one).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from eqprop.graph import conv, dense
from eqprop.graph.model import Coupling, GraphNetwork, layer_activation

__all__ = [
    "activities",
    "bias_gradients",
    "cost",
    "cost_state_gradient",
    "drives",
    "energy",
    "fixed_point_map",
    "output",
    "parameter_gradient",
    "readout_logits",
    "state_gradient",
    "vector_field",
]

_MODULES = {"dense": dense, "conv2d": conv}
NUDGES = ("inside", "outside", "clamp")


def coupling_module(c: Coupling):
    """The module computing coupling ``c`` (one per coupling type)."""
    return _MODULES[c.type]


# ----------------------------------------------------------------------------- checks
def _batch(net: GraphNetwork, a, cols: int, name: str, batch: int | None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2 or arr.shape[1] != cols or (batch is not None and arr.shape[0] != batch):
        want = f"({'batch' if batch is None else batch}, {cols})"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} has an empty batch")
    if net.dtype.kind != "c" and np.iscomplexobj(arr):
        raise ValueError(f"{name} is complex but the network's dtype is {net.dtype.name}")
    arr = np.ascontiguousarray(arr, dtype=net.dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _inputs(net, x, s, d=None, beta=0.0):
    x = _batch(net, x, net.n_in, "x", None)
    s = _batch(net, s, net.n_state, "s", x.shape[0])
    if d is None:
        if beta != 0:
            raise ValueError("targets d are needed when beta != 0")
        d = np.zeros((x.shape[0], net.n_out), dtype=net.dtype)
    else:
        d = _batch(net, d, net.n_out, "d", x.shape[0])
    return x, s, d


def _nudge(net: GraphNetwork, nudge: str, d, beta) -> str:
    if nudge not in NUDGES:
        raise ValueError(f"unknown nudge {nudge!r}; choose 'inside', 'outside' or 'clamp'")
    if nudge == "clamp":
        out = net.output_layer
        if out.role != "output":
            raise ValueError(
                f"layer {out.name!r}: clamping the output needs it in the state (role "
                "'output'), not a readout"
            )
        if d is None or beta != 0:
            raise ValueError("a clamped phase needs targets d and beta = 0")
    return nudge


def _clamp_output(net: GraphNetwork, out: np.ndarray, s, d, value: str, eps: float):
    """Output columns set to ``d`` (map) or ``(d - s) / eps`` (field: one Euler step of
    size ``eps`` lands on ``d``), as today's clamped phase."""
    a, b = net.offsets[net.output_layer.name]
    out[:, a:b] = d if value == "map" else (d - s[:, a:b]) / eps
    return out


# ----------------------------------------------------------------------------- pieces
def activities(net: GraphNetwork, x: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """:math:`a_l` of every layer but the readout: ``x`` for the input, :math:`\\rho_l(s_l)`
    (hopfield) or :math:`s_l` (prototypical) for the state layers."""
    acts = {net.input_layer.name: x}
    for name, v in net.split(s).items():
        if net.kind == "hopfield":
            acts[name] = layer_activation(net.layer(name).activation)[0](v)
        else:
            acts[name] = v
    return acts


def drives(net: GraphNetwork, acts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:math:`u_l` of every state layer (module docstring), by name."""
    batch = acts[net.input_layer.name].shape[0]
    u = {}
    for layer in net.state_layers:
        u[layer.name] = np.zeros((batch, layer.size), dtype=net.dtype)
        if layer.bias is not None:
            u[layer.name] += layer.bias_vector()
    for c in net.couplings:
        if net.layer(c.target).role == "readout":
            continue
        m = coupling_module(c)
        u[c.target] += m.forward_drive(c, acts[c.source])
        if c.source in u:
            u[c.source] += m.feedback_drive(c, acts[c.target], acts[c.source])
    return u


def readout_logits(net: GraphNetwork, acts: dict[str, np.ndarray]) -> np.ndarray:
    """Logits :math:`z = b + \\sum_c a_{src(c)} W_c` of the readout layer."""
    out = net.output_layer
    batch = acts[net.input_layer.name].shape[0]
    z = np.zeros((batch, out.size), dtype=net.dtype)
    if out.bias is not None:
        z += out.bias
    for c in net.couplings:
        if c.target == out.name:
            z += coupling_module(c).forward_drive(c, acts[c.source])
    return z


def _softmax(z: np.ndarray) -> np.ndarray:
    if z.dtype.kind != "c":
        z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _logits(net: GraphNetwork, acts, s) -> np.ndarray:
    """What the cost reads: the output state, or the readout's logits."""
    out = net.output_layer
    if out.role == "readout":
        return readout_logits(net, acts)
    return net.split(s)[out.name]


def output(net: GraphNetwork, x, s) -> np.ndarray:
    """Network output (batch, n_out): the output state (squared cost) or the softmax
    probabilities of the output state / readout logits (cross-entropy)."""
    x, s, _ = _inputs(net, x, s)
    z = _logits(net, activities(net, x, s), s)
    return np.array(z) if net.cost == "squared" else _softmax(z)


def _cost(net, acts, s, d) -> np.ndarray:
    z = _logits(net, acts, s)
    if net.cost == "squared":
        return 0.5 * np.sum((z - d) ** 2, axis=1)
    if z.dtype.kind == "c":
        lse = np.log(np.sum(np.exp(z), axis=1))
    else:
        m = z.max(axis=1)
        lse = m + np.log(np.sum(np.exp(z - m[:, None]), axis=1))
    return -np.sum(d * z, axis=1) + np.sum(d, axis=1) * lse


def cost(net: GraphNetwork, x, s, d) -> np.ndarray:
    """Per-sample cost :math:`C` (batch,): :math:`\\tfrac12\\|s_{out} - d\\|^2` or
    :math:`-\\sum_k d_k \\log\\mathrm{softmax}(z)_k`."""
    x, s, d = _inputs(net, x, s, d)
    return _cost(net, activities(net, x, s), s, d)


def _cost_state_gradient(net, acts, s, d) -> np.ndarray:
    g = np.zeros_like(s)
    out = net.output_layer
    z = _logits(net, acts, s)
    err = z - d if net.cost == "squared" else _softmax(z) - d
    off = net.offsets
    if out.role != "readout":
        a, b = off[out.name]
        g[:, a:b] = err
        return g
    for c in net.couplings:  # dC/da_src = err W^T, then the chain rule through rho
        if c.target != out.name:
            continue
        a, b = off[c.source]
        back = err @ c.W.T
        if net.kind == "hopfield":
            back = back * layer_activation(net.layer(c.source).activation)[1](s[:, a:b])
        g[:, a:b] += back
    return g


def cost_state_gradient(net: GraphNetwork, x, s, d) -> np.ndarray:
    """:math:`\\partial C/\\partial s` (batch, n_state)."""
    x, s, d = _inputs(net, x, s, d)
    return _cost_state_gradient(net, activities(net, x, s), s, d)


# ----------------------------------------------------------------------------- F and dF/ds
def energy(net: GraphNetwork, x, s, d=None, beta=0.0) -> np.ndarray:
    """Total function :math:`F = E + \\beta C` (hopfield) or :math:`-\\Phi + \\beta C`
    (prototypical), per sample (batch,). Raises for a network with untied feedback."""
    net.require_energy()
    x, s, d = _inputs(net, x, s, d, beta)
    acts = activities(net, x, s)
    F = np.zeros(x.shape[0], dtype=net.dtype)
    if net.kind == "hopfield":
        F += 0.5 * np.sum(s * s, axis=1)
    for layer in net.state_layers:
        if layer.bias is not None:
            F -= acts[layer.name] @ layer.bias_vector()
    for c in net.couplings:
        if net.layer(c.target).role != "readout":
            F += coupling_module(c).energy_term(c, acts[c.source], acts[c.target])
    if beta != 0:
        F += beta * _cost(net, acts, s, d)
    return F


def _derivative(net, s) -> np.ndarray:
    """:math:`\\rho'_l(s_l)` per column (hopfield)."""
    out = np.empty_like(s)
    for name, (a, b) in net.offsets.items():
        out[:, a:b] = layer_activation(net.layer(name).activation)[1](s[:, a:b])
    return out


def _stack(net, parts: dict[str, np.ndarray], like: np.ndarray) -> np.ndarray:
    out = np.empty_like(like)
    for name, (a, b) in net.offsets.items():
        out[:, a:b] = parts[name]
    return out


def _negative_field_hopfield(net, x, s, d, beta):
    """:math:`s - \\rho'(s)\\odot u + \\beta\\,\\partial C/\\partial s` (= dF/ds when tied)."""
    acts = activities(net, x, s)
    u = _stack(net, drives(net, acts), s)
    out = s - _derivative(net, s) * u
    if beta != 0:
        out += beta * _cost_state_gradient(net, acts, s, d)
    return out


def state_gradient(net: GraphNetwork, x, s, d=None, beta=0.0) -> np.ndarray:
    """:math:`\\partial F/\\partial s` (batch, n_state); raises for untied feedback."""
    net.require_energy("a state gradient")
    x, s, d = _inputs(net, x, s, d, beta)
    if net.kind == "hopfield":
        return _negative_field_hopfield(net, x, s, d, beta)
    acts = activities(net, x, s)
    out = -_stack(net, drives(net, acts), s)
    if beta != 0:
        out += beta * _cost_state_gradient(net, acts, s, d)
    return out


def _project(net, s) -> np.ndarray:
    for name, (a, b) in net.offsets.items():
        box = net.layer(name).box
        if box is not None:
            np.clip(s[:, a:b], box[0], box[1], out=s[:, a:b])
    return s


def fixed_point_map(
    net: GraphNetwork, x, s, d=None, beta=0.0, *, eps: float = 0.5, nudge: str = "inside"
) -> np.ndarray:
    """One synchronous step :math:`g(s)` (module docstring), a new (batch, n_state) array.

    ``eps`` is the hopfield Euler step (unused by the prototypical kind); ``nudge`` is
    the prototypical nudge convention (``"inside"``, ``"outside"``; unused by the
    hopfield kind) or ``"clamp"`` (both kinds, ``beta = 0``): the output layer is set to
    the targets ``d`` (contrastive Hebbian learning's clamped phase).
    """
    _nudge(net, nudge, d, beta)
    x, s, d = _inputs(net, x, s, d, beta)
    if nudge == "clamp":
        free = fixed_point_map(net, x, s, None, 0.0, eps=eps)
        return _clamp_output(net, free, s, d, "map", eps)
    if net.kind == "hopfield":
        return _project(net, s - eps * _negative_field_hopfield(net, x, s, d, beta))
    acts = activities(net, x, s)
    u = _stack(net, drives(net, acts), s)
    dC = _cost_state_gradient(net, acts, s, d) if beta != 0 else None
    if dC is not None and nudge == "inside":
        u = u - beta * dC
    out = np.empty_like(s)
    for name, (a, b) in net.offsets.items():
        out[:, a:b] = layer_activation(net.layer(name).activation)[0](u[:, a:b])
    out = _project(net, out)
    if dC is not None and nudge == "outside":
        out -= beta * dC
    return out


def vector_field(
    net: GraphNetwork, x, s, d=None, beta=0.0, *, nudge: str = "inside", eps: float = 0.5
) -> np.ndarray:
    """:math:`ds/dt`: hopfield :math:`-(s - \\rho'(s)\\odot u + \\beta\\,\\partial C/\\partial
    s)` (no projection), prototypical :math:`g(s) - s`. Any feedback mode. With
    ``nudge="clamp"`` the output columns are :math:`(d - y)/\\epsilon` (``eps`` is read
    only then)."""
    _nudge(net, nudge, d, beta)
    x, s, d = _inputs(net, x, s, d, beta)
    if nudge == "clamp":
        return _clamp_output(net, vector_field(net, x, s), s, d, "field", eps)
    if net.kind == "hopfield":
        return -_negative_field_hopfield(net, x, s, d, beta)
    return fixed_point_map(net, x, s, d, beta, nudge=nudge) - s


# ----------------------------------------------------------------------------- dF/dtheta
def parameter_gradient(net: GraphNetwork, x, s, d=None, beta=0.0) -> dict[str, np.ndarray]:
    """:math:`\\partial F/\\partial\\theta(s, \\beta)` averaged over the batch, by parameter
    name (:meth:`GraphNetwork.parameters`).

    Per coupling :math:`-a_{src}^\\top a_{dst}/\\mathrm{batch}`; per bias
    :math:`-\\overline{a_l}`; a readout's couplings and bias get
    :math:`\\beta\\,\\partial C/\\partial\\theta` (:math:`\\beta a_{src}^\\top (o - d)` and
    :math:`\\beta (o - d)`, batch mean). With untied feedback there is no F: the same
    local products are returned (what contrastive rules contrast), and a free ``B`` gets
    :func:`eqprop.graph.dense.feedback_gradient`.
    """
    x, s, d = _inputs(net, x, s, d, beta)
    batch = x.shape[0]
    acts = activities(net, x, s)
    out_layer = net.output_layer
    grads: dict[str, np.ndarray] = {}
    err = None
    if out_layer.role == "readout":
        err = beta * (_softmax(readout_logits(net, acts)) - d)
    for c in net.couplings:
        if c.target == out_layer.name and err is not None:
            grads[f"{c.name}.W"] = acts[c.source].T @ err / batch
            continue
        m = coupling_module(c)
        grads[f"{c.name}.W"] = m.weight_gradient(c, acts[c.source], acts[c.target])
        gB = m.feedback_gradient(c, acts[c.source], acts[c.target])
        if gB is not None:
            grads[f"{c.name}.B"] = gB
    grads.update(bias_gradients(net, acts, err))
    return grads


def bias_gradients(
    net: GraphNetwork, signal: Mapping[str, np.ndarray], err: np.ndarray | None
) -> dict[str, np.ndarray]:
    r"""``"<layer>.b"`` entries of a parameter gradient (batch mean): a readout's bias gets
    ``err`` (its :math:`\partial C/\partial z`, batch, n_out), every other bias
    :math:`-\overline{\mathrm{signal}_l}` through :meth:`Layer.bias_gradient`
    (``signal``: the activities for :func:`parameter_gradient`, the error vectors for the
    generalized holomorphic estimate)."""
    grads: dict[str, np.ndarray] = {}
    for layer in net.layers:
        if layer.bias is None:
            continue
        if layer.role == "readout":
            assert err is not None
            grads[f"{layer.name}.b"] = err.mean(axis=0)
        else:
            grads[f"{layer.name}.b"] = layer.bias_gradient(-signal[layer.name].mean(axis=0))
    return grads
