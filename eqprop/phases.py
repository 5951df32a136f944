"""Phases: the network's dynamics with the input clamped, handed to a ``solvers`` method.

A phase relaxes the state ``s`` (layers 1..L, input clamped) of a batch under the total
function :math:`F = E + \\beta C` (hopfield) or the map
:math:`s \\leftarrow \\sigma(\\partial\\Phi/\\partial s - \\beta\\,\\partial C/\\partial s)`
(prototypical, nudge inside) until a fixed number of steps or a tolerance:

* free phase: :math:`\\beta = 0`, ``T`` steps, from zero, or from ``s0`` (persistent
  particles: a stored per-sample state);
* nudged phase: :math:`\\beta \\ne 0`, ``K`` steps, from the free state (``s0``).

How a phase is solved is set by :class:`Dynamics`. ``method="fixed"`` (default) is the
papers' mode: exactly ``T`` / ``K`` synchronous updates
``s <- proj(g(s))`` through ``solvers.solve_fixed_point(..., method=Picard(),
fixed_steps=...)``, where ``g`` is one projected Euler step of size ``eps``
(hopfield, Scellier & Bengio 2017) or one step of the discrete-time map (prototypical,
Ernoult et al. 2019). Any ``solvers`` method can be used instead, by name or as an
object, run to tolerance or for fixed steps.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import solvers
from eqprop import kernels as K
from eqprop.graph import kernels as GK
from eqprop.graph import reference as GR
from eqprop.graph.build import chain_mismatch, to_network
from eqprop.graph.model import GraphNetwork
from eqprop.network import Network, check_input, check_state, check_target, output

__all__ = [
    "METHOD_NAMES",
    "PATHS",
    "Clamped",
    "Dynamics",
    "Phase",
    "clamp",
    "free_phase",
    "nudged_phase",
    "predict",
    "run_phase",
]

_FP_NAMES = ("fixed", "fused", "picard", "anderson", "gauss-seidel", "gauss-seidel-parity")
_DAMPED_NAMES = ("fixed", "fused", "picard", "anderson", "gauss-seidel", "gauss-seidel-parity")
_ODE_NAMES = ("euler", "rk4", "dopri5")
METHOD_NAMES = _FP_NAMES + _ODE_NAMES
#: ``path`` of :func:`clamp` for a graph network.
PATHS = ("auto", "fast", "general")


@dataclass(frozen=True)
class Dynamics:
    """How phases are run.

    Parameters
    ----------
    T : int
        Steps of the free phase (fixed-steps mode), >= 1.
    K : int
        Steps of a nudged phase (fixed-steps mode), >= 1.
    eps : float
        Step size > 0. Hopfield: the projected Euler step
        :math:`s \\leftarrow \\mathrm{clip}(s - \\epsilon\\,\\partial F/\\partial s, 0, 1)`
        (the fixed-point map's step, and the ``dt`` of named ODE methods).
        Prototypical: the map has no step; ``eps`` is only the ``dt`` of named ODE
        methods on :math:`ds/dt = g(s) - s` (``euler`` with ``eps=1`` is the map).
    method : str or solvers method object
        ``"fixed"`` (default: Picard, ``T``/``K`` steps), ``"fused"`` (the
        same iteration in one Numba loop, bypassing ``solvers``; see
        :func:`eqprop.kernels.fused_fixed_steps`), ``"picard"``, ``"anderson"``,
        ``"gauss-seidel"`` (one group per layer, in order), ``"gauss-seidel-parity"``
        (odd layers 1, 3, ... together, then even layers: in a layered network layers of
        one parity do not interact, so this is the asynchronous, block-coordinate
        update; on a chain whose map there ignores a layer's own state, see
        :func:`parity_map_ignores_own_layers`, each iteration evaluates only the odd
        layers' block for its residual check and reuses the even layers' block values of
        the previous sweep, ``solvers.GaussSeidel(last_group_independent=True)``: the
        same iterates, one map per sweep instead of 1.5), ``"euler"``, ``"rk4"``
        (``dt=eps``), ``"dopri5"``; or an instance of
        ``solvers.Picard``, ``Anderson``, ``GaussSeidel``, ``Euler``, ``RK4``, ``Dopri5``.
    damping : float
        Damping of the named fixed-point methods (``"fixed"``, ``"fused"``,
        ``"picard"``, ``"anderson"``, ``"gauss-seidel"``, ``"gauss-seidel-parity"``):
        ``s <- P((1 - damping) s + damping g(s))``; must stay 1 for the ODE methods.
        Prototypical: ``damping`` is the ``dt`` of the code of Ernoult et al. (2019),
        ``s <- s + dt (g(s) - s)`` (their current code defaults to ``dt = 0.2``; the
        paper's map is ``dt = 1``). Hopfield: damping ``a`` inside the box is the step
        ``a * eps``. With the hard-sigmoid hopfield map at ``eps = 1``,
        ``g(s)_l = clip(drive_l)`` is the exact minimiser of the energy over layer ``l``
        given its neighbours, so ``"gauss-seidel-parity"`` is block coordinate descent and
        ``damping`` in (1, 2) over-relaxes it (``benchmarks/bench_deep_phases.py``:
        damping 1.5 reaches the residual of the paper's ``T`` steps in 0.13-0.16 ``T``
        iterations on a trained 784-500-500-10 network).
    nudge : {"inside", "outside"}
        Prototypical only. ``"inside"``: :math:`y \\leftarrow \\sigma(Wh + b + \\beta(d-y))`
        (Laborieux et al. 2021; fixed points are stationary points of a primitive
        function, EP exact as :math:`\\beta\\to0`); ``"outside"``:
        :math:`y \\leftarrow \\sigma(Wh + b) + \\beta(d - y)` (Ernoult et al. 2019 code).
        Ignored by the hopfield kind (its nudge is the gradient of :math:`\\beta C`).
    fixed_steps : bool or None
        Run exactly ``T``/``K`` updates (True) or until ``atol + rtol*max|s|`` (False,
        up to ``max_iter``). None: True for ``"fixed"``/``"fused"``, False otherwise.
        ``"fused"`` with False runs the fused path's own synchronous updates (the
        iterates of ``"fixed"``) and stops after the first update ``n`` at which EVERY
        sample ``b`` of the batch meets
        :math:`r_b = \\max_i |x_{n,b,i} - x_{n-1,b,i}| / \\text{damping} \\le
        \\text{atol} + \\text{rtol} \\max_i |x_{n,b,i}|`; the whole batch steps until the
        last sample converges (no per-sample freezing), so the state is that of ``n``
        fixed steps, to the bit. Its cap is ``min(T, max_iter)`` updates for a free phase
        (``min(K, max_iter)`` for a nudged one, or of the phase's explicit ``steps``):
        the fixed-steps count is the paper's iteration it shortens, and ``max_iter`` is
        the cap of every tolerance mode (:func:`eqprop.kernels.fused_tolerance_steps`).
        Layered networks and dense tied graph chains only: other graph networks and the
        CUDA phases refuse it (their ``"fused"`` stops samples one by one, or has no
        tolerance kernel).
    atol, rtol : float
        Solver tolerance on the max-norm residual of each sample (see ``solvers``).
    max_iter : int
        Iteration cap in tolerance mode.
    record_energy : bool
        Record the total function :math:`F` along the trajectory (``result.observed``,
        one row per recorded iteration, (n_records, batch), the state's dtype): a chain's
        :func:`eqprop.network.energy`, or on a graph network's general path
        :func:`eqprop.graph.kernels.observe_energy` (= :func:`eqprop.graph.reference.energy`);
        a graph network with untied feedback has no F and raises ValueError naming the
        coupling.
    record_every : int
        Recording period in iterations.
    raise_on_failure : bool
        Raise ``solvers.SolverFailure`` when a sample diverges.
    """

    T: int = 20
    K: int = 4
    eps: float = 0.5
    method: Any = "fixed"
    damping: float = 1.0
    nudge: str = "inside"
    fixed_steps: bool | None = None
    atol: float = 1e-6
    rtol: float = 0.0
    max_iter: int = 1000
    record_energy: bool = False
    record_every: int = 1
    raise_on_failure: bool = False

    def __post_init__(self) -> None:
        for name in ("T", "K", "max_iter", "record_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"Dynamics.{name} must be an integer >= 1, got {v!r}")
        if not np.isfinite(self.eps) or self.eps <= 0:
            raise ValueError(f"Dynamics.eps must be a finite step size > 0, got {self.eps!r}")
        if self.nudge not in ("inside", "outside"):
            raise ValueError(f"unknown nudge {self.nudge!r}; choose 'inside' or 'outside'")
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"Dynamics.{name} must be finite and >= 0, got {v!r}")
        m = self.method
        if not (np.isfinite(self.damping) and 0 < self.damping < 2):
            raise ValueError(f"Dynamics.damping must be in (0, 2), got {self.damping!r}")
        if self.damping != 1.0 and m not in _DAMPED_NAMES:
            raise ValueError(
                f"Dynamics.damping applies to the methods {', '.join(_DAMPED_NAMES)}; "
                f"method {m!r} takes damping=1 (pass a solvers object to damp it)"
            )
        if m == "fused" and self.record_energy:
            raise ValueError("method='fused' cannot record the energy; use method='fixed'")
        if isinstance(m, str):
            if m not in METHOD_NAMES:
                raise ValueError(
                    f"unknown method {m!r}; choose one of {', '.join(METHOD_NAMES)} "
                    "or pass a solvers method object"
                )
        elif not isinstance(m, _fp_classes() + _ode_classes()):
            raise ValueError(
                f"method must be a name or a solvers method (Picard, Anderson, Broyden, "
                f"GaussSeidel, Euler, RK4, Dopri5), got {m!r}"
            )

    @property
    def method_name(self) -> str:
        m = self.method
        return m if isinstance(m, str) else type(m).__name__.lower()

    @property
    def is_fixed_steps(self) -> bool:
        if self.fixed_steps is None:
            return self.method in ("fixed", "fused")
        return bool(self.fixed_steps)


def _fp_classes() -> tuple[type, ...]:
    return (solvers.Picard, solvers.Anderson, solvers.Broyden, solvers.GaussSeidel)


def _ode_classes() -> tuple[type, ...]:
    return tuple(getattr(solvers, n) for n in ("Euler", "RK4", "Dopri5") if hasattr(solvers, n))


def _layer_columns(net: Network | GraphNetwork) -> list[tuple[int, int]]:
    """``[start, stop)`` state columns of each state layer, in state order."""
    if isinstance(net, GraphNetwork):
        off = net.offsets
        return [off[la.name] for la in net.state_layers]
    o = [int(v) for v in net.offsets]
    return [(o[i], o[i + 1]) for i in range(len(o) - 1)]


def parity_map_ignores_own_layers(net: Network, dyn: Dynamics, beta, clamp_output: bool) -> bool:
    """Whether the map of a phase of the layered chain ``net`` has, on the layers of one
    parity, values that do not depend on those layers' own states (then
    ``"gauss-seidel-parity"`` runs ``solvers.GaussSeidel(last_group_independent=True)``:
    one block of layers per half-sweep instead of a full map and a block).

    A layer's drive :math:`P_l = \\rho(s_{l-1}) W_l + b_l + \\rho(s_{l+1}) W_{l+1}^\\top`
    reads only its neighbours, which are of the other parity. The map is that of
    :func:`eqprop.kernels.evaluate`: prototypical :math:`\\sigma(P_l)` (any ``eps``);
    hard-sigmoid Hopfield :math:`\\mathrm{clip}(s_l - \\epsilon (s_l - P_l), 0, 1)` on the
    box [0, 1] the state is projected onto, which is :math:`\\mathrm{clip}(P_l, 0, 1)` for
    ``eps = 1`` only (to rounding: the kernel computes :math:`s - (s - P)`). Smooth
    Hopfield maps (:math:`\\rho'(s_l) P_l` at ``eps = 1``) read the layer's own state, and
    so does the nudging term of the top layer (:math:`\\beta (d - s_L)`, or the readout
    of :math:`s_L`): True only for free phases (``beta == 0``, output not clamped) with
    two parity groups (at least two state layers).
    """
    if beta != 0 or clamp_output or len(net.offsets) - 1 < 2:
        return False
    if net.kind == "prototypical":
        return True
    return net.activation == "hardsigmoid" and float(dyn.eps) == 1.0 and net.bounds == (0.0, 1.0)


def _solver_method(net: Network | GraphNetwork, dyn: Dynamics):
    """The solvers method object and whether it solves a fixed point (True) or an ODE.

    ``"fused"`` on the general graph path is the same iteration through ``solvers``
    (Picard with the damping, fixed steps)."""
    m = dyn.method
    if not isinstance(m, str):
        return m, isinstance(m, _fp_classes())
    if m in ("fixed", "picard") or (m == "fused" and isinstance(net, GraphNetwork)):
        return solvers.Picard(damping=dyn.damping), True
    if m == "anderson":
        return solvers.Anderson(damping=dyn.damping), True
    if m in ("gauss-seidel", "gauss-seidel-parity"):
        layers = _layer_columns(net)
        groups: tuple[tuple[tuple[int, int], ...], ...]
        if m == "gauss-seidel":
            groups = tuple((r,) for r in layers)
        else:
            groups = tuple(g for g in (tuple(layers[0::2]), tuple(layers[1::2])) if g)
        return solvers.GaussSeidel(groups=groups, damping=dyn.damping), True
    if m == "euler":
        return solvers.Euler(dt=dyn.eps), False
    if m == "rk4":
        return solvers.RK4(dt=dyn.eps), False
    if m == "dopri5":
        return solvers.Dopri5(), False
    raise ValueError(f"method {m!r} has no solvers counterpart")  # "fused"


@dataclass(eq=False)
class Clamped:
    """An input batch clamped on a network: ``x`` and its drive ``x W_1 + b_1``.

    Computed once (:func:`clamp`) and shared by all phases of a training step. Valid only
    while the network's parameters are unchanged.

    For a :class:`~eqprop.graph.GraphNetwork`, ``graph`` is that network and ``chain``
    its :class:`~eqprop.network.Network` copy when it runs on the fast path (then
    ``drive`` and ``theta`` are the chain's); on the general path ``chain`` is None,
    ``drive`` is :func:`eqprop.graph.kernels.input_drive` (biases plus the couplings from
    the input, (batch, n_state)) and ``theta`` is empty. A network with ``conv2d``
    couplings has ``path`` ``"auto"`` or ``"fast"`` when
    :class:`eqprop.graph.conv_kernels.FastMap` can run it (``fast`` holds that map once a
    phase made it, its input set to ``x``), else ``"general"``.
    """

    x: np.ndarray
    drive: np.ndarray
    theta: np.ndarray
    graph: GraphNetwork | None = None
    chain: Network | None = None
    path: str = "auto"
    fast: Any = None

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])


def clamp(net: Network | GraphNetwork, x, path: str = "auto") -> Clamped:
    """Validate ``x`` (batch, sizes[0]) and precompute its drive on the first layer.

    ``path`` (graph networks only): ``"auto"`` runs a dense tied chain on the fused chain
    kernels and anything else on the general graph kernels; ``"fast"`` insists on the
    chain kernels (ValueError saying why the network is not a chain); ``"general"``
    always uses the graph kernels. A network with ``conv2d`` couplings runs its Picard
    and whole-layer Gauss-Seidel phases (``"fixed"``, ``"fused"``, ``"picard"``,
    ``"gauss-seidel"``, ``"gauss-seidel-parity"``, damped, fixed steps or to a
    tolerance; no energy recording; :func:`conv_fast_dynamics_mismatch`) on
    :class:`eqprop.graph.conv_kernels.FastMap` under ``"auto"`` and ``"fast"``
    (``"fast"`` refuses the other phases), every other phase on the general graph
    kernels through :mod:`solvers`; the two agree to rounding
    (``tests/test_couplings_conv_solvers.py``, ``tests/test_conv_fast_solve.py``). The
    choice is held by the returned :class:`Clamped`, so the phases and the rule's
    gradient of one step take the same path.
    """
    if isinstance(x, Clamped):
        return x
    if isinstance(net, GraphNetwork):
        return _clamp_graph(net, x, path)
    if path != "auto":
        raise ValueError(f"path={path!r} applies to graph networks; a Network takes 'auto'")
    x = check_input(net, x)
    theta = net.packed()
    return Clamped(x, K.input_drive(theta, net.layout(), x), theta)


def _has_conv(net: GraphNetwork) -> bool:
    return any(c.type == "conv2d" for c in net.couplings)


def _clamp_graph(net: GraphNetwork, x, path: str) -> Clamped:
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; choose one of {', '.join(PATHS)}")
    x = GR._batch(net, x, net.n_in, "x", None)
    if _has_conv(net):
        from eqprop.graph.conv_kernels import fast_mismatch

        why = fast_mismatch(net)
        if path == "fast" and why is not None:
            raise ValueError(f"path='fast' cannot run this conv network: {why}")
        drive = GK.input_drive(net, x)
        used = "general" if why is not None else path
        return Clamped(x, drive, np.empty(0, dtype=net.dtype), graph=net, path=used)
    why = chain_mismatch(net)
    if path == "fast" and why is not None:
        raise ValueError(f"path='fast' needs a dense tied chain; this network is not one: {why}")
    if why is None and path != "general":
        chain = to_network(net)
        theta = chain.packed()
        drive = K.input_drive(theta, chain.layout(), x)
        return Clamped(x, drive, theta, graph=net, chain=chain)
    drive = GK.input_drive(net, x)
    return Clamped(x, drive, np.empty(0, dtype=net.dtype), graph=net, path="general")


def _graph_clamped(net: GraphNetwork, x) -> Clamped:
    """``clamp(net, x)``, and a ValueError if ``x`` was clamped on another network."""
    cx = clamp(net, x)
    if cx.graph is not net:
        raise ValueError("x was clamped on another network; clamp it on this GraphNetwork")
    return cx


def check_graph_batch(net: GraphNetwork, a, cols: int, name: str, batch: int) -> np.ndarray:
    """``a`` as a finite C-contiguous ``(batch, cols)`` array in the graph's dtype."""
    return GR._batch(net, a, cols, name, batch)


@dataclass(eq=False)
class Phase:
    """Result of one phase.

    Attributes
    ----------
    state : ndarray (batch, n_state)
        Final state (network dtype, C-contiguous).
    result : solvers.SolveResult
        The solver's report (converged, n_iter, residual trace, observed energies, ...).
    beta : float
        Nudging strength of the phase (0 for the free phase).
    clamped : bool
        Whether the output layer was clamped to the targets.
    """

    state: np.ndarray
    result: Any
    beta: float = 0.0
    clamped: bool = False


def _check_phase_request(beta, d, clamp_output: bool) -> float:
    """``beta`` as a float, after the checks every phase path shares: finite, targets
    given for a nudged or clamped phase, and ``beta = 0`` for a clamped one."""
    beta = float(beta)
    if not np.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta}")
    if clamp_output and (d is None or beta != 0.0):
        raise ValueError("a clamped phase needs targets d and beta = 0")
    if d is None and beta != 0.0:
        raise ValueError("targets d are required for a nudged phase (beta != 0)")
    return beta


def run_phase(
    net: Network | GraphNetwork,
    x,
    dyn: Dynamics,
    *,
    beta: float = 0.0,
    d=None,
    s0=None,
    steps: int | None = None,
    clamp_output: bool = False,
) -> Phase:
    """Relax the state with input ``x`` clamped and nudging strength ``beta``.

    Parameters
    ----------
    net : Network
    x : ndarray (batch, sizes[0]) or Clamped
    dyn : Dynamics
    beta : float
        Nudging strength; targets ``d`` are required when nonzero.
    d : ndarray (batch, n_out), optional
    s0 : ndarray (batch, n_state), optional
        Initial state (default zeros). Not modified.
    steps : int, optional
        Updates in fixed-steps mode (default ``dyn.T``).
    clamp_output : bool
        Clamp the output layer to ``d`` instead of nudging it (contrastive Hebbian
        learning, GeneRec, coupled learning with a computed ``d``): the map sets the
        output to ``d``, the vector field is :math:`(d - y)/\\epsilon`. Needs
        ``cost="squared"`` and ``d``; ``beta`` must be 0.

    Returns
    -------
    Phase
    """
    if not isinstance(dyn, Dynamics):
        raise ValueError(f"dyn must be an eqprop.Dynamics, got {type(dyn).__name__}")
    if isinstance(net, GraphNetwork):
        gx = _graph_clamped(net, x)
        if gx.chain is not None:  # the fast path: the same phase on the chain's kernels
            return run_phase(
                gx.chain, gx, dyn, beta=beta, d=d, s0=s0, steps=steps, clamp_output=clamp_output
            )
        if dyn.method == "fused" and not dyn.is_fixed_steps:
            raise ValueError(
                "method='fused' to a tolerance (fixed_steps=False: every sample steps until "
                "the whole batch converged) runs on dense chains only; this graph network "
                "runs on the graph kernels, where use method='picard' (each sample stops "
                "at the tolerance) or fixed steps"
            )
        if gx.path != "general":  # a conv network FastMap can run
            why = conv_fast_dynamics_mismatch(dyn, net)
            if why is None:
                return _run_conv_fast(net, gx, dyn, beta, d, s0, steps, clamp_output)
            if gx.path == "fast":
                raise ValueError(f"path='fast' cannot run this phase on the conv network: {why}")
        return _run_graph_phase(net, gx, dyn, beta, d, s0, steps, clamp_output)
    cx = clamp(net, x)
    B = cx.batch
    beta = _check_phase_request(beta, d, clamp_output)
    if d is None:
        target = np.zeros((B, net.n_out), dtype=net.dtype)
    else:
        target = check_target(net, d, B)
    s = net.zero_state(B) if s0 is None else check_state(net, s0, B, name="s0").copy()
    lay = net.layout("clamp" if clamp_output else dyn.nudge)
    sc = np.array([beta, dyn.eps], dtype=net.dtype)
    work = K.make_work(lay, B, net.dtype)
    args = (cx.theta, lay, cx.drive, target, sc, work)
    n_steps = dyn.T if steps is None else int(steps)
    fixed = n_steps if dyn.is_fixed_steps else None
    if dyn.method == "fused":
        return _run_fused(net, s, args, n_steps, dyn, beta, clamp_output)
    method, is_fp = _solver_method(net, dyn)
    common: dict[str, Any] = dict(
        atol=dyn.atol,
        rtol=dyn.rtol,
        max_iter=max(dyn.max_iter, n_steps) if fixed else dyn.max_iter,
        fixed_steps=fixed,
        bounds=net.bounds,
        observe=K.observe_energy if dyn.record_energy else None,
        record_every=dyn.record_every,
        raise_on_failure=dyn.raise_on_failure,
    )
    if is_fp:
        if dyn.method == "gauss-seidel-parity" and parity_map_ignores_own_layers(
            net, dyn, beta, clamp_output
        ):
            method = dataclasses.replace(method, last_group_independent=True)
            if not dyn.record_energy:
                return _run_fused_red_black(net, s, args, method, common, beta, clamp_output)
        res = solvers.solve_fixed_point(
            K.fixed_point_map, s, args, method=method, g_block=K.fixed_point_block, **common
        )
    else:
        res = solvers.solve_steady_state(K.vector_field, s, args, method=method, **common)  # type: ignore[attr-defined]
    return Phase(np.ascontiguousarray(res.x), res, beta, clamp_output)


#: ``solvers.solve_fixed_point``'s default ``divergence_bound``, which the phases use.
_DIVERGENCE_BOUND = float(
    inspect.signature(solvers.solve_fixed_point).parameters["divergence_bound"].default
)


def _run_fused_red_black(net, s, args, method, common, beta, clamped) -> Phase:
    """``"gauss-seidel-parity"`` on a map whose second parity group ignores its own
    layers: :func:`eqprop.kernels.fused_gauss_seidel_parity`, the reference iteration
    ``solvers.solve_fixed_point(K.fixed_point_map, s, args, method=method,
    g_block=K.fixed_point_block, **common)`` (``method`` a two-group
    ``GaussSeidel(last_group_independent=True)``) without the generic driver: the same
    states, residual rows, per-sample verdicts and evaluation counts
    (``tests/test_fused_gauss_seidel.py``), as a ``SolveResult`` of the same form.

    Not for recorded energies (``run_phase`` keeps those on the solvers path).
    """
    from solvers._common import build_result
    from solvers._validate import check_bounds, check_count, check_tolerances

    atol, rtol = check_tolerances(common["atol"], common["rtol"])
    max_iter = check_count("max_iter", common["max_iter"], 1)
    fixed = common["fixed_steps"]
    fs = -1 if fixed is None else check_count("fixed_steps", fixed, 1)
    B, n = s.shape
    lo, hi, has_bounds = check_bounds(common["bounds"], n, s.dtype)
    if has_bounds:
        np.clip(s, lo, hi, out=s)  # as solvers.solve_fixed_point projects its x0
    first, second = (np.array(grp, dtype=np.int64).reshape(-1, 2) for grp in method.groups)
    stop = (atol, rtol, fs if fixed is not None else max_iter, fs, _DIVERGENCE_BOUND)
    t0 = time.perf_counter()
    res, rel, n_iter, conv, failed, fail_iter, nfev, nfev_block = K.fused_gauss_seidel_parity(
        s, *args, first, second, lo, hi, has_bounds, float(method.damping), stop
    )  # type: ignore[call-arg]
    wall = time.perf_counter() - t0
    out = (
        res, rel, np.zeros((0, B)), np.zeros(0, dtype=np.int64), n_iter, conv, failed,
        fail_iter, nfev, nfev_block, s, np.zeros(B, dtype=np.int64),
        np.full(B, -1, dtype=np.int64),
    )  # fmt: skip
    result = build_result(
        out=out,
        fixed_steps=fixed,
        do_observe=False,
        wall_time=wall,
        method=f"{method.describe()} (fused red-black kernel)",
        raise_on_failure=common["raise_on_failure"],
        extras=("n_fallback", "fallback_iter"),
    )
    return Phase(np.ascontiguousarray(result.x), result, beta, clamped)


def _run_graph_phase(
    net: GraphNetwork,
    cx: Clamped,
    dyn: Dynamics,
    beta: float,
    d,
    s0,
    steps: int | None,
    clamp_output: bool,
) -> Phase:
    """:func:`run_phase` on the general graph kernels (:mod:`eqprop.graph.kernels`)."""
    B = cx.batch
    beta = _check_phase_request(beta, d, clamp_output)
    if d is None:
        target = np.zeros((B, net.n_out), dtype=net.dtype)
    else:
        target = check_graph_batch(net, d, net.n_out, "d", B)
    if s0 is None:
        s = net.zero_state(B)
    else:
        s = check_graph_batch(net, s0, net.n_state, "s0", B).copy()
    if dyn.record_energy:  # F exists for tied couplings only: the model's one-line error
        net.require_energy("an energy to record (Dynamics.record_energy=True)")
        if net.dtype.kind == "c":
            raise ValueError(
                f"record_energy: this network is {net.dtype.name} and its F is complex, but "
                "the solvers record real values; evaluate eqprop.graph.reference.energy on "
                "the states"
            )
        conv = [c.name for c in net.couplings if c.type != "dense" and c.source in net.offsets]
        if conv:
            raise ValueError(
                f"record_energy: coupling {conv[0]!r} is a {net.coupling(conv[0]).type} "
                "coupling, whose energy term the compiled energy does not have yet; evaluate "
                "eqprop.graph.reference.energy on the states"
            )
    nudge = "clamp" if clamp_output else dyn.nudge
    args = GK.make_args(net, cx.x, beta=beta, d=target, eps=dyn.eps, nudge=nudge, drive=cx.drive)
    n_steps = dyn.T if steps is None else int(steps)
    fixed = n_steps if dyn.is_fixed_steps else None
    method, is_fp = _solver_method(net, dyn)
    box = GK.common_box(net)
    common: dict[str, Any] = dict(
        atol=dyn.atol,
        rtol=dyn.rtol,
        max_iter=max(dyn.max_iter, n_steps) if fixed else dyn.max_iter,
        fixed_steps=fixed,
        bounds=box,
        observe=GK.observe_energy if dyn.record_energy else None,
        record_every=dyn.record_every,
        raise_on_failure=dyn.raise_on_failure,
    )
    if is_fp:
        block = GK.fixed_point_block if isinstance(method, solvers.GaussSeidel) else None
        res = solvers.solve_fixed_point(
            GK.fixed_point_map, s, args, method=method, g_block=block, **common
        )
    else:
        if box is None and any(la.box is not None for la in net.state_layers):
            raise ValueError(
                f"method {dyn.method_name!r}: an ODE method projects onto one box for the "
                "whole state; this network's layers have different boxes: use a "
                "fixed-point method"
            )
        res = solvers.solve_steady_state(GK.vector_field, s, args, method=method, **common)  # type: ignore[attr-defined]
    return Phase(np.ascontiguousarray(res.x), res, beta, clamp_output)


def fixed_steps_result(
    x: Any,
    r: np.ndarray,
    n_steps: int,
    dyn: Dynamics,
    wall: float,
    what: str,
    *,
    finite: np.ndarray | None = None,
    xmax: np.ndarray | None = None,
    method: str | None = None,
) -> solvers.SolveResult:
    """The ``SolveResult`` of ``n_steps`` fixed steps run outside :mod:`solvers`.

    Shared by the fixed-steps paths that iterate without ``solvers`` (the CPU's
    ``"fused"`` path, the conv fast map, and the CUDA fused path of
    :mod:`eqprop.gpu.dense`), so that they report as one: an internal helper of the
    package, not in ``__all__``. Its one residual row, row ``n_steps - 1``, is ``r``
    (the others NaN); sample ``b`` converged when
    :math:`r_b \\le \\text{atol} + \\text{rtol} \\max_i |x_{b,i}|`, and failed when
    :math:`r_b` or its final state is not finite.

    Parameters
    ----------
    x : numpy.ndarray or device array, shape (batch, n)
        The final state; stored as the result's ``x`` as it is (a device array stays on
        the device, and then ``finite`` and ``xmax`` must be given).
    r : numpy.ndarray, shape (batch,)
        Per sample, the residual :math:`\\max_i |P(g(x))_i - x_i|` of the state before
        the last update.
    n_steps : int
        How many updates ran (>= 1): every sample's ``n_iter`` and the result's ``nfev``.
    dyn : Dynamics
        ``atol``, ``rtol`` of the tolerance, ``damping`` (named in ``method``) and
        ``raise_on_failure``.
    wall : float
        Wall seconds of the run (``wall_time``).
    what : str
        The path's name, in the message and the default ``method``.
    finite : numpy.ndarray of bool, shape (batch,), optional
        Whether each final state is finite; default: computed from the host array ``x``.
    xmax : numpy.ndarray of float64, shape (batch,), optional
        :math:`\\max_i |x_{b,i}|`; default: computed from the host array ``x``.
    method : str, optional
        The result's ``method``; default ``"{what} Picard(damping=...)"``.

    Returns
    -------
    solvers.SolveResult
        Status ``FIXED_STEPS``, or ``FAILED`` when any sample failed; ``residual`` and
        ``residual_rel`` (``n_steps + 1``, batch); no observations.

    Raises
    ------
    solvers.SolverFailure
        When a sample failed and ``dyn.raise_on_failure``.
    """
    if (finite is None or xmax is None) and not isinstance(x, np.ndarray):
        raise TypeError(
            f"{what}: finite and xmax must be given for a state that is not a numpy array "
            f"(got {type(x).__name__})"
        )
    if finite is None:
        finite = np.isfinite(x).all(axis=1)
    if xmax is None:
        xmax = np.abs(x).max(axis=1)
    if method is None:
        method = f"{what} Picard(damping={dyn.damping:g})"
    B = r.shape[0]
    ok = np.isfinite(r) & finite
    tol = dyn.atol + (dyn.rtol * xmax if dyn.rtol > 0 else 0.0)
    conv = ok & (r <= tol)
    status = solvers.Status.FIXED_STEPS if ok.all() else solvers.Status.FAILED
    residual = np.full((n_steps + 1, B), np.nan)
    residual[n_steps - 1] = r
    res = solvers.SolveResult(
        x=x,
        converged=conv,
        n_iter=np.full(B, n_steps, dtype=np.int64),
        failed=~ok,
        failure_iter=np.where(ok, -1, n_steps).astype(np.int64),
        status=status,
        message=f"{what}: ran {n_steps} steps; {int(conv.sum())} of {B} samples meet the tolerance",
        residual=residual,
        residual_rel=residual / np.maximum(xmax, np.finfo(np.float64).tiny),
        observed=None,
        observed_iter=np.zeros(0, dtype=np.int64),
        nfev=n_steps,
        wall_time=wall,
        method=method,
    )
    if dyn.raise_on_failure and status == solvers.Status.FAILED:
        raise solvers.SolverFailure(f"{what}: {int((~ok).sum())} samples failed", res)
    return res


def _run_fused(net, s, args, n_steps, dyn, beta, clamped) -> Phase:
    """The fused path (same iterates as method="fixed").

    Fixed steps (``dyn.is_fixed_steps``): ``n_steps`` updates
    (:func:`eqprop.kernels.fused_fixed_steps`). To a tolerance (``fixed_steps=False``):
    the same updates, stopped after the first one at which every sample meets the
    tolerance, at most ``min(n_steps, dyn.max_iter)``
    (:func:`eqprop.kernels.fused_tolerance_steps`; result:
    :func:`fused_tolerance_result`).

    Its SolveResult holds one residual row: row ``n - 1`` (``n`` updates run) is the size
    of the last update over the damping, ``max_i |x_n - x_{n-1}| / damping`` (= the
    solvers' residual ``max_i |g(x_{n-1}) - x_{n-1}|`` of ``x_{n-1}``, bounds aside); the
    other rows are NaN; ``converged`` says whether that last update met the tolerance.
    """
    bnd = net.bounds
    lo, hi = (0.0, 0.0) if bnd is None else bnd
    t0 = time.perf_counter()
    damping = float(dyn.damping)
    if dyn.is_fixed_steps:
        r = K.fused_fixed_steps(s, n_steps, *args, lo, hi, bnd is not None, damping)  # type: ignore[call-arg]
    else:
        cap = min(n_steps, dyn.max_iter)
        r, n_run = K.fused_tolerance_steps(  # type: ignore[call-arg]
            s, cap, *args, lo, hi, bnd is not None, damping, float(dyn.atol), float(dyn.rtol)
        )
    if damping != 1.0:  # the last update is damping * (g(x) - x): report the map's residual
        r = r / damping
    wall = time.perf_counter() - t0
    if dyn.is_fixed_steps:
        return Phase(s, fixed_steps_result(s, r, n_steps, dyn, wall, "fused"), beta, clamped)
    res = fused_tolerance_result(s, r, int(n_run), cap, dyn, wall, "fused")
    return Phase(s, res, beta, clamped)


def fused_tolerance_result(
    x: np.ndarray, r: np.ndarray, n_run: int, cap: int, dyn: Dynamics, wall: float, what: str
) -> solvers.SolveResult:
    """The ``SolveResult`` of a fused run stopped when the whole batch met the tolerance.

    :func:`fixed_steps_result`'s conventions (one residual row, row ``n_run - 1``, is
    ``r``; sample ``b`` converged when
    :math:`r_b \\le \\text{atol} + \\text{rtol} \\max_i |x_{b,i}|`; failed when
    :math:`r_b` or its state is not finite), with the status of a tolerance run:
    ``CONVERGED`` when every sample converged, ``MAX_ITER`` when the run stopped at the
    cap with some sample unconverged, ``FAILED`` when some sample failed. Every sample's
    ``n_iter`` is ``n_run`` (the batch steps together), and so is ``nfev``.

    Parameters
    ----------
    x : numpy.ndarray, shape (batch, n)
        The final state.
    r : numpy.ndarray of float64, shape (batch,)
        Per sample, the last update's size over the damping.
    n_run : int
        Updates run (>= 1).
    cap : int
        The cap, ``min(steps, max_iter)``, named in the message.
    dyn, wall, what
        As :func:`fixed_steps_result`.
    """
    res = fixed_steps_result(x, r, n_run, dyn, wall, what)
    if res.status != solvers.Status.FAILED:
        all_conv = bool(res.converged.all())
        B = r.shape[0]
        res = dataclasses.replace(
            res,
            status=solvers.Status.CONVERGED if all_conv else solvers.Status.MAX_ITER,
            message=(
                f"{what}: stopped after {n_run} of at most {cap} steps; "
                f"{int(res.converged.sum())} of {B} samples meet the tolerance"
                + ("" if all_conv else " (the cap)")
            ),
        )
    return res


def conv_fast_dynamics_mismatch(dyn: Dynamics, net: GraphNetwork) -> str | None:
    """Why the conv fast map (:class:`eqprop.graph.conv_kernels.FastMap`) cannot run a
    phase of these dynamics on ``net`` (one line), or None: it runs Picard (fixed steps
    or to a tolerance) and Gauss-Seidel over whole layers (``"gauss-seidel"``,
    ``"gauss-seidel-parity"``, or a ``solvers.GaussSeidel`` whose ranges are layers),
    damped, and records no energy."""
    if dyn.record_energy:
        return "it records the energy"
    method, _ = _solver_method(net, dyn)
    if isinstance(method, solvers.GaussSeidel):
        from eqprop.graph.conv_kernels import block_groups

        why = block_groups(net, method.groups)
        return why if isinstance(why, str) else None
    if not isinstance(method, solvers.Picard):
        return f"method {dyn.method_name!r} is not Picard or Gauss-Seidel (the fast map runs those)"
    return None


def _run_conv_fast(
    net: GraphNetwork,
    cx: Clamped,
    dyn: Dynamics,
    beta: float,
    d,
    s0,
    steps: int | None,
    clamp_output: bool,
) -> Phase:
    """:func:`run_phase` on :class:`eqprop.graph.conv_kernels.FastMap`.

    Fixed-steps ``"fixed"`` / ``"fused"`` / ``"picard"``: the iterates of the general
    path's ``solvers.Picard`` (the state projected onto the network's common box, if
    any, after every update and at the start), ``n_steps`` map evaluations, the result of
    :func:`fixed_steps_result`. Any other Picard or Gauss-Seidel phase:
    :meth:`~eqprop.graph.conv_kernels.FastMap.solve`, the solvers' iteration and
    ``SolveResult`` (per-sample convergence, residual trace, failures reported)."""
    from eqprop.graph.conv_kernels import FastMap

    B = cx.batch
    beta = _check_phase_request(beta, d, clamp_output)
    target = None if d is None else check_graph_batch(net, d, net.n_out, "d", B)
    if s0 is None:
        s = net.zero_state(B)
    else:
        s = check_graph_batch(net, s0, net.n_state, "s0", B).copy()
    box = GK.common_box(net)
    if box is not None:
        np.clip(s, box[0], box[1], out=s)
    fm = cx.fast
    if fm is None:
        fm = cx.fast = FastMap(net, B)
        fm.set_input(cx.x)
    n_steps = dyn.T if steps is None else int(steps)
    nudge = "clamp" if clamp_output else dyn.nudge
    if not (dyn.method in ("fixed", "fused", "picard") and dyn.is_fixed_steps):
        method, _ = _solver_method(net, dyn)
        fixed = n_steps if dyn.is_fixed_steps else None
        res = fm.solve(
            s,
            method,
            beta=beta,
            d=target,
            eps=dyn.eps,
            nudge=nudge,
            atol=dyn.atol,
            rtol=dyn.rtol,
            max_iter=max(dyn.max_iter, n_steps) if fixed else dyn.max_iter,
            fixed_steps=fixed,
            bounds=box,
            raise_on_failure=dyn.raise_on_failure,
        )
        return Phase(res.x, res, beta, clamp_output)
    t0 = time.perf_counter()
    out, _, _ = fm.relax(
        s,
        n_steps,
        beta=beta,
        d=target,
        eps=dyn.eps,
        nudge=nudge,
        damping=float(dyn.damping),
        bounds=box,
    )
    state = out.copy()
    wall = time.perf_counter() - t0
    res = fixed_steps_result(state, fm.last_residual, n_steps, dyn, wall, "conv fast map")
    return Phase(state, res, beta, clamp_output)


def free_phase(net: Network | GraphNetwork, x, dyn: Dynamics, s0=None) -> Phase:
    """Free phase (:math:`\\beta = 0`): ``dyn.T`` steps (or to tolerance), from zero or ``s0``.

    ``s0`` is a stored per-sample state (persistent particles, Scellier & Bengio 2017).
    """
    return run_phase(net, x, dyn, beta=0.0, s0=s0, steps=dyn.T)


def nudged_phase(net: Network | GraphNetwork, x, d, beta: float, dyn: Dynamics, s0=None) -> Phase:
    """Nudged phase at ``beta`` (!= 0): ``dyn.K`` steps (or to tolerance) from ``s0``.

    ``s0`` is normally the free state (``free.state``); None starts from zero.

    Raises
    ------
    ValueError
        ``beta == 0`` (use :func:`free_phase`), or missing/misshaped targets.
    """
    beta = float(beta)
    if beta == 0.0:
        raise ValueError("nudged_phase needs beta != 0 (beta = 0 is the free phase)")
    if d is None:
        raise ValueError("nudged_phase needs targets d of shape (batch, n_out)")
    return run_phase(net, x, dyn, beta=beta, d=d, s0=s0, steps=dyn.K)


def predict(net: Network | GraphNetwork, x, dyn: Dynamics, s0=None) -> np.ndarray:
    """Free phase, then the output ``(batch, n_out)``: the output state (squared cost) or the
    softmax readout's probabilities (cross-entropy)."""
    if isinstance(net, GraphNetwork):
        cx = _graph_clamped(net, x)
        return network_output(net, cx, free_phase(net, cx, dyn, s0=s0).state)
    return output(net, free_phase(net, x, dyn, s0=s0).state)


def network_output(net: Network | GraphNetwork, cx: Clamped, s: np.ndarray) -> np.ndarray:
    """The output ``(batch, n_out)`` of state ``s`` with input ``cx`` clamped (a graph's
    readout reads its source layers; the chain's output needs no input)."""
    if isinstance(net, GraphNetwork):
        if cx.chain is not None:
            return output(cx.chain, s)
        return GR.output(net, cx.x, s)
    return output(net, s)


def network_cost(net: Network | GraphNetwork, cx: Clamped, s: np.ndarray, d) -> np.ndarray:
    """Per-sample cost ``(batch,)`` of state ``s`` (input ``cx``, targets ``d``)."""
    if isinstance(net, GraphNetwork) and cx.chain is None:
        return GR.cost(net, cx.x, s, d)
    chain = cx.chain if isinstance(net, GraphNetwork) else net
    assert chain is not None
    lay = chain.layout()
    return K.cost_value(s, cx.theta, lay, d, K.make_work(lay, cx.batch, chain.dtype))
