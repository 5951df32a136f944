"""Free and nudged phases of the dense tied chain on the CUDA backend.

The GPU counterpart of :func:`eqprop.phases.run_phase` for an
:class:`eqprop.network.Network` (dense couplings, tied feedback, squared cost), for the
methods

* ``"fixed"`` / ``"picard"``: ``solvers``' damped Picard iteration
  :math:`x_{k+1} = x_k + a\\,(P(g(x_k)) - x_k)` on the map ``g`` of
  :mod:`eqprop.kernels`, for ``T`` / ``K`` fixed steps or to the per-sample tolerance
  ``atol + rtol max|x|`` (max norm);
* ``"fused"``: the same iterates with ``T`` / ``K`` map evaluations and the result of
  the CPU's fused path (one residual row, the residual of the state before the last
  update; :func:`eqprop.phases.run_phase` with ``method="fused"``);
* ``"gauss-seidel"`` / ``"gauss-seidel-parity"``: ``solvers.GaussSeidel`` block sweeps,
  one layer per group in order, or the odd layers (1, 3, ...) together then the even
  ones (red-black: layers of one parity do not interact in a layered network). Each
  iteration evaluates the whole map (the residual and the verdict are those of the state
  at the start of the sweep), updates the first group's columns from it, then
  re-evaluates each later group's layers from the state the earlier groups just wrote:
  :math:`x_S \\leftarrow P(x_S + a\\,(P(g(x)_S) - x_S))` (Scellier et al. 2023 run EP's
  phases with such asynchronous updates). Where the map of the even layers does not
  read their own states (:meth:`DeviceChain.parity_map_ignores_own_layers`: free
  prototypical phases, free hard-sigmoid Hopfield phases at ``eps = 1``), a red-black
  iteration after the first reuses their block values of the previous sweep instead of
  a whole map, as the CPU phases' ``solvers.GaussSeidel(last_group_independent=True)``
  (one full map in all, then one block per layer and sweep: ``nfev = 1``, ``nfev_block
  = max(n_iter) x layers``, the same counts as the CPU's).

and the same result: a :class:`eqprop.phases.Phase` holding a
:class:`solvers.SolveResult` (per-sample ``converged``, ``n_iter``, ``failed``,
``failure_iter``, the residual trace) built by the CPU solvers' code
(:func:`solvers.build_result`), so that the "never silent" rules are the same: a sample
whose state or residual is not finite or whose residual exceeds ``1e8`` is flagged
``failed`` (status FAILED, its index and iteration in the message), and
``Dynamics(raise_on_failure=True)`` raises :class:`solvers.SolverFailure`.

The products run through the array backend (:mod:`eqprop.gpu.backend`: cuBLAS via CuPy,
or NumPy as the tests' stand-in), the rest of a step in the Numba CUDA kernels of
:mod:`eqprop.gpu.kernels`. :class:`DeviceParams` keeps a network's parameters on the
device (the trainer keeps them there for a whole run, :mod:`eqprop.gpu.train`);
:func:`device_phase` runs one phase on device arrays and returns the device state with a
host result of per-sample flags only.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple

import numpy as np

import solvers
from eqprop.gpu import METHODS
from eqprop.gpu import kernels as GK
from eqprop.gpu.backend import ArrayBackend, get_backend
from eqprop.network import ACTIVATIONS, KINDS, Network, check_input, check_state, check_target
from eqprop.phases import (
    Clamped,
    Dynamics,
    Phase,
    _check_phase_request,
    fixed_steps_result,
    parity_map_ignores_own_layers,
)
from solvers import build_result

__all__ = [
    "METHODS",
    "DeviceParams",
    "DevicePhase",
    "device_phase",
    "free_phase",
    "nudged_phase",
    "run_phase",
    "sweep_groups",
]

_DIVERGENCE_BOUND = 1e8  # solvers.solve_fixed_point's default, as the CPU phases use it


def check_request(net, dyn: Dynamics, clamp_output: bool) -> None:
    """A ValueError naming what the GPU phases cannot do (instead of doing something else)."""
    if not isinstance(net, Network):
        raise ValueError(
            f"the CUDA phases run an eqprop.network.Network (dense tied chain), got "
            f"{type(net).__name__}; other coupling types have no GPU module yet"
        )
    if not isinstance(dyn, Dynamics):
        raise ValueError(f"dyn must be an eqprop.Dynamics, got {type(dyn).__name__}")
    if net.cost != "squared":
        raise ValueError(
            f"the CUDA phases support cost='squared' only, got {net.cost!r} "
            "(the softmax readout has no GPU kernel yet)"
        )
    if clamp_output:
        raise ValueError("the CUDA phases do not clamp the output yet (clamp_output=True)")
    if not isinstance(dyn.method, str) or dyn.method not in METHODS:
        raise ValueError(
            f"the CUDA phases run method {', '.join(map(repr, METHODS))}, got "
            f"{dyn.method_name!r}; use eqprop.phases on the CPU for the others"
        )
    if dyn.record_energy:
        raise ValueError("the CUDA phases cannot record the energy (record_energy=True)")
    _check_fused_fixed(dyn)


def _check_fused_fixed(dyn: Dynamics) -> None:
    """The CUDA fused path runs fixed steps only: refuse ``fixed_steps=False``."""
    if dyn.method == "fused" and not dyn.is_fixed_steps:
        raise ValueError(
            "the CUDA phases run method='fused' for fixed steps only (fixed_steps=False, "
            "the CPU's stop when the whole batch converged, has no GPU kernel yet); use "
            "the CPU, or method='picard' to a tolerance"
        )


def sweep_groups(n_layers: int, method: str) -> tuple[tuple[int, ...], ...]:
    """The groups of 0-based state layers that one iteration of ``method`` updates in
    turn: all layers at once (Picard), one group per layer (``"gauss-seidel"``), or
    state layers 0, 2, ... (the paper's odd layers 1, 3, ...) then 1, 3, ...
    (``"gauss-seidel-parity"``), as :mod:`eqprop.phases` builds ``solvers.GaussSeidel``'s
    groups from the layers' columns."""
    L = int(n_layers)
    if method == "gauss-seidel":
        return tuple((l,) for l in range(L))
    if method == "gauss-seidel-parity":
        return tuple(g for g in (tuple(range(0, L, 2)), tuple(range(1, L, 2))) if g)
    return (tuple(range(L)),)


class DeviceParams:
    """A dense chain's weights and biases on the device (copies; ``to_network`` writes
    them back into a host :class:`~eqprop.network.Network` in place).

    Attributes
    ----------
    W, b : list of device arrays
        ``W[l]`` (sizes[l], sizes[l+1]) and ``b[l]`` (sizes[l+1],), the network's dtype.
    """

    def __init__(self, net: Network, backend: str | ArrayBackend = "cupy"):
        self.be = get_backend(backend)
        self.dtype = net.dtype
        self.W = [self.be.to_device(np.asarray(w, dtype=net.dtype)) for w in net.weights]
        self.b = [self.be.to_device(np.asarray(b, dtype=net.dtype)) for b in net.biases]

    def to_network(self, net: Network) -> None:
        """Copy the device parameters into ``net.weights`` / ``net.biases`` in place."""
        for l in range(len(self.W)):
            net.weights[l][...] = self.be.to_host(self.W[l])
            net.biases[l][...] = self.be.to_host(self.b[l])


class DeviceChain:
    """The map ``g(s)`` of a dense chain on the device: the products through the backend,
    one element-wise kernel per layer. Parameters from :class:`DeviceParams` (shared,
    not copied); input drive and targets per phase (:meth:`set_input`)."""

    def __init__(self, net: Network, params: DeviceParams, nudge: str, eps: float):
        self.be = params.be
        self.params = params
        dt = net.dtype
        self.dt = dt
        self.kind = KINDS.index(net.kind)
        self.act = ACTIVATIONS.index(net.activation)
        self.nudge = 0 if nudge == "inside" else 1
        self.eps = dt.type(eps)
        self._eps_set = float(eps)
        self._net = net  # host description (kind, activation, bounds, layers), not copied
        self.off = [int(v) for v in net.offsets]
        self.L = len(self.off) - 1
        self.n_state = int(net.n_state)
        self.n_out = int(net.n_out)
        self.bounds = net.bounds
        self._B = -1
        self.beta = dt.type(0.0)
        self.target: Any = None
        self.drive: Any = None

    def _buffers(self, B: int) -> None:
        if B == self._B:
            return
        be, dt, off = self.be, self.dt, self.off
        sizes = [off[l + 1] - off[l] for l in range(self.L)]
        self.A = be.empty((B, self.n_state), dt)
        self.prev = [None] + [be.empty((B, n), dt) for n in sizes[1:]]
        self.nxt = [be.empty((B, n), dt) for n in sizes]
        self._B = B

    def set_input(self, xd, target, beta: float) -> None:
        """The phase's input drive ``x W_1 + b_1`` (once per phase, as
        ``eqprop.kernels.input_drive``), targets (device, (batch, n_out)) and ``beta``."""
        be, p = self.be, self.params
        self._buffers(int(xd.shape[0]))
        drive = be.matmul(xd, p.W[0])
        drive += p.b[0]
        self.drive = drive
        self.target = target
        self.beta = self.dt.type(beta)

    def set_beta(self, beta: float) -> None:
        """Nudge of the next phase (same input and targets)."""
        self.beta = self.dt.type(beta)

    def parity_map_ignores_own_layers(self, dyn: Dynamics) -> bool:
        """Whether this chain's map, in the phase set by :meth:`set_input`, has on each
        parity group values independent of that group's own states
        (:func:`eqprop.phases.parity_map_ignores_own_layers`, the predicate the CPU
        phases use; the device phases support no clamped output). Then a
        ``"gauss-seidel-parity"`` sweep may reuse the last group's block values for the
        next residual check, as ``solvers.GaussSeidel(last_group_independent=True)``.

        Raises
        ------
        ValueError
            ``dyn.eps`` is not the ``eps`` this chain was built with (the predicate would
            judge another map than the one evaluated).
        """
        if float(dyn.eps) != self._eps_set:
            raise ValueError(
                f"the chain was built with eps={self._eps_set!r} but the phase's Dynamics has "
                f"eps={float(dyn.eps)!r}: build the DeviceChain from the phase's Dynamics"
            )
        return parity_map_ignores_own_layers(self._net, dyn, float(self.beta), False)

    def map(self, s, out, layers=None) -> None:
        """``out = g(s)`` (eqprop.kernels.fixed_point_map, squared cost), or only the
        columns of the 0-based state ``layers`` (fixed_point_block)."""
        be, L, off, W, b = self.be, self.L, self.off, self.params.W, self.params.b
        B = s.shape[0]
        if self.kind == 0:
            A = self.A
            GK.launch(GK.activities_kernel, A.size, s, A, self.act)
        else:
            A = s
        zero = self.dt.type(0.0)
        for l in range(L) if layers is None else layers:
            n = off[l + 1] - off[l]
            prev = self.drive
            if l > 0:
                prev = self.prev[l]
                be.matmul(A[:, off[l - 1] : off[l]], W[l], out=prev)
            has_next = l + 1 < L
            if has_next:
                be.matmul(A[:, off[l + 1] : off[l + 2]], W[l + 1].T, out=self.nxt[l])
            top = l == L - 1
            GK.launch(
                GK.layer_map_kernel,
                B * n,
                s,
                out,
                prev,
                self.nxt[l],
                b[l],
                self.target,
                off[l],
                self.kind,
                self.act,
                l > 0,
                has_next,
                self.beta if top else zero,
                self.nudge,
                self.eps,
            )


class DevicePhase(NamedTuple):
    """A phase run on the device: ``state`` the final state (a device array, the
    network's dtype), ``result`` a :class:`solvers.SolveResult` whose ``x`` is that
    device array, ``beta`` the nudge."""

    state: Any
    result: solvers.SolveResult
    beta: float

    def to_host(self, be: ArrayBackend, beta: float | None = None) -> Phase:
        """This phase as a host :class:`eqprop.phases.Phase`: the state copied into a
        C-contiguous host array, which is also the result's ``x``; ``beta`` the nudge
        (default: this phase's); no clamped output."""
        state = np.ascontiguousarray(be.to_host(self.state))
        nudge = self.beta if beta is None else beta
        return Phase(state, dataclasses.replace(self.result, x=state), nudge, False)


def device_phase(
    chain: DeviceChain,
    xd,
    dyn: Dynamics,
    n_steps: int,
    *,
    sync_every: int = 8,
) -> DevicePhase:
    """Run one phase of ``chain`` (inputs set by :meth:`DeviceChain.set_input`) from the
    device state ``xd`` (updated in place) with ``dyn``'s method and damping.

    Only per-sample flags and residuals come back to the host (for the result); the
    state stays on the device. ``sync_every``: in tolerance mode, check every
    ``sync_every`` iterations on the host whether a sample still runs (changes only the
    wasted work, never the result).
    """
    _check_fused_fixed(dyn)
    be, dt = chain.be, chain.dt
    B = int(xd.shape[0])
    fused = dyn.method == "fused"
    fixed = dyn.is_fixed_steps
    limit = n_steps if fixed else dyn.max_iter
    groups = sweep_groups(chain.L, dyn.method)
    # as the CPU phases: where the last group's block values do not depend on its own
    # layers, they stay valid in gx after the sweep (the first group has not moved since),
    # so an iteration after the first evaluates only the first group's blocks
    reuse = (
        dyn.method == "gauss-seidel-parity"
        and len(groups) == 2
        and chain.parity_map_ignores_own_layers(dyn)
    )
    bnd = chain.bounds
    lo, hi = (0.0, 0.0) if bnd is None else bnd
    t0 = time.perf_counter()
    if bnd is not None:  # like the solvers: project the initial state
        GK.launch(GK.clip_kernel, xd.size, xd, float(lo), float(hi))
    gx = be.empty(xd.shape, dt)
    rows = (n_steps if fused else limit) + 1
    res = be.full((rows, B), np.nan, np.float64)
    rel = be.full((rows, B), np.nan, np.float64)
    active = be.full(B, True, np.bool_)
    n_iter = be.full(B, -1, np.int64)
    conv = be.zeros(B, np.bool_)
    failed = be.zeros(B, np.bool_)
    fail_iter = be.full(B, -1, np.int64)
    damping = dt.type(dyn.damping)
    off = chain.off
    # the fused path runs n_steps map evaluations and never stops a sample early
    n_loop = n_steps if fused else limit + 1
    k_limit = n_steps if fused else limit

    def update_block(l: int, project: bool) -> None:
        """Damped update of layer ``l``'s columns of the running samples from ``gx``
        (``project``: ``gx`` was re-evaluated within the sweep and is projected first)."""
        GK.launch(
            GK.block_update_kernel,
            B,
            xd,
            gx,
            off[l],
            off[l + 1],
            float(lo),
            float(hi),
            bnd is not None,
            damping,
            active,
            project,
        )

    for k in range(n_loop):
        if reuse and k > 0:
            chain.map(xd, gx, groups[0])
        else:
            chain.map(xd, gx)
        first = groups[0]
        GK.launch(
            GK.residual_update_kernel,
            B,
            xd,
            gx,
            float(lo),
            float(hi),
            bnd is not None,
            damping,
            k,
            float(dyn.atol),
            float(dyn.rtol),
            k_limit,
            fixed or fused,
            _DIVERGENCE_BOUND,
            active,
            res,
            rel,
            n_iter,
            conv,
            failed,
            fail_iter,
            off[first[0]] if len(groups) > 1 else 0,
            off[first[0] + 1] if len(groups) > 1 else xd.shape[1],
        )
        if len(groups) > 1 and k < k_limit:  # at the limit every sample has stopped
            for l in first[1:]:
                update_block(l, False)
            for grp in groups[1:]:
                chain.map(xd, gx, grp)
                for l in grp:
                    update_block(l, True)
        if (
            not (fixed or fused)
            and k < limit
            and (k + 1) % sync_every == 0
            and not bool(be.to_host(active).any())
        ):
            break
    be.synchronize()
    wall = time.perf_counter() - t0
    if fused:
        result = _fused_result(be, xd, res, n_steps, dyn, wall)
        return DevicePhase(xd, result, 0.0)
    n_iter_h = be.to_host(n_iter)
    n_rows = int(n_iter_h.max()) + 1
    # the evaluations solvers' driver makes (it stops when the last sample does; the
    # device may run up to sync_every - 1 more iterations, which change nothing)
    if reuse:  # one full map, then per sweep every layer once as a block
        nfev = 1
        nfev_block = (n_rows - 1) * sum(len(g) for g in groups)
    else:
        nfev = n_rows
        nfev_block = (n_rows - 1) * sum(len(g) for g in groups[1:])
    out = (
        be.to_host(res)[:n_rows].copy(),
        be.to_host(rel)[:n_rows].copy(),
        np.full((0, B), np.nan),
        np.zeros(0, dtype=np.int64),
        n_iter_h,
        be.to_host(conv),
        be.to_host(failed),
        be.to_host(fail_iter),
        nfev,
        nfev_block,
        xd,
        np.zeros(B, dtype=np.int64),
        np.full(B, -1, dtype=np.int64),
    )
    what = "Picard" if len(groups) == 1 else "GaussSeidel"
    reused = ", last_group_independent=True" if reuse else ""
    result = build_result(
        out=out,
        fixed_steps=n_steps if fixed else None,
        do_observe=False,
        wall_time=wall,
        method=f"cuda {what}(damping={dyn.damping:g}{reused}) [{be.name}]",
        raise_on_failure=dyn.raise_on_failure,
        extras=("n_fallback", "fallback_iter"),
    )
    return DevicePhase(xd, result, 0.0)


def _fused_result(be: ArrayBackend, xd, res, n_steps: int, dyn: Dynamics, wall: float):
    """The result of the CPU's fused path (:func:`eqprop.phases.fixed_steps_result`) from
    the device run: row ``n_steps - 1`` of the residual trace is the residual
    ``max_i |P(g(x))_i - x_i|`` of the state before the last update; ``converged``: it
    meets ``atol + rtol max|x|`` of the final state; a sample fails when that residual
    or its final state is not finite."""
    xp = be.xp
    return fixed_steps_result(
        xd,
        be.to_host(res[n_steps - 1]).astype(np.float64),
        n_steps,
        dyn,
        wall,
        "fused",
        finite=be.to_host(xp.isfinite(xd).all(axis=1)),
        xmax=be.to_host(xp.abs(xd).max(axis=1)).astype(np.float64),
        method=f"fused Picard(damping={dyn.damping:g}) [cuda {be.name}]",
    )


def run_phase(
    net: Network,
    x,
    dyn: Dynamics,
    *,
    beta: float = 0.0,
    d=None,
    s0=None,
    steps: int | None = None,
    clamp_output: bool = False,
    backend: str | ArrayBackend = "cupy",
    sync_every: int = 8,
    params: DeviceParams | None = None,
) -> Phase:
    """:func:`eqprop.phases.run_phase` of a dense tied chain on the CUDA backend.

    Parameters
    ----------
    net : eqprop.network.Network
        Squared cost, either kind, any activation; float32 or float64 (kept).
    x : ndarray (batch, sizes[0]) or eqprop.phases.Clamped
    dyn : eqprop.Dynamics
        ``method`` one of :data:`METHODS` (with ``damping``), fixed steps or tolerance.
    beta, d, s0, steps
        As :func:`eqprop.phases.run_phase` (host arrays; checked the same way).
    backend : {"cupy", "numpy"} or ArrayBackend
        Where the products run: cuBLAS (default) or NumPy (the CPU stand-in, for tests
        under ``NUMBA_ENABLE_CUDASIM=1``).
    sync_every : int
        In tolerance mode, check every ``sync_every`` iterations on the host whether any
        sample is still running (a device-to-host copy). Samples stop individually on the
        device, so this changes only the wasted work, never the result.
    params : DeviceParams, optional
        The network's parameters already on the device (else uploaded for this phase).

    Returns
    -------
    eqprop.phases.Phase
        ``state`` a host array (batch, n_state) in the network's dtype; ``result`` a
        ``solvers.SolveResult`` as the CPU path's (``residual`` row ``k`` is the residual
        of the state after ``k`` updates; ``observed`` None).

    Raises
    ------
    ValueError
        Bad input, or a setting the GPU phases do not support (named).
    solvers.SolverFailure
        ``dyn.raise_on_failure`` and a sample failed.
    """
    check_request(net, dyn, clamp_output)
    if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
        raise ValueError(f"sync_every must be an integer >= 1, got {sync_every!r}")
    be = get_backend(backend) if params is None else params.be
    xh = x.x if isinstance(x, Clamped) else check_input(net, x)
    B = int(xh.shape[0])
    beta = _check_phase_request(beta, d, clamp_output)
    dt = net.dtype
    target = np.zeros((B, net.n_out), dtype=dt) if d is None else check_target(net, d, B)
    s = net.zero_state(B) if s0 is None else check_state(net, s0, B, name="s0")
    n_steps = dyn.T if steps is None else int(steps)
    if params is None:
        params = DeviceParams(net, be)
    chain = DeviceChain(net, params, dyn.nudge, dyn.eps)
    chain.set_input(be.to_device(xh), be.to_device(target), beta)
    ph = device_phase(
        chain, be.to_device(np.ascontiguousarray(s, dtype=dt)), dyn, n_steps, sync_every=sync_every
    )
    return ph.to_host(be, beta)


def free_phase(net: Network, x, dyn: Dynamics, s0=None, **kw) -> Phase:
    """:func:`eqprop.phases.free_phase` on the CUDA backend (``beta = 0``, ``dyn.T``
    steps or to tolerance); keywords as :func:`run_phase`."""
    return run_phase(net, x, dyn, beta=0.0, s0=s0, steps=dyn.T, **kw)


def nudged_phase(net: Network, x, d, beta: float, dyn: Dynamics, s0=None, **kw) -> Phase:
    """:func:`eqprop.phases.nudged_phase` on the CUDA backend (``beta != 0``, ``dyn.K``
    steps or to tolerance, from ``s0``, normally the free state)."""
    beta = float(beta)
    if beta == 0.0:
        raise ValueError("nudged_phase needs beta != 0 (beta = 0 is the free phase)")
    if d is None:
        raise ValueError("nudged_phase needs targets d of shape (batch, n_out)")
    return run_phase(net, x, dyn, beta=beta, d=d, s0=s0, steps=dyn.K, **kw)
