"""Phases of convolutional graph networks on the CUDA backend (Picard, layer sweeps).

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
  ``_layer_update`` of the CPU path); or only the layers of one group of a sweep (the
  couplings into or out of them).
* :func:`run_phase`, by :func:`eqprop.gpu.dense.device_phase`. Fixed-steps ``"fixed"`` /
  ``"fused"`` / ``"picard"``: ``T`` / ``K`` map evaluations of the damped, projected
  iteration :math:`s \\leftarrow s + a\\,(P(g(s)) - s)` (:math:`P` the network's common
  box, if any; the initial state projected too) and the CPU conv fast path's result: one
  residual row (the residual of the state before the last update), per-sample
  ``converged`` / ``failed``. Picard to a tolerance and Gauss-Seidel sweeps over whole
  layers (``"gauss-seidel"``: one layer at a time in state order; ``"gauss-seidel-parity"``:
  the red-black sweep of Scellier et al. 2023, state layers 0, 2, ... then 1, 3, ...),
  fixed steps or to a tolerance: the iteration and result of
  :meth:`eqprop.graph.conv_kernels.FastMap.solve` (``solvers``' semantics: per-sample
  stopping, residual trace, ``nfev`` / ``nfev_block``).

Training conv networks on the GPU: :class:`eqprop.gpu.train.GraphDeviceRun`.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from eqprop.gpu import CONV_METHODS
from eqprop.gpu import kernels as GK
from eqprop.gpu.backend import ArrayBackend, get_backend
from eqprop.gpu.conv import DeviceConv2d
from eqprop.gpu.dense import device_phase
from eqprop.graph import kernels as GRK
from eqprop.graph.model import GraphNetwork
from eqprop.phases import Dynamics, Phase, _check_phase_request, check_graph_batch

__all__ = ["METHODS", "DeviceGraphMap", "check_graph", "phase_dynamics", "run_phase"]

#: ``Dynamics.method`` names the CUDA conv phases run (:data:`eqprop.gpu.CONV_METHODS`).
METHODS = CONV_METHODS


def phase_dynamics(dyn: Dynamics) -> Dynamics:
    """The dynamics :func:`eqprop.gpu.dense.device_phase` runs for ``dyn`` on a conv graph
    map: fixed-steps ``"fixed"`` / ``"picard"`` as ``"fused"`` (the CPU conv fast path's
    fixed-steps relaxation and its one-row result), anything else unchanged (the
    iteration of :meth:`eqprop.graph.conv_kernels.FastMap.solve`)."""
    if dyn.method in ("fixed", "fused", "picard") and dyn.is_fixed_steps:
        return dataclasses.replace(dyn, method="fused", fixed_steps=None)
    return dyn


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
    if not isinstance(dyn.method, str) or dyn.method not in METHODS:
        raise ValueError(
            f"the CUDA conv phases run the methods {', '.join(METHODS)} (Picard and "
            f"whole-layer Gauss-Seidel sweeps), got {dyn.method_name!r}"
        )
    if dyn.method == "fused" and not dyn.is_fixed_steps:
        raise ValueError("method 'fused' runs fixed steps (fixed_steps=False: use 'picard')")
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
        # the state layers, in state order, are the groups' units of a sweep
        bounds = [net.offsets[la.name] for la in net.state_layers]
        if any(b[0] != a[1] for a, b in itertools.pairwise(bounds)) or bounds[0][0] != 0:
            raise ValueError(f"the state layers' columns are not contiguous in order: {bounds}")
        self.L = len(bounds)
        self.off = [0] + [b for _, b in bounds]
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
        self._columns = {name: (ab, code) for name, ab, code, *_ in self.layers}
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
        """False: :func:`eqprop.gpu.dense.device_phase` does not reuse a parity group's
        block values on this map (the predicate :class:`~eqprop.gpu.dense.DeviceChain`
        answers for dense chains): the CPU conv fast map it equals refuses that reuse
        (``GaussSeidel(last_group_independent=True)``), so each red-black sweep evaluates
        the first group's blocks again, as there."""
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
        """``out = g(s)``, or only the columns of the 0-based state layers ``layers`` (one
        group of a sweep: the drives of those layers alone, from the couplings into or
        out of them, summed in the order of the full map)."""
        be = self.be
        if layers is None:
            wanted = {name for name, *_ in self.layers}
        else:
            wanted = {self.layers[l][0] for l in layers}
        acts: dict[str, Any] = {self.net.input_layer.name: self.x}

        def act(name):  # each activity once per evaluation, only where needed
            if name not in acts:
                (a, b), code = self._columns[name]
                acts[name] = self._activity(s, name, a, b, code)
            return acts[name]

        U = {name: self.drive[name].copy() for name in wanted}
        for c, op, scale in self.inner_ops:
            fwd, back = c.target in wanted, c.source in wanted
            if isinstance(op, DeviceConv2d):
                if fwd:
                    U[c.target] += op.forward_drive(act(c.source))
                if back:
                    U[c.source] += op.feedback_drive(act(c.target), act(c.source))
            else:
                if fwd:
                    U[c.target] += be.matmul(act(c.source), op)
                if back:
                    fb = be.matmul(act(c.target), op.T)
                    U[c.source] += fb * self.dt.type(scale) if scale != 1.0 else fb
        nudged = self.beta != 0.0
        G = None
        if nudged:
            a, b = self.net.offsets[self.out_name]
            G = s[:, a:b] - self.target
        for name, (a, _b), code, has_box, lo, hi in self.layers:
            if name not in wanted:
                continue
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
                code,
                self.hop,
                self.dt.type(self.eps),
                self.dt.type(self.beta),
                here,
                self.inside,
                has_box,
                lo,
                hi,
            )


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
    """:func:`eqprop.phases.run_phase` of a conv graph network on the CUDA backend (the
    CPU conv fast path's iterates and result; methods :data:`METHODS`).

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
    sd = be.to_device(np.ascontiguousarray(s, dt))
    ph = device_phase(gmap, sd, phase_dynamics(dyn), n_steps)  # type: ignore[arg-type]
    return ph.to_host(be, beta)
