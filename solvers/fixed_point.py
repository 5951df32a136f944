"""Batched fixed-point solver ``x = g(x)`` (Picard, Anderson, block Gauss-Seidel)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import types

from . import _compile as C
from ._common import build_result, no_block, no_observe
from ._fp_driver import ANDERSON, GAUSS_SEIDEL, PICARD
from ._result import SolveResult
from ._validate import (
    check_args,
    check_bound,
    check_bounds,
    check_count,
    check_jitted,
    check_state,
    check_tolerances,
)
from .methods import Anderson, GaussSeidel, Picard

__all__ = ["solve_fixed_point"]


def _prepare(g, x0, args, method, bounds, g_block, observe, *, kind: str):
    """Validate inputs, compile callbacks; return everything the driver needs."""
    name = "g" if kind == "fp" else "f"
    check_jitted(g, name)
    check_jitted(g_block, "g_block", required=False)
    check_jitted(observe, "observe", required=False)
    x = check_state(x0)
    args = check_args(args, x.dtype)
    n = x.shape[1]
    lo, hi, has_bounds = check_bounds(bounds, n, x.dtype)
    if has_bounds:
        np.clip(x, lo, hi, out=x)
    xt = C.state_type(x.dtype)
    at = numba.typeof(args)
    key = (g, g_block, observe, xt, at)
    prepared = _prepared.get(key)
    if prepared is None:
        prepared = _compile_callbacks(g, g_block, observe, xt, at, name)
        _prepared[key] = prepared
    gw, bw, ow, gsig, bsig, osig = prepared
    return x, args, lo, hi, has_bounds, xt, at, gsig, bsig, osig, gw, bw, ow


_prepared: dict[tuple, tuple] = {}


def _compile_callbacks(g, g_block, observe, xt, at, name):
    """Compile the callbacks for these types and wrap them as function values."""
    gargs = (xt, xt, at)
    rt = C.compile_user(g, gargs, f"{name}(x, out, args)")
    if rt != types.none:
        raise ValueError(f"{name}(x, out, args) must write into out and return None, got {rt}")
    gsig = C.map_sig(xt, at)
    bsig = C.block_sig(xt, at)
    gb = g_block if g_block is not None else no_block
    bargs = (xt, xt, at, types.int64, types.int64)
    rt = C.compile_user(gb, bargs, "g_block")
    if rt != types.none:
        raise ValueError(f"g_block(x, out, args, start, stop) must return None, got {rt}")
    ob = observe if observe is not None else no_observe
    oargs = (xt, at)
    ort = C.compile_user(ob, oargs, "observe(x, args)")
    if not (isinstance(ort, types.Array) and ort.ndim == 1 and isinstance(ort.dtype, types.Float)):
        raise ValueError(
            f"observe(x, args) must return a 1-D float array of shape (batch,), got {ort}"
        )
    osig = ort(xt, at)
    return (
        C.function_value(g, gargs),
        C.function_value(gb, bargs),
        C.function_value(ob, oargs),
        gsig,
        bsig,
        osig,
    )


_drivers: dict[tuple, Any] = {}


def _fp_driver_for(xt, at, gsig, bsig, osig):
    """The fixed-point driver compiled (or loaded from cache) for these types."""
    i64, f64, b1 = types.int64, types.float64, types.boolean
    vt = types.Array(xt.dtype, 1, "C")
    it2 = types.Array(i64, 2, "C")
    it1 = types.Array(i64, 1, "C")
    argtypes = (
        types.FunctionType(gsig),
        types.FunctionType(bsig),
        types.FunctionType(osig),
        xt,
        at,
        vt,
        vt,
        b1,
        i64,
        f64,
        i64,
        f64,
        f64,
        f64,
        it2,
        it1,
        b1,
        f64,
        f64,
        i64,
        i64,
        i64,
        f64,
        b1,
    )
    return C.get_driver("fp", (xt, at, osig), argtypes)


def solve_fixed_point(
    g: Callable,
    x0: np.ndarray,
    args: tuple = (),
    *,
    method: Picard | Anderson | GaussSeidel | None = None,
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
    method : Picard, Anderson or GaussSeidel
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
        GaussSeidel for groups after the first (else the full ``g`` is evaluated).
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
        partition the columns, ...).
    SolverFailure
        With ``raise_on_failure=True``, when a sample fails.
    """
    method = Picard() if method is None else method
    if not isinstance(method, Picard | Anderson | GaussSeidel):
        raise ValueError(
            f"method must be Picard(...), Anderson(...) or GaussSeidel(...) for a fixed "
            f"point, got {method!r} (ODE methods go to solve_steady_state)"
        )
    atol, rtol = check_tolerances(atol, rtol)
    max_iter = check_count("max_iter", max_iter, 1)
    fs = -1 if fixed_steps is None else check_count("fixed_steps", fixed_steps, 1)
    record_every = check_count("record_every", record_every, 1)
    dbound = check_bound(divergence_bound)
    x, args, lo, hi, has_bounds, xt, at, gsig, bsig, osig, gw, bw, ow = _prepare(
        g, x0, args, method, bounds, g_block, observe, kind="fp"
    )
    n = x.shape[1]
    m, reg, rtol_c, growth = 1, 0.0, 0.0, np.inf
    ranges = np.zeros((1, 2), dtype=np.int64)
    group_ptr = np.zeros(2, dtype=np.int64)
    if isinstance(method, Picard):
        code = PICARD
    elif isinstance(method, Anderson):
        code = ANDERSON
        m, reg, rtol_c, growth = method.m, method.reg, method.restart_tol, method.growth
    else:
        code = GAUSS_SEIDEL
        method.check_partition(n)
        ranges = np.array([r for grp in method.groups for r in grp], dtype=np.int64)
        group_ptr = np.cumsum([0] + [len(grp) for grp in method.groups]).astype(np.int64)
    use_block = g_block is not None and code == GAUSS_SEIDEL

    driver = _drivers.get((xt, at, osig))
    if driver is None:
        driver = _fp_driver_for(xt, at, gsig, bsig, osig)
        _drivers[(xt, at, osig)] = driver
    t0 = time.perf_counter()
    out = driver(
        gw,
        bw,
        ow,
        x,
        args,
        lo,
        hi,
        has_bounds,
        code,
        float(method.damping),
        m,
        reg,
        rtol_c,
        growth,
        ranges,
        group_ptr,
        use_block,
        atol,
        rtol,
        max_iter,
        fs,
        record_every,
        dbound,
        observe is not None,
    )
    wall = time.perf_counter() - t0
    return build_result(
        out=out,
        fixed_steps=fixed_steps,
        do_observe=observe is not None,
        wall_time=wall,
        method=method.describe(),
        raise_on_failure=raise_on_failure,
    )
