"""Batched steady states of ``dx/dt = f(x)`` by explicit integration (Euler, RK4, Dopri5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import types

from ._common import driver_for, prepare, run
from ._result import SolveResult
from ._ss_driver import DOPRI5, EULER, RUNGE_KUTTA4
from ._validate import check_method_dtype
from .methods import RK4, Dopri5, Euler

__all__ = ["solve_steady_state"]


_drivers: dict[tuple, Any] = {}  # steady-state drivers by (x, args, observe) type

# types of the method parameters (dt, step_atol, step_rtol, dt_max, safety, min_factor,
# max_factor) between the method code and the stopping controls
_METHOD_TYPES = (types.float64,) * 7


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
    check_method_dtype(method, x0)
    p = prepare(
        f,
        x0,
        args,
        name="f",
        bounds=bounds,
        g_block=None,
        observe=observe,
        atol=atol,
        rtol=rtol,
        max_iter=max_iter,
        fixed_steps=fixed_steps,
        record_every=record_every,
        divergence_bound=divergence_bound,
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
    driver = driver_for(_drivers, "ss", p, (p.gsig, p.osig), _METHOD_TYPES)
    params = tuple(float(v) for v in (dt, sa, sr, dmax, safety, fmin, fmax))
    return run(
        driver,
        (p.gw, p.ow),
        p,
        code,
        params,
        fixed_steps=fixed_steps,
        method=method.describe(),
        raise_on_failure=raise_on_failure,
        name="f",
        callbacks=(f, None, observe),
        extras=("n_rejected",),
    )
