"""Shared pieces of the public solvers: input preparation, driver lookup, result assembly.

Both :func:`solvers.solve_fixed_point` and :func:`solvers.solve_steady_state` validate the
same stopping controls and inputs (:func:`prepare`), compile the user's callbacks into
function values, look their driver up per (state type, ``args`` type, ``observe``
signature) (:func:`driver_for`), and turn the driver's output into a
:class:`SolveResult` (:func:`run`). The drivers take the same leading arguments
(callbacks, ``x``, ``args``, ``lo``, ``hi``, ``has_bounds``, method code), then their
method parameters, then the stopping controls (one tuple, :data:`CONTROL_TYPE`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import njit, types

from . import _callbacks as CB
from . import _compile as C
from ._result import SolveResult, SolverFailure, Status
from ._validate import (
    check_args,
    check_bound,
    check_bounds,
    check_count,
    check_jitted,
    check_state,
    check_tolerances,
)

#: Type of the drivers' last argument, the stopping controls ``(atol, rtol, max_iter,
#: fixed_steps, record_every, divergence_bound, do_observe)``.
CONTROL_TYPE = types.Tuple(
    (
        types.float64,
        types.float64,
        types.int64,
        types.int64,
        types.int64,
        types.float64,
        types.boolean,
    )
)


#: Type of the drivers' status array, shared with the callback-error hook (see
#: ``_callbacks.py``).
STATUS_TYPE = types.Array(types.int64, 1, "C")


@njit(cache=True)
def no_block(x, out, args, start, stop):  # pragma: no cover - compiled
    """Placeholder ``g_block`` (never called when ``use_block`` is False)."""
    return


@njit(cache=True)
def no_observe(x, args):  # pragma: no cover - compiled
    """Placeholder ``observe`` (never called when ``do_observe`` is False)."""
    return np.zeros(x.shape[0])


def build_result(
    *,
    out: tuple,
    fixed_steps: int | None,
    do_observe: bool,
    wall_time: float,
    method: str,
    raise_on_failure: bool,
    extras: tuple[str, ...] = (),
) -> SolveResult:
    """The :class:`SolveResult` of a driver's output ``out``; raise if asked and failed.

    ``out`` is ``(res, rel, obs, obs_it, n_iter, conv, failed, fail_iter, nfev,
    nfev_block, x)``, followed by the per-sample arrays named in ``extras``
    (``n_rejected`` for the steady-state driver, ``n_fallback`` and ``fallback_iter`` for
    the fixed-point one).
    """
    res, rel, obs, obs_it, n_iter, conv, failed, fail_iter, nfev, nfev_block, x = out[:11]
    extra = dict(zip(extras, out[11:], strict=True))
    if failed.any():
        status = Status.FAILED
    elif fixed_steps is not None:
        status = Status.FIXED_STEPS
    elif conv.all():
        status = Status.CONVERGED
    else:
        status = Status.MAX_ITER
    B = x.shape[0]
    nf = int(failed.sum())
    nc = int(conv.sum())
    if status == Status.FAILED:
        idx = np.flatnonzero(failed)
        shown = ", ".join(f"sample {i} at iteration {fail_iter[i]}" for i in idx[:10])
        more = f" (and {len(idx) - 10} more)" if len(idx) > 10 else ""
        message = (
            f"{nf} of {B} samples failed (non-finite state/residual or residual above "
            f"divergence_bound): {shown}{more}; {nc} converged"
        )
        if (fail_iter[idx] == 0).any():
            message += (
                "; at iteration 0 the map's output is not finite (NaN or inf): entries of "
                "out that a map does not write stay NaN (out is NaN-filled before the "
                "first iteration's calls), so check that it does write every entry"
            )
    elif status == Status.FIXED_STEPS:
        message = f"ran {fixed_steps} steps; {nc} of {B} samples meet the tolerance"
    elif status == Status.CONVERGED:
        message = f"all {B} samples converged in at most {int(n_iter.max())} iterations"
    else:
        message = f"{B - nc} of {B} samples reached max_iter without meeting the tolerance"
    n_fallback = extra.get("n_fallback")
    if n_fallback is not None and n_fallback.any():
        fell = np.flatnonzero(extra["fallback_iter"] >= 0)
        message += (
            f"; progress safeguard: {int((n_fallback > 0).sum())} samples restarted their "
            f"history, {len(fell)} fell back to damped Picard"
            + (f" (samples {fell[:10].tolist()})" if len(fell) else "")
        )
    result = SolveResult(
        x=x,
        converged=conv,
        n_iter=n_iter,
        failed=failed,
        failure_iter=fail_iter,
        status=status,
        message=message,
        residual=res,
        residual_rel=rel,
        observed=obs if do_observe else None,
        observed_iter=obs_it if do_observe else np.zeros(0, dtype=np.int64),
        nfev=int(nfev),
        wall_time=float(wall_time),
        method=method,
        nfev_block=int(nfev_block),
        **extra,
    )
    if raise_on_failure and status == Status.FAILED:
        raise SolverFailure(f"{method}: {message}", result)
    return result


class Prepared(NamedTuple):
    """Validated inputs of one solve, in the form the drivers take them."""

    x: np.ndarray
    args: tuple
    lo: np.ndarray
    hi: np.ndarray
    has_bounds: bool
    xt: Any  # numba type of x
    at: Any  # numba type of args
    gsig: Any  # signatures of g/f, g_block, observe
    bsig: Any
    osig: Any
    gw: Any  # compiled function values of g/f, g_block, observe
    bw: Any
    ow: Any
    control: tuple  # values for CONTROL_TYPE


def prepare(
    fn: Callable,
    x0: Any,
    args: Any,
    *,
    name: str,
    bounds: Any,
    g_block: Callable | None,
    observe: Callable | None,
    atol: float,
    rtol: float,
    max_iter: int,
    fixed_steps: int | None,
    record_every: int,
    divergence_bound: float,
) -> Prepared:
    """Validate the controls and inputs, compile the callbacks; ValueError if bad.

    ``x0`` is copied (C-contiguous, dtype kept) and projected onto ``bounds``;
    ``fixed_steps=None`` becomes -1 in ``control``.
    """
    atol, rtol = check_tolerances(atol, rtol)
    max_iter = check_count("max_iter", max_iter, 1)
    fs = -1 if fixed_steps is None else check_count("fixed_steps", fixed_steps, 1)
    record_every = check_count("record_every", record_every, 1)
    dbound = check_bound(divergence_bound)
    check_jitted(fn, name)
    check_jitted(g_block, "g_block", required=False)
    check_jitted(observe, "observe", required=False)
    x = check_state(x0)
    args = check_args(args, x.dtype)
    lo, hi, has_bounds = check_bounds(bounds, x.shape[1], x.dtype)
    if has_bounds:
        np.clip(x, lo, hi, out=x)
    xt = C.state_type(x.dtype)
    at = numba.typeof(args)
    key = (fn, g_block, observe, xt, at)
    compiled = _callbacks.get(key)
    if compiled is None:
        compiled = _compile_callbacks(fn, g_block, observe, xt, at, name)
        _callbacks[key] = compiled
    gw, bw, ow, gsig, bsig, osig = compiled
    control = (atol, rtol, max_iter, fs, record_every, dbound, observe is not None)
    return Prepared(x, args, lo, hi, has_bounds, xt, at, gsig, bsig, osig, gw, bw, ow, control)


_callbacks: dict[tuple, tuple] = {}


def _compile_callbacks(g, g_block, observe, xt, at, name):
    """Compile the callbacks for these types and wrap them as function values."""
    gargs = (xt, xt, at)
    rt = C.compile_user(g, gargs, f"{name}(x, out, args)")
    if rt != types.none:
        raise ValueError(f"{name}(x, out, args) must write into out and return None, got {rt}")
    gsig = types.void(*gargs)
    gb = g_block if g_block is not None else no_block
    bargs = (xt, xt, at, types.int64, types.int64)
    bsig = types.void(*bargs)
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


def driver_for(
    cache: dict[tuple, Any], name: str, p: Prepared, fn_sigs: tuple, method_types: tuple
) -> Any:
    """Driver ``name`` for ``p``'s types, memoised in ``cache`` by (x, args, observe) type.

    Its arguments: function values typed by ``fn_sigs``, ``x``, ``args``, ``lo``, ``hi``,
    ``has_bounds``, the method code (int64), ``method_types``, :data:`CONTROL_TYPE`, then
    the status array (:data:`STATUS_TYPE`).
    """
    key = (p.xt, p.at, p.osig)
    driver = cache.get(key)
    if driver is None:
        vt = types.Array(p.xt.dtype, 1, "C")
        argtypes = (
            *(types.FunctionType(sig) for sig in fn_sigs),
            p.xt,
            p.at,
            vt,
            vt,
            types.boolean,
            types.int64,
            *method_types,
            CONTROL_TYPE,
            STATUS_TYPE,
        )
        driver = C.get_driver(name, key, argtypes)
        cache[key] = driver
    return driver


def run(
    driver: Any,
    fns: tuple,
    p: Prepared,
    code: int,
    params: tuple,
    *,
    fixed_steps: int | None,
    method: str,
    raise_on_failure: bool,
    name: str,
    callbacks: tuple,
    extras: tuple[str, ...] = (),
) -> SolveResult:
    """Call ``driver`` on ``p`` (timed) and assemble the :class:`SolveResult`.

    An exception raised in a callback (``callbacks``: the map, named ``name``, then
    ``g_block`` and ``observe`` or None) is
    re-raised here, its type and message unchanged, with a note naming the callback and
    the iteration; a callback that broke its contract raises
    :class:`~solvers._callbacks.CallbackError` (see ``_callbacks.py``).
    """
    status = CB.new_status()
    with CB.capture(status) as cap:
        t0 = time.perf_counter()
        out = driver(*fns, p.x, p.args, p.lo, p.hi, p.has_bounds, code, *params, p.control, status)
        wall = time.perf_counter() - t0
    CB.raise_if_failed(cap, name=name, method=method, x=p.x, args=p.args, callbacks=callbacks)
    return build_result(
        out=out,
        fixed_steps=fixed_steps,
        do_observe=p.control[-1],
        wall_time=wall,
        method=method,
        raise_on_failure=raise_on_failure,
        extras=extras,
    )
