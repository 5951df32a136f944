"""Phases of convolutional graph networks on the CUDA backend (fixed-steps Picard).

The GPU counterpart of the CPU conv fast path (:class:`eqprop.graph.conv_kernels.FastMap`
through :func:`eqprop.phases.run_phase`) for a :class:`~eqprop.graph.model.GraphNetwork`
with ``conv2d`` (optionally pooled) and dense couplings, tied or ``scaled`` feedback, an
output layer in the state (squared cost), nudge inside or outside:

* :class:`DeviceGraphMap`: the map :math:`g(s)` on device arrays. The constant drive of
  a batch (biases, per channel for conv layers, plus every coupling from the input) is
  computed once (:meth:`~DeviceGraphMap.set_input`); each evaluation adds the inner
  couplings' forward and feedback drives (:class:`eqprop.gpu.conv.DeviceConv2d`, im2col
  + GEMM; dense ``a W`` and ``gamma a W^T`` through the backend's matmul) and updates
  every layer in one Numba CUDA kernel (:func:`eqprop.gpu.kernels.graph_layer_kernel`:
  ``_layer_update`` of the CPU path).
* :func:`run_phase`: ``T`` / ``K`` map evaluations of the damped, projected iteration
  :math:`s \\leftarrow s + a\\,(P(g(s)) - s)` (:math:`P` the network's common box, if
  any; the initial state projected too), by :func:`eqprop.gpu.dense.device_phase` in its
  fused mode, and the CPU conv fast path's result: one residual row (the residual of the
  state before the last update), per-sample ``converged`` / ``failed``.

Training conv networks on the GPU: :class:`eqprop.gpu.train.GraphDeviceRun`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from eqprop.gpu import kernels as GK
from eqprop.gpu.backend import ArrayBackend, get_backend
from eqprop.gpu.conv import DeviceConv2d
from eqprop.gpu.dense import device_phase
from eqprop.graph import kernels as GRK
from eqprop.graph.model import GraphNetwork
from eqprop.phases import Dynamics, Phase, _check_phase_request, check_graph_batch

__all__ = ["DeviceGraphMap", "check_graph", "run_phase"]


def check_graph(net: Any, dyn: Dynamics, clamp_output: bool) -> None:
    """A ValueError naming what the GPU conv phases cannot run."""
    if not isinstance(net, GraphNetwork):
        raise ValueError(f"the CUDA conv phases run a GraphNetwork, got {type(net).__name__}")
    if net.output_layer.role == "readout":
        raise ValueError("the CUDA conv phases have no softmax readout (cost='squared' only)")
    if net.dtype.kind == "c":
        raise ValueError(f"the CUDA conv phases run real states, got {net.dtype.name}")
    for c in net.couplings:
        if c.feedback not in ("tied", "scaled"):
            raise ValueError(
                f"coupling {c.name!r}: feedback {c.feedback!r} has no CUDA path (tied or "
                "scaled only)"
            )
    if clamp_output:
        raise ValueError("the CUDA conv phases do not clamp the output yet (clamp_output=True)")
    if dyn.method not in ("fixed", "fused", "picard") or not dyn.is_fixed_steps:
        raise ValueError(
            f"the CUDA conv phases run fixed-steps Picard (method 'fixed', 'fused' or "
            f"'picard' with fixed steps), got {dyn.method_name!r}"
            + ("" if dyn.is_fixed_steps else " to a tolerance")
        )
    if dyn.record_energy:
        raise ValueError("the CUDA conv phases cannot record the energy (record_energy=True)")


class DeviceGraphMap:
    """The map of a conv graph network on the device (parameters uploaded once).

    Duck-types the part of :class:`eqprop.gpu.dense.DeviceChain` that
    :func:`eqprop.gpu.dense.device_phase` uses (``be``, ``dt``, ``L``, ``off``,
    ``bounds``, ``map``) for the fused / fixed-steps iteration.
    """

    def __init__(
        self,
        net: GraphNetwork,
        backend: str | ArrayBackend,
        nudge: str,
        eps: float,
        params: dict[str, Any] | None = None,
    ):
        be = self.be = get_backend(backend)
        self.net = net
        self.dt = np.dtype(net.dtype)
        self.eps = float(eps)
        self.inside = nudge != "outside"
        self.hop = net.kind == "hopfield"
        self.L = 1  # one group: the synchronous map
        self.off = [0, int(net.n_state)]
        self.bounds = GRK.common_box(net)
        self.layers = [
            (
                la.name,
                net.offsets[la.name],
                GRK._ACT_CODE[la.activation],
                la.box is not None,
                0.0 if la.box is None else float(la.box[0]),
                1.0 if la.box is None else float(la.box[1]),
            )
            for la in net.state_layers
        ]
        if params is None:  # the parameters on the device, in net.parameters()' order
            params = {k: be.to_device(np.asarray(v, self.dt)) for k, v in net.parameters().items()}
        self.params = params
        self.input_ops: list[tuple[Any, Any]] = []
        self.inner_ops: list[tuple[Any, Any, float]] = []
        for c in net.couplings:
            W = params[f"{c.name}.W"]
            if c.type == "conv2d":
                op: Any = DeviceConv2d(c, be)
                op.W = W  # shares the device parameter
            else:
                op = W
            if net.layer(c.source).role == "input":
                self.input_ops.append((c, op))
            else:
                scale = c.gamma if c.feedback == "scaled" else 1.0
                self.inner_ops.append((c, op, scale))
        self.out_name = net.output_layer.name
        self.beta = 0.0
        self.target: Any = None
        self.x: Any = None
        self.drive: dict[str, Any] = {}

    def set_input(self, xd, target, beta: float) -> None:
        """The batch's constant drive (biases + input couplings), targets and ``beta``."""
        be, B = self.be, int(xd.shape[0])
        self.drive = {}
        for la in self.net.state_layers:
            d = be.zeros((B, la.size), self.dt)
            bias = self.params.get(f"{la.name}.b")
            if bias is not None and la.channel_bias:  # a channel's value over its image
                assert la.shape is not None
                d += be.xp.repeat(bias, la.shape[1] * la.shape[2])
            elif bias is not None:
                d += bias
            self.drive[la.name] = d
        for c, op in self.input_ops:
            if isinstance(op, DeviceConv2d):
                self.drive[c.target] += op.forward_drive(xd)
            else:
                self.drive[c.target] += be.matmul(xd, op)
        self.x, self.target, self.beta = xd, target, float(beta)

    def set_beta(self, beta: float) -> None:
        """Nudge of the next phase (same input and targets)."""
        self.beta = float(beta)

    def parity_map_ignores_own_layers(self, dyn: Dynamics) -> bool:
        """False: :func:`eqprop.gpu.dense.device_phase` may not reuse a parity group's
        block values on this map (the predicate :class:`~eqprop.gpu.dense.DeviceChain`
        answers for dense chains). The graph's device phases run fixed steps only
        (``method="fused"``), and a conv coupling's map is not shown independent of its
        group's own layers (the CPU conv fast map refuses the reuse too)."""
        return False

    def activities(self, s) -> dict[str, Any]:
        """The activities by layer name: the input, and rho(s) (Hopfield) or s per layer."""
        acts = {self.net.input_layer.name: self.x}
        for name, (a, b), act, *_ in self.layers:
            acts[name] = self._activity(s, name, a, b, act)
        return acts

    def _activity(self, s, name, a, b, act):
        if not self.hop:
            return s[:, a:b]
        out = self.be.empty((s.shape[0], b - a), self.dt)
        GK.launch(GK.activities_kernel, out.size, s[:, a:b].copy(), out, act)
        return out

    def map(self, s, out, layers=None) -> None:
        """``out = g(s)`` (all layers; ``layers`` must be None: one synchronous group)."""
        assert layers is None
        be = self.be
        acts = self.activities(s)
        U = {name: self.drive[name].copy() for name in self.drive}
        for c, op, scale in self.inner_ops:
            if isinstance(op, DeviceConv2d):
                U[c.target] += op.forward_drive(acts[c.source])
                U[c.source] += op.feedback_drive(acts[c.target], acts[c.source])
            else:
                U[c.target] += be.matmul(acts[c.source], op)
                fb = be.matmul(acts[c.target], op.T)
                U[c.source] += fb * self.dt.type(scale) if scale != 1.0 else fb
        nudged = self.beta != 0.0
        G = None
        if nudged:
            a, b = self.net.offsets[self.out_name]
            G = s[:, a:b] - self.target
        B = int(s.shape[0])
        for name, (a, _b), act, has_box, lo, hi in self.layers:
            here = nudged and name == self.out_name
            u = U[name]
            GK.launch(
                GK.graph_layer_kernel,
                u.size,
                s,
                u,
                G if here else u,
                out,
                a,
                act,
                self.hop,
                self.dt.type(self.eps),
                self.dt.type(self.beta),
                here,
                self.inside,
                has_box,
                lo,
                hi,
            )
        del B


