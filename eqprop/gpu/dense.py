"""Free and nudged phases of the dense tied chain on the CUDA backend.

The GPU counterpart of :func:`eqprop.phases.run_phase` for an
:class:`eqprop.network.Network` (dense couplings, tied feedback, squared cost): the same
iteration as ``Dynamics(method="fixed")`` / ``"picard"``, i.e. ``solvers``' damped
Picard iteration :math:`x_{k+1} = x_k + a\\,(P(g(x_k)) - x_k)` on the map ``g`` of
:mod:`eqprop.kernels`, for ``T`` / ``K`` fixed steps or to the tolerance
``atol + rtol max|x|`` (per sample, max norm), and the same result: a
:class:`eqprop.phases.Phase` holding a :class:`solvers.SolveResult` (per-sample
``converged``, ``n_iter``, ``failed``, ``failure_iter``, the residual trace) built by the
same code as the CPU solvers', so that the "never silent" rules are the same: a sample
whose state or residual is not finite or whose residual exceeds ``1e8`` is flagged
``failed`` (status FAILED, its index and iteration in the message), and
``Dynamics(raise_on_failure=True)`` raises :class:`solvers.SolverFailure`.

The products run through the array backend (:mod:`eqprop.gpu.backend`: cuBLAS via CuPy,
or NumPy as the tests' stand-in), the rest of a step in the Numba CUDA kernels of
:mod:`eqprop.gpu.kernels`. States, parameters and records stay on the device during
the phase; the final state and the records come back once.
"""

from __future__ import annotations

import time

import numpy as np

from eqprop.gpu import kernels as GK
from eqprop.gpu.backend import ArrayBackend, get_backend
from eqprop.network import ACTIVATIONS, KINDS, Network, check_input, check_state, check_target
from eqprop.phases import Clamped, Dynamics, Phase, _check_phase_request
from solvers._common import build_result

__all__ = ["METHODS", "free_phase", "nudged_phase", "run_phase"]

#: ``Dynamics.method`` names the GPU phases run (damped Picard, fixed steps or tolerance).
METHODS = ("fixed", "picard")
_DIVERGENCE_BOUND = 1e8  # solvers.solve_fixed_point's default, as the CPU phases use it


