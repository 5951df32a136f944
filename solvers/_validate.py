"""Input validation shared by the public solvers (ValueError messages say what to change)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._compile import is_jitted

#: State dtypes the drivers compile for.
STATE_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


def check_state(x0: Any) -> np.ndarray:
    """Return a fresh C-contiguous copy of ``x0`` (batch, n): float32/64 or complex64/128."""
    if not isinstance(x0, np.ndarray):
        x0 = np.asarray(x0)
    if x0.dtype.kind in "biu":
        raise ValueError(
            f"x0 has integer/bool dtype {x0.dtype}; pass a floating state, e.g. "
            "x0.astype(np.float64) or x0.astype(np.float32)"
        )
    if x0.dtype not in STATE_DTYPES:
        raise ValueError(
            f"x0 must be float32, float64, complex64 or complex128, got dtype {x0.dtype}"
        )
    if x0.ndim != 2:
        hint = " (for one sample use x0.reshape(1, -1))" if x0.ndim == 1 else ""
        raise ValueError(f"x0 must be 2-D (batch, n), got shape {x0.shape}{hint}")
    if x0.shape[0] < 1 or x0.shape[1] < 1:
        raise ValueError(f"x0 must have at least one sample and one unit, got shape {x0.shape}")
    if not np.all(np.isfinite(x0)):
        bad = np.flatnonzero(~np.all(np.isfinite(x0), axis=1))
        raise ValueError(
            f"x0 has non-finite entries (NaN or inf) in sample(s) {bad[:10].tolist()}; "
            "start from a finite state"
        )
    return np.array(x0, dtype=x0.dtype, order="C", copy=True)


def check_args(args: Any, dtype: np.dtype) -> tuple:
    """Check ``args``: a tuple; floating arrays in the state dtype, made C-contiguous.

    For a complex state, real arrays of the matching precision (float64 for complex128,
    float32 for complex64) are accepted too (real weights acting on complex states);
    complex arrays must have the state's dtype, and a real state takes no complex array.
    """
    if not isinstance(args, tuple):
        raise ValueError(f"args must be a tuple (possibly empty), got {type(args).__name__}")
    dtype = np.dtype(dtype)
    real = np.dtype(dtype.type(0).real.dtype)  # float of the state's precision
    ok = {dtype, real} if dtype.kind == "c" else {dtype}
    out = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            if a.dtype.kind in "fc" and a.dtype not in ok:
                extra = f" (or np.{real})" if dtype.kind == "c" else ""
                raise ValueError(
                    f"args[{i}] has dtype {a.dtype} but the state is {dtype}; convert it with "
                    f"args[{i}].astype(np.{dtype}){extra} so that the map runs in one "
                    "precision"
                )
            if not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
        elif isinstance(a, list | dict | set):
            raise ValueError(
                f"args[{i}] is a {type(a).__name__}; pass arrays, scalars or tuples "
                "(Numba needs fixed types)"
            )
        out.append(a)
    return tuple(out)


def check_tolerances(atol: float, rtol: float) -> tuple[float, float]:
    for name, v in (("atol", atol), ("rtol", rtol)):
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a real number, got {v!r}") from None
        if not fv >= 0 or not math.isfinite(fv):
            raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    return float(atol), float(rtol)


def check_count(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    if int(v) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def check_bound(divergence_bound: float) -> float:
    try:
        d = float(divergence_bound)
    except (TypeError, ValueError):
        raise ValueError(
            f"divergence_bound must be a positive number, got {divergence_bound!r}"
        ) from None
    if not d > 0:
        raise ValueError(f"divergence_bound must be > 0 (inf allowed), got {divergence_bound!r}")
    return d


def check_bounds(bounds: Any, n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return ``(lo, hi, has_bounds)`` as (n,) arrays in ``dtype``.

    Complex states take no bounds: a box ``lo <= x <= hi`` needs an order, which complex
    numbers lack (ValueError).
    """
    if bounds is not None and np.dtype(dtype).kind == "c":
        raise ValueError(
            f"bounds are not defined for complex states (x0 is {np.dtype(dtype)}): the box "
            "projection needs ordered (real) values; pass bounds=None, or solve for a real "
            "state"
        )
    if bounds is None:
        return np.full(n, -np.inf, dtype=dtype), np.full(n, np.inf, dtype=dtype), False
    try:
        lo_in, hi_in = bounds
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds must be None or a pair (lo, hi) of scalars or (n,) arrays, got {bounds!r}"
        ) from None
    arrs = []
    for name, v in (("lo", lo_in), ("hi", hi_in)):
        a = np.asarray(v if v is not None else (-np.inf if name == "lo" else np.inf))
        if a.dtype.kind not in "biuf":
            raise ValueError(f"bounds {name} must be numeric, got dtype {a.dtype}")
        if a.ndim == 0:
            a = np.full(n, float(a))
        elif a.shape != (n,):
            raise ValueError(
                f"bounds {name} must be a scalar or have shape ({n},), got shape {a.shape}"
            )
        if np.isnan(a).any():
            raise ValueError(f"bounds {name} contains NaN; use -inf/inf for no bound")
        arrs.append(np.ascontiguousarray(a, dtype=dtype))
    lo, hi = arrs
    if np.any(lo > hi):
        i = int(np.flatnonzero(lo > hi)[0])
        raise ValueError(f"bounds need lo <= hi; at unit {i} lo={lo[i]} > hi={hi[i]}")
    has = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    return lo, hi, has


def check_jitted(fn: Any, name: str, required: bool = True) -> None:
    if fn is None and not required:
        return
    if not is_jitted(fn):
        raise ValueError(
            f"{name} must be a Numba @njit function (got {type(fn).__name__}); decorate it "
            "with @numba.njit (cache=True recommended)"
        )


def check_method_dtype(method: Any, x0: Any) -> None:
    """Refuse a complex ``x0`` for a method not declared for complex states.

    A method class says so with the class attribute ``complex_states = True`` (all of
    Picard, Anderson, Broyden, GaussSeidel, Euler, RK4 and Dopri5 do); any other is
    refused, naming the method, rather than run with real-only arithmetic.
    """
    dt = getattr(x0, "dtype", None)
    if dt is None:
        dt = np.asarray(x0).dtype
    if np.dtype(dt).kind == "c" and not getattr(type(method), "complex_states", False):
        name = method.describe() if hasattr(method, "describe") else type(method).__name__
        raise ValueError(
            f"{name} is not defined for complex states (x0 is {np.dtype(dt)}); use one of "
            "Picard, Anderson, Broyden or GaussSeidel (fixed points) or Euler, RK4 or Dopri5 "
            "(steady states), or a real state"
        )