def run_phase(
    net: GraphNetwork,
    x,
    dyn: Dynamics,
    *,
    beta: float = 0.0,
    d=None,
    s0=None,
    steps: int | None = None,
    clamp_output: bool = False,
    backend: str | ArrayBackend = "cupy",
    gmap: DeviceGraphMap | None = None,
) -> Phase:
    """:func:`eqprop.phases.run_phase` of a conv graph network on the CUDA backend
    (fixed-steps Picard, the CPU conv fast path's iterates and result).

    Parameters as :func:`eqprop.phases.run_phase` (host arrays); ``backend`` as
    :func:`eqprop.gpu.dense.run_phase`; ``gmap`` a :class:`DeviceGraphMap` of ``net``
    with its parameters already on the device (its nudge and ``eps`` must be ``dyn``'s).
    Returns a Phase with a host state.
    """
    check_graph(net, dyn, clamp_output)
    be = get_backend(backend) if gmap is None else gmap.be
    beta = _check_phase_request(beta, d, clamp_output)
    B = int(np.shape(x)[0]) if np.ndim(x) == 2 else 0  # a bad shape is refused below
    xh = check_graph_batch(net, x, net.n_in, "x", B)
    dt = np.dtype(net.dtype)
    target = (
        np.zeros((B, net.n_out), dt) if d is None else check_graph_batch(net, d, net.n_out, "d", B)
    )
    s = net.zero_state(B) if s0 is None else check_graph_batch(net, s0, net.n_state, "s0", B)
    n_steps = dyn.T if steps is None else int(steps)
    if gmap is None:
        gmap = DeviceGraphMap(net, be, dyn.nudge, dyn.eps)
    gmap.set_input(be.to_device(np.ascontiguousarray(xh, dt)), be.to_device(target), beta)
    fused = dataclasses.replace(dyn, method="fused", fixed_steps=None)
    ph = device_phase(gmap, be.to_device(np.ascontiguousarray(s, dt)), fused, n_steps)  # type: ignore[arg-type]
    return ph.to_host(be, beta)
