"""Shared pieces of the public solvers: dummy callbacks, result assembly, failure raising."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._result import SolveResult, SolverFailure, Status


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
    n_rejected: np.ndarray | None = None,
) -> SolveResult:
    res, rel, obs, obs_it, n_iter, conv, failed, fail_iter, nfev, nfev_block, x = out
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
    elif status == Status.FIXED_STEPS:
        message = f"ran {fixed_steps} steps; {nc} of {B} samples meet the tolerance"
    elif status == Status.CONVERGED:
        message = f"all {B} samples converged in at most {int(n_iter.max())} iterations"
    else:
        message = f"{B - nc} of {B} samples reached max_iter without meeting the tolerance"
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
        n_rejected=n_rejected,
    )
    if raise_on_failure and status == Status.FAILED:
        raise SolverFailure(f"{method}: {message}", result)
    return result
