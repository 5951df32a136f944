"""Batched steady states of ``dx/dt = f(x)`` by explicit integration (Euler, RK4, Dopri5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import types

from . import _compile as C
from ._common import build_result
from ._result import SolveResult
from ._ss_driver import DOPRI5, EULER, RUNGE_KUTTA4
from ._validate import check_bound, check_count, check_tolerances
from .fixed_point import _prepare
from .methods import RK4, Dopri5, Euler

__all__ = ["solve_steady_state"]


_drivers: dict[tuple, Any] = {}


def _ss_driver_for(xt, at, gsig, osig):
    """The steady-state driver compiled (or loaded from cache) for these types."""
    i64, f64, b1 = types.int64, types.float64, types.boolean
    vt = types.Array(xt.dtype, 1, "C")
    argtypes = (
        types.FunctionType(gsig),
        types.FunctionType(osig),
        xt,
        at,
        vt,
        vt,
        b1,
        i64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
        i64,
        i64,
        i64,
        f64,
        b1,
    )
    return C.get_driver("ss", (xt, at, osig), argtypes)


def solve_steady_state(
    f: Callable,
    x0: np.ndarray,
    args: tuple = (),
    *,
    method: Euler | RK4 | Dopri5 | None = None,
    atol: float = 1e-6,
    rtol: float = 0.0,
    max_iter: int = 10000,
    fixed_steps: int | None = None,
    bounds: Any = None,
    observe: Callable | None = None,
    record_every: int = 1,
    divergence_bound: float = 1e8,
    raise_on_failure: bool = False,
) -> SolveResult:
    """Integrate ``dx/dt = f(x)`` (projected onto the bounds) to a steady state.

    Parameters
    ----------
    f : numba @njit function ``f(x, out, args)``
        Writes ``dx/dt`` of the whole batch into ``out`` (same shape/dtype as ``x``);
        returns None.
    x0 : ndarray, shape (batch, n), float32 or float64
        Initial states (copied, then projected onto ``bounds``); the dtype is kept.
    args : tuple
        Passed unchanged to ``f`` and ``observe`` (floating arrays in the dtype of x0).
    method : Euler, RK4 or Dopri5
        Default ``Euler(dt=0.1)``: ``x_{k+1} = P(x_k + dt f(x_k))``.
    atol, rtol : float >= 0
        Steady-state tolerance: sample ``b`` has converged at iteration ``k`` when the
        max-norm of the projected field, ``r_k = max_i |f(x_k)_i|`` with the components
        that push out of the box at an active bound set to 0, satisfies
        ``r_k <= atol + rtol * max_i |x_k,i|``. (Dopri5's ``step_atol``/``step_rtol``
        control the integration error, not this.)
    max_iter : int >= 1
        Maximum number of steps (for Dopri5: step attempts, accepted or rejected).
    fixed_steps : int >= 1 or None
        Run exactly this many steps for every (non-failing) sample.
    bounds, observe, record_every, divergence_bound, raise_on_failure
        As in :func:`solvers.solve_fixed_point`.

    Returns
    -------
    SolveResult
        ``n_rejected`` counts rejected attempts per sample (Dopri5; zeros otherwise).
        For Dopri5 a rejected attempt leaves the state, hence the residual, unchanged.

    Raises
    ------
    ValueError
        Bad input (see :func:`solvers.solve_fixed_point`).
    SolverFailure
        With ``raise_on_failure=True``, when a sample fails (non-finite state or field,
        residual above ``divergence_bound``, or Dopri5 step-size underflow).
    """
    method = Euler() if method is None else method
    if not isinstance(method, Euler | RK4 | Dopri5):
        raise ValueError(
            f"method must be Euler(...), RK4(...) or Dopri5(...) for a steady state, got "
            f"{method!r} (fixed-point methods go to solve_fixed_point)"
        )
    atol, rtol = check_tolerances(atol, rtol)
    max_iter = check_count("max_iter", max_iter, 1)
    fs = -1 if fixed_steps is None else check_count("fixed_steps", fixed_steps, 1)
    record_every = check_count("record_every", record_every, 1)
    dbound = check_bound(divergence_bound)
    x, args, lo, hi, has_bounds, xt, at, gsig, _bsig, osig, fw, _bw, ow = _prepare(
        f, x0, args, method, bounds, None, observe, kind="ss"
    )
    sa, sr, dmax, safety, fmin, fmax = 0.0, 0.0, np.inf, 0.9, 0.2, 10.0
    if isinstance(method, Euler):
        code, dt = EULER, method.dt
    elif isinstance(method, RK4):
        code, dt = RUNGE_KUTTA4, method.dt
    else:
        code, dt = DOPRI5, method.dt0
        sa, sr, dmax = method.step_atol, method.step_rtol, method.dt_max
        safety, fmin, fmax = method.safety, method.min_factor, method.max_factor

    driver = _drivers.get((xt, at, osig))
    if driver is None:
        driver = _ss_driver_for(xt, at, gsig, osig)
        _drivers[(xt, at, osig)] = driver
    t0 = time.perf_counter()
    out = driver(
        fw,
        ow,
        x,
        args,
        lo,
        hi,
        has_bounds,
        code,
        float(dt),
        sa,
        sr,
        float(dmax),
        float(safety),
        float(fmin),
        float(fmax),
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
        out=out[:11],
        fixed_steps=fixed_steps,
        do_observe=observe is not None,
        wall_time=wall,
        method=method.describe(),
        raise_on_failure=raise_on_failure,
        n_rejected=out[11] if code == DOPRI5 else np.zeros(x.shape[0], dtype=np.int64),
    )
