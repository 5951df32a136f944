"""Batched fixed-point solver ``x = g(x)`` (Picard, Anderson, Broyden, block Gauss-Seidel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import types

from ._common import driver_for, prepare, run
from ._fp_driver import ANDERSON, BROYDEN, GAUSS_SEIDEL, PICARD
from ._result import SolveResult
from ._validate import check_method_dtype
from .methods import Anderson, Broyden, GaussSeidel, Picard

__all__ = ["solve_fixed_point"]


_drivers: dict[tuple, Any] = {}  # fixed-point drivers by (x, args, observe) type

# types of the method parameters (damping, m, reg (Broyden: denom_tol), restart_tol,
# growth, window, progress, regress, restarts, delay, ranges, group_ptr, use_block,
# reuse_last_group) between the method code and the stopping controls
_METHOD_TYPES = (
    types.float64,
    types.int64,
    types.float64,
    types.float64,
    types.float64,
    types.int64,
    types.float64,
    types.float64,
    types.int64,
    types.int64,
    types.Array(types.int64, 2, "C"),
    types.Array(types.int64, 1, "C"),
    types.boolean,
    types.boolean,
)


def solve_fixed_point(
    g: Callable,
    x0: np.ndarray,
    args: tuple = (),
    *,
    method: Picard | Anderson | Broyden | GaussSeidel | None = None,
    atol: float = 1e-6,
    rtol: float = 0.0,
    max_iter: int = 1000,
    fixed_steps: int | None = None,
    bounds: Any = None,
    g_block: Callable | None = None,
    observe: Callable | None = None,
    record_every: int = 1,
    divergence_bound: float = 1e8,
    raise_on_failure: bool = False,
) -> SolveResult:
    """Solve ``x = P(g(x))`` for a batch of independent states.

    Parameters
    ----------
    g : numba @njit function ``g(x, out, args)``
        Writes the map ``g(x)`` of the whole batch into ``out`` (same shape and dtype as
        ``x``, both C-contiguous (batch, n)); returns None.
    x0 : ndarray, shape (batch, n), float32 or float64
        Initial states (copied, then projected onto ``bounds``). The dtype is kept.
    args : tuple
        Passed unchanged to ``g``, ``g_block`` and ``observe``. Floating arrays must have
        the dtype of ``x0`` (made C-contiguous if needed).
    method : Picard, Anderson, Broyden or GaussSeidel
        Default ``Picard(damping=1.0)``.
    atol, rtol : float >= 0
        Sample ``b`` has converged at iteration ``k`` when
        ``r_k = max_i |P(g(x_k))_i - x_k,i| <= atol + rtol * max_i |x_k,i|`` (max norm,
        per sample; ``P`` projects onto the bounds).
    max_iter : int >= 1
        Maximum number of updates per sample.
    fixed_steps : int >= 1 or None
        Run exactly this many updates for every (non-failing) sample, with no early stop;
        ``converged`` then reports whether the final residual meets the tolerance.
    bounds : None or (lo, hi)
        Scalars or (n,) arrays, ``lo <= hi`` (``-inf``/``inf`` allowed); the state is
        projected after every update.
    g_block : numba @njit function ``g_block(x, out, args, start, stop)``, optional
        Writes columns ``[start, stop)`` of ``g(x)`` into ``out[:, start:stop]``; used by
        GaussSeidel for groups after the first (else the full ``g`` is evaluated), and
        for the first group when ``GaussSeidel(last_group_independent=True)`` (required
        there).
    observe : numba @njit function ``observe(x, args) -> (batch,) float array``, optional
        Recorded every ``record_every`` iterations and at the last one (e.g. an energy).
    record_every : int >= 1
    divergence_bound : float > 0
        A residual above it (or a non-finite state/residual) marks the sample as failed.
    raise_on_failure : bool
        Raise :class:`SolverFailure` (naming the samples and iterations) when a sample
        failed, instead of only reporting it.

    Returns
    -------
    SolveResult
        Row ``k`` of ``residual`` is ``r_k`` (``k`` = 0 is the initial state); a sample
        stopped at iteration ``n_iter`` holds ``x_{n_iter}``.

    Raises
    ------
    ValueError
        Bad input (non-jitted callback, non-finite x0, wrong ndim/shape/dtype, negative
        tolerances, ``max_iter < 1``, ``lo > hi``, GaussSeidel ranges that do not
        partition the columns, ``GaussSeidel(last_group_independent=True)`` without
        ``g_block``, ...).
    SolverFailure
        With ``raise_on_failure=True``, when a sample fails.
    """
    method = Picard() if method is None else method
    if not isinstance(method, Picard | Anderson | Broyden | GaussSeidel):
        raise ValueError(
            f"method must be Picard(...), Anderson(...), Broyden(...) or GaussSeidel(...) "
            f"for a fixed point, got {method!r} (ODE methods go to solve_steady_state)"
        )
    check_method_dtype(method, x0)
    p = prepare(
        g,
        x0,
        args,
        name="g",
        bounds=bounds,
        g_block=g_block,
        observe=observe,
        atol=atol,
        rtol=rtol,
        max_iter=max_iter,
        fixed_steps=fixed_steps,
        record_every=record_every,
        divergence_bound=divergence_bound,
    )
    m, reg, rtol_c, growth = 1, 0.0, 0.0, np.inf
    window, progress, regress, restarts, delay = 1, 1.0, np.inf, 0, 0
    ranges = np.zeros((1, 2), dtype=np.int64)
    group_ptr = np.zeros(2, dtype=np.int64)
    if isinstance(method, Picard):
        code = PICARD
    elif isinstance(method, Anderson):
        code = ANDERSON
        m, reg, rtol_c, growth = method.m, method.reg, method.restart_tol, method.growth
        window, progress = method.window, method.progress
        regress, restarts, delay = method.regress, method.restarts, method.delay
    elif isinstance(method, Broyden):
        code = BROYDEN
        m, reg, growth = method.m, method.denom_tol, method.growth
        window, progress = method.window, method.progress
        regress, restarts, delay = method.regress, method.restarts, method.delay
    else:
        code = GAUSS_SEIDEL
        method.check_partition(p.x.shape[1])
        ranges = np.array([r for grp in method.groups for r in grp], dtype=np.int64)
        group_ptr = np.cumsum([0] + [len(grp) for grp in method.groups]).astype(np.int64)
    use_block = g_block is not None and code == GAUSS_SEIDEL
    reuse_last_group = isinstance(method, GaussSeidel) and method.last_group_independent
    if reuse_last_group and not use_block:
        raise ValueError(
            "GaussSeidel(last_group_independent=True) evaluates the first group as a block "
            "at the top of each iteration: pass g_block (without it each group costs a "
            "full map and there is nothing to reuse)"
        )
    driver = driver_for(_drivers, "fp", p, (p.gsig, p.bsig, p.osig), _METHOD_TYPES)
    params = (
        float(method.damping),
        m,
        reg,
        rtol_c,
        growth,
        window,
        progress,
        regress,
        restarts,
        delay,
        ranges,
        group_ptr,
        use_block,
        reuse_last_group,
    )
    return run(
        driver,
        (p.gw, p.bw, p.ow),
        p,
        code,
        params,
        fixed_steps=fixed_steps,
        method=method.describe(),
        raise_on_failure=raise_on_failure,
        name="g",
        callbacks=(g, g_block, observe),
        extras=("n_fallback", "fallback_iter"),
    )