def _check_request(net, dyn: Dynamics, clamp_output: bool) -> None:
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
    if dyn.method not in METHODS:
        raise ValueError(
            f"the CUDA phases run method {' or '.join(map(repr, METHODS))} (damped Picard), "
            f"got {dyn.method_name!r}; use eqprop.phases on the CPU for the others"
        )
    if dyn.record_energy:
        raise ValueError("the CUDA phases cannot record the energy (record_energy=True)")


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
) -> Phase:
    """:func:`eqprop.phases.run_phase` of a dense tied chain on the CUDA backend.

    Parameters
    ----------
    net : eqprop.network.Network
        Squared cost, either kind, any activation; float32 or float64 (kept).
    x : ndarray (batch, sizes[0]) or eqprop.phases.Clamped
    dyn : eqprop.Dynamics
        ``method`` "fixed" or "picard" (with ``damping``), fixed steps or tolerance mode.
    beta, d, s0, steps
        As :func:`eqprop.phases.run_phase` (host arrays; checked the same way).
    backend : {"cupy", "numpy"} or ArrayBackend
        Where the products run: cuBLAS (default) or NumPy (the CPU stand-in, for tests
        under ``NUMBA_ENABLE_CUDASIM=1``).
    sync_every : int
        In tolerance mode, check every ``sync_every`` iterations on the host whether any
        sample is still running (a device-to-host copy). Samples stop individually on the
        device, so this changes only the wasted work, never the result.

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
    _check_request(net, dyn, clamp_output)
    if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
        raise ValueError(f"sync_every must be an integer >= 1, got {sync_every!r}")
    be = get_backend(backend)
    xh = x.x if isinstance(x, Clamped) else check_input(net, x)
    B = int(xh.shape[0])
    beta = _check_phase_request(beta, d, clamp_output)
    dt = net.dtype
    target = np.zeros((B, net.n_out), dtype=dt) if d is None else check_target(net, d, B)
    s = net.zero_state(B) if s0 is None else check_state(net, s0, B, name="s0")
    n_steps = dyn.T if steps is None else int(steps)
    fixed = dyn.is_fixed_steps
    limit = n_steps if fixed else dyn.max_iter
    bnd = net.bounds
    lo, hi = (0.0, 0.0) if bnd is None else bnd
    if bnd is not None:  # like the solvers: project the initial state
        s = np.clip(s, lo, hi)
    t0 = time.perf_counter()
    chain = _DeviceChain(net, be, xh, target, beta, dyn)
    xd = be.to_device(np.ascontiguousarray(s, dtype=dt))
    gx = be.empty(xd.shape, dt)
    res = be.full((limit + 1, B), np.nan, np.float64)
    rel = be.full((limit + 1, B), np.nan, np.float64)
    active = be.full(B, True, np.bool_)
    n_iter = be.full(B, -1, np.int64)
    conv = be.zeros(B, np.bool_)
    failed = be.zeros(B, np.bool_)
    fail_iter = be.full(B, -1, np.int64)
    damping = dt.type(dyn.damping)
    nfev = 0
    for k in range(limit + 1):
        chain.map(xd, gx)
        nfev += 1
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
            limit,
            fixed,
            _DIVERGENCE_BOUND,
            active,
            res,
            rel,
            n_iter,
            conv,
            failed,
            fail_iter,
        )
        if k < limit and (k + 1) % sync_every == 0 and not bool(be.to_host(active).any()):
            break
    be.synchronize()
    wall = time.perf_counter() - t0
    n_iter_h = be.to_host(n_iter)
    rows = int(n_iter_h.max()) + 1
    out = (
        be.to_host(res)[:rows].copy(),
        be.to_host(rel)[:rows].copy(),
        np.full((0, B), np.nan),
        np.zeros(0, dtype=np.int64),
        n_iter_h,
        be.to_host(conv),
        be.to_host(failed),
        be.to_host(fail_iter),
        nfev,
        0,
        np.ascontiguousarray(be.to_host(xd)),
        np.zeros(B, dtype=np.int64),
        np.full(B, -1, dtype=np.int64),
    )
    result = build_result(
        out=out,
        fixed_steps=n_steps if fixed else None,
        do_observe=False,
        wall_time=wall,
        method=f"cuda Picard(damping={dyn.damping:g}) [{be.name}]",
        raise_on_failure=dyn.raise_on_failure,
        extras=("n_fallback", "fallback_iter"),
    )
    return Phase(result.x, result, beta, False)


class _DeviceChain:
    """The network's parameters, input drive and targets on the device, and its map
    ``g(s)`` as products (backend) plus one element-wise kernel per layer."""

    def __init__(self, net: Network, be: ArrayBackend, x, target, beta: float, dyn: Dynamics):
        dt = net.dtype
        self.be = be
        self.kind = KINDS.index(net.kind)
        self.act = ACTIVATIONS.index(net.activation)
        self.nudge = 0 if dyn.nudge == "inside" else 1
        self.eps = dt.type(dyn.eps)
        self.beta = dt.type(beta)
        self.W = [be.to_device(np.asarray(w, dtype=dt)) for w in net.weights]
        self.b = [be.to_device(np.asarray(b, dtype=dt)) for b in net.biases]
        self.target = be.to_device(target)
        B = int(x.shape[0])
        self.off = [int(v) for v in net.offsets]
        sizes = net.state_sizes
        self.L = len(sizes)
        # input drive x W_1 + b_1, once per phase (as eqprop.kernels.input_drive)
        drive = be.matmul(be.to_device(x), self.W[0])
        drive += self.b[0]
        self.drive = drive
        self.A = be.empty((B, net.n_state), dt)  # rho(s) (hopfield); s (prototypical)
        self.prev = [drive] + [be.empty((B, n), dt) for n in sizes[1:]]
        self.nxt = [be.empty((B, n), dt) for n in sizes]
        self.WT = [w.T for w in self.W]

    def map(self, s, out) -> None:
        """``out = g(s)`` (eqprop.kernels.fixed_point_map, squared cost)."""
        be, L, off = self.be, self.L, self.off
        B = s.shape[0]
        if self.kind == 0:
            A = self.A
            GK.launch(GK.activities_kernel, A.size, s, A, self.act)
        else:
            A = s
        for l in range(L):  # 0-based: state layer l is the paper's layer l + 1
            n = off[l + 1] - off[l]
            if l > 0:
                be.matmul(A[:, off[l - 1] : off[l]], self.W[l], out=self.prev[l])
            has_next = l + 1 < L
            if has_next:
                be.matmul(A[:, off[l + 1] : off[l + 2]], self.WT[l + 1], out=self.nxt[l])
            top = l == L - 1
            GK.launch(
                GK.layer_map_kernel,
                B * n,
                s,
                out,
                self.prev[l],
                self.nxt[l],
                self.b[l],
                self.target,
                off[l],
                self.kind,
                self.act,
                l > 0,
                has_next,
                self.beta if top else self.beta.dtype.type(0.0),
                self.nudge,
                self.eps,
            )


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
