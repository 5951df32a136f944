r"""Solver convergence study: residual and energy per iteration of the free phase.

For a network with ``depth`` hidden layers and a batch of inputs, the free phase is solved
by each method of :mod:`solvers` on the network's own kernels (:mod:`eqprop.kernels`):

``picard``
    :math:`s \leftarrow g(s)` with :math:`g` one synchronous step of the dynamics
    (projected Euler step of size ``eps`` on the energy for ``kind="hopfield"``,
    :math:`\sigma(\partial\Phi/\partial s)` for ``kind="prototypical"``);
``anderson``
    Anderson acceleration of the same map (history ``m=5``);
``broyden``
    limited-memory "good" Broyden on the same map (:class:`solvers.Broyden`, ``m=5``);
``gauss-seidel``
    the same map applied to the odd layers, then to the even layers (each group reads the
    layers just updated), the usual asynchronous schedule of layered networks;
``euler``, ``rk4``, ``dopri5``
    steady state of :math:`ds/dt = f(s)` (:math:`-\partial F/\partial s` for hopfield),
    when :func:`solvers.solve_steady_state` is available, with ``dt = eps``.

The residual of a fixed-point method at iteration ``k`` is
:math:`r_k = \max_i |g(s_k)_i - s_{k,i}|` (per sample); for an ODE method it is the
max-norm of the projected field, :math:`\max_i |f(s_k)_i|` (for hopfield
:math:`g(s) - s = \epsilon f(s)` when no unit is clipped at a bound, so the two differ by
the factor ``eps``; a clipped step makes the fixed-point residual smaller).
The energy is the total function :math:`F(s) = E(s)` (hopfield) or :math:`-\Phi(s)`
(prototypical) at :math:`\beta = 0` (:func:`eqprop.kernels.observe_energy`).

Each (method, depth) pair runs once to the smallest tolerance (``atol``, ``rtol=0``) or
``max_iter``; ``iterations_to_tol`` is the first iteration whose residual is at most each
tolerance, and ``time_to_tol`` estimates the wall time to get there for the whole batch
as ``wall_time * max_sample(iterations_to_tol) / max_sample(n_iter)`` (the cost per
batched iteration is constant for these methods; Dopri5's varies with rejected steps).

Dataset: dims ``solver``, ``depth``, ``iteration`` (0..max_iter), ``sample``, ``tol``;
attribute ``study="solver-convergence"``. (Files written before called the solver
dimension ``method``, a keyword of xarray's ``sel``: ``ds.sel(method="anderson")`` did
not select; :func:`studies.schema.upgrade` renames it on open.) ``n_fallback`` and
``fallback_iter`` report, per sample, the interventions of the progress safeguard of
Anderson and Broyden
(history restarts, then the switch to damped Picard) and the iteration of the switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from eqprop.provenance import variable

from .sweep import sweep

__all__ = ["FIXED_POINT_METHODS", "ODE_METHODS", "convergence_point", "solver_convergence"]

FIXED_POINT_METHODS = ("picard", "anderson", "broyden", "gauss-seidel")
ODE_METHODS = ("euler", "rk4", "dopri5")


def _network_problem(
    depth: int,
    hidden: int,
    n_in: int,
    n_out: int,
    batch: int,
    kind: str,
    activation: str,
    eps: float,
    dtype: str,
    seed: int,
):
    """Network, input batch and the kernel arguments of its free phase."""
    from eqprop import kernels as K
    from eqprop.network import init_network
    from eqprop.phases import clamp

    if depth < 1:
        raise ValueError(f"depth={depth}; give at least one hidden layer")
    sizes = (n_in, *([hidden] * depth), n_out)
    net = init_network(sizes, kind=kind, activation=activation, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    cx = clamp(net, rng.random((batch, n_in)))  # input drive, as every phase builds it
    x, theta, drive = cx.x, cx.theta, cx.drive
    lay = net.layout("inside")
    target = np.zeros((batch, sizes[-1]), dtype=net.dtype)
    sc = np.array([0.0, eps], dtype=net.dtype)
    work = K.make_work(lay, batch, net.dtype)
    return net, x, (theta, lay, drive, target, sc, work)


def _solve(method: str, net: Any, args: tuple, batch: int, atol: float, max_iter: int, eps: float):
    import solvers
    from eqprop import kernels as K

    x0 = net.zero_state(batch)
    common: dict[str, Any] = dict(
        atol=atol,
        rtol=0.0,
        max_iter=max_iter,
        bounds=net.bounds,
        observe=K.observe_energy,
        record_every=1,
    )
    if method in FIXED_POINT_METHODS:
        off = [int(o) for o in net.offsets]
        layers = [(off[i], off[i + 1]) for i in range(len(off) - 1)]
        if method == "picard":
            m: Any = solvers.Picard()
            block = None
        elif method == "anderson":
            m = solvers.Anderson(m=5)
            block = None
        elif method == "broyden":
            m = solvers.Broyden(m=5)
            block = None
        else:
            groups = tuple(g for g in (tuple(layers[0::2]), tuple(layers[1::2])) if g)
            m = solvers.GaussSeidel(groups=groups)
            block = K.fixed_point_block
        return solvers.solve_fixed_point(
            K.fixed_point_map, x0, args, method=m, g_block=block, **common
        )
    if method in ODE_METHODS:
        steady = getattr(solvers, "solve_steady_state", None)
        if steady is None:
            raise ValueError(f"method {method!r} needs solvers.solve_steady_state, not available")
        cls = {"euler": "Euler", "rk4": "RK4", "dopri5": "Dopri5"}[method]
        m = getattr(solvers, cls)(eps) if method != "dopri5" else solvers.Dopri5(dt0=eps)
        return steady(K.vector_field, x0, args, method=m, **common)
    raise ValueError(f"unknown method {method!r}; choose from {FIXED_POINT_METHODS + ODE_METHODS}")


def convergence_point(
    solver: str,
    depth: int,
    *,
    tols: Sequence[float] = (1e-2, 1e-4, 1e-6),
    hidden: int = 32,
    n_in: int = 64,
    n_out: int = 10,
    batch: int = 8,
    max_iter: int = 500,
    eps: float = 0.5,
    kind: str = "hopfield",
    activation: str = "hardsigmoid",
    dtype: str = "float64",
    seed: int = 0,
) -> xr.Dataset:
    """One point of the convergence study (see the module docstring).

    Returns
    -------
    xarray.Dataset
        ``residual`` and ``energy`` (iteration, sample), float64, NaN after a sample
        stopped; ``iterations_to_tol`` (tol, sample) float64 (NaN: not reached);
        ``time_to_tol`` (tol) in s; ``n_iter``, ``converged``, ``n_fallback``,
        ``fallback_iter`` (sample); ``wall_time``, ``nfev``.
    """
    tols = sorted((float(t) for t in tols), reverse=True)
    net, _, args = _network_problem(
        depth, hidden, n_in, n_out, batch, kind, activation, eps, dtype, seed
    )
    res = _solve(solver, net, args, batch, min(tols), max_iter, eps)
    n_fallback = np.zeros(batch, np.int64) if res.n_fallback is None else res.n_fallback
    fallback_iter = np.full(batch, -1, np.int64) if res.fallback_iter is None else res.fallback_iter
    n_rows = max_iter + 1
    residual = np.full((n_rows, batch), np.nan)
    residual[: res.residual.shape[0]] = res.residual
    energy = np.full((n_rows, batch), np.nan)
    if res.observed is not None:
        energy[np.asarray(res.observed_iter)] = res.observed
    it_to = np.full((len(tols), batch), np.nan)
    for i, tol in enumerate(tols):
        hit = res.residual <= tol
        reached = hit.any(axis=0)
        it_to[i, reached] = np.argmax(hit, axis=0)[reached]
    n_max = max(int(res.n_iter.max()), 1)
    with np.errstate(invalid="ignore"):
        time_to = res.wall_time * np.max(it_to, axis=1) / n_max
    return xr.Dataset(
        {
            "residual": variable(
                ("iteration", "sample"),
                residual,
                "residual max_i |g(s)_i - s_i| (or |f(s)|)",
                "1",
            ),
            "energy": variable(("iteration", "sample"), energy, "total function F at beta=0", "1"),
            "iterations_to_tol": variable(
                ("tol", "sample"),
                it_to,
                "first iteration with residual <= tol",
                "1",
                description="NaN when the tolerance was not reached within max_iter",
            ),
            "time_to_tol": variable(
                "tol", time_to, "estimated wall time for the batch to reach tol", "s"
            ),
            "n_iter": variable("sample", res.n_iter.astype(np.int64), "iterations run", "1"),
            "n_fallback": variable(
                "sample",
                np.asarray(n_fallback, dtype=np.int64),
                "progress-safeguard interventions (history restarts + switch to damped Picard)",
                "1",
                description="0 for solvers without a safeguard",
            ),
            "fallback_iter": variable(
                "sample",
                np.asarray(fallback_iter, dtype=np.int64),
                "iteration of the switch to damped Picard",
                "1",
                description="-1: the sample did not fall back",
            ),
            "converged": variable("sample", res.converged, "reached the smallest tol", "1"),
            "wall_time": variable((), float(res.wall_time), "solver wall time", "s"),
            "nfev": variable((), int(res.nfev), "batched map evaluations", "1"),
        },
        coords={
            "iteration": np.arange(n_rows),
            "sample": np.arange(batch),
            "tol": variable("tol", np.array(tols), "tolerance on the residual (atol)", "1"),
        },
    )


def solver_convergence(
    methods: Sequence[str] = FIXED_POINT_METHODS,
    depths: Sequence[int] = (1, 2, 3),
    *,
    tols: Sequence[float] = (1e-2, 1e-4, 1e-6),
    hidden: int = 32,
    n_in: int = 64,
    n_out: int = 10,
    batch: int = 8,
    max_iter: int = 500,
    eps: float = 0.5,
    kind: str = "hopfield",
    activation: str = "hardsigmoid",
    dtype: str = "float64",
    seed: int = 0,
    **sweep_kwargs: Any,
) -> xr.Dataset:
    """Residual and energy per iteration for each solver method and depth.

    Parameters
    ----------
    methods : sequence of str
        From ``FIXED_POINT_METHODS`` (and ``ODE_METHODS`` when the solvers provide
        ``solve_steady_state``).
    depths : sequence of int
        Numbers of hidden layers (each of ``hidden`` units) between ``n_in`` inputs and
        ``n_out`` outputs.
    tols : sequence of float
        Tolerances on the residual; each method runs to the smallest one.
    batch, max_iter, eps, kind, activation, dtype, seed
        Batch of uniform random inputs in [0, 1) (seeded), iteration cap, step size,
        network description, float type and seed of the weights and inputs.
    **sweep_kwargs
        Passed to :func:`studies.sweep.sweep` (``out_dir``, ``path``, ``workers``,
        ``processes``, ``scheduler``, ``executor``, ``progress``, ``command``).

    Returns
    -------
    xarray.Dataset
        ``study="solver-convergence"``; dims solver, depth, iteration, sample, tol.
    """
    for m in methods:
        if m not in FIXED_POINT_METHODS + ODE_METHODS:
            raise ValueError(
                f"unknown method {m!r}; choose from {', '.join(FIXED_POINT_METHODS + ODE_METHODS)}"
            )
    fixed = dict(
        tols=[float(t) for t in tols],
        hidden=int(hidden),
        n_in=int(n_in),
        n_out=int(n_out),
        batch=int(batch),
        max_iter=int(max_iter),
        eps=float(eps),
        kind=kind,
        activation=activation,
        dtype=dtype,
        seed=int(seed),
    )
    return sweep(
        convergence_point,
        {"solver": list(methods), "depth": [int(d) for d in depths]},
        fixed=fixed,
        title="Solver convergence of the free phase: residual and energy per iteration",
        study="solver-convergence",
        seeds=[int(seed)],
        **sweep_kwargs,
    )
