"""Pay the compilation cost of a solve up front (e.g. before timing or training)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .fixed_point import solve_fixed_point
from .methods import Picard
from .steady_state import solve_steady_state

__all__ = ["warmup"]


def warmup(
    fn: Callable,
    x0: np.ndarray,
    args: tuple = (),
    *,
    steady_state: bool = False,
    g_block: Callable | None = None,
    observe: Callable | None = None,
) -> float:
    """Compile everything a later solve with these argument types needs; return seconds.

    Runs one update on the first sample of ``x0``. Compilation is per (driver, dtype of
    ``x0``, type of ``args``, return type of ``observe``) and per user function; the
    method and its parameters, the batch size and the tolerances do not matter, so one
    warm-up covers every fixed-point method (or every ODE method with
    ``steady_state=True``).

    Parameters
    ----------
    fn : numba @njit function
        ``g(x, out, args)`` (or ``f`` with ``steady_state=True``).
    x0 : ndarray, shape (batch, n)
        A state of the dtype that the real solves will use (only ``x0[:1]`` is used).
    args, g_block, observe
        As they will be passed to :func:`solvers.solve_fixed_point` /
        :func:`solvers.solve_steady_state`.
    """
    t0 = time.perf_counter()
    x = np.asarray(x0)
    if x.ndim == 2:
        x = x[:1]
    if steady_state:
        if g_block is not None:
            raise ValueError("g_block applies to fixed points only (steady_state=False)")
        solve_steady_state(fn, x, args, fixed_steps=1, observe=observe)
    else:
        solve_fixed_point(
            fn, x, args, method=Picard(), fixed_steps=1, g_block=g_block, observe=observe
        )
    return time.perf_counter() - t0
