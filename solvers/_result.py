"""Result, status and failure types shared by every solver."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

__all__ = ["SolveResult", "SolverFailure", "Status"]


class Status(IntEnum):
    """Overall outcome of a batched solve.

    ``CONVERGED`` (0): every sample met the tolerance. ``FIXED_STEPS`` (1): the requested
    number of updates ran for every sample (no early stop). ``MAX_ITER`` (2): some sample
    reached ``max_iter`` without meeting the tolerance. ``FAILED`` (-1): some sample produced
    a non-finite state/residual or a residual above ``divergence_bound``.
    """

    CONVERGED = 0
    FIXED_STEPS = 1
    MAX_ITER = 2
    FAILED = -1


class SolverFailure(RuntimeError):
    """Raised with ``raise_on_failure=True`` when at least one sample failed.

    Attributes
    ----------
    result : SolveResult
        The full result, so that the caller can inspect the surviving samples.
    samples : numpy.ndarray
        Indices of the failed samples.
    iterations : numpy.ndarray
        Iteration at which each of them failed.
    """

    def __init__(self, message: str, result: SolveResult):
        super().__init__(message)
        self.result = result
        self.samples = np.flatnonzero(result.failed)
        self.iterations = result.failure_iter[self.samples]


@dataclass(frozen=True, eq=False)
class SolveResult:
    """Outcome of :func:`solvers.solve_fixed_point` or :func:`solvers.solve_steady_state`.

    Attributes
    ----------
    x : numpy.ndarray, shape (batch, n)
        Final state, in the dtype of ``x0``. A sample that stopped early (converged or
        failed) holds the state at which it stopped.
    converged : numpy.ndarray of bool, shape (batch,)
        Residual of the final state ``r <= atol + rtol * max|x|``.
    n_iter : numpy.ndarray of int64, shape (batch,)
        Updates (iterations) each sample ran.
    failed : numpy.ndarray of bool, shape (batch,)
        Non-finite state or residual, or residual above ``divergence_bound``.
    failure_iter : numpy.ndarray of int64, shape (batch,)
        Iteration at which a sample failed, ``-1`` for none.
    status : Status
        Overall outcome (see :class:`Status`).
    message : str
        Human-readable summary.
    residual : numpy.ndarray of float64, shape (n_rows, batch)
        Absolute residual ``r_k`` of every sample at iterations ``k = 0 .. n_rows-1``
        (row ``k`` is the residual of the state after ``k`` updates); NaN after the
        sample stopped.
    residual_rel : numpy.ndarray of float64, shape (n_rows, batch)
        ``r_k / max(max_i |x_k,i|, tiny)``, NaN after the sample stopped.
    observed : numpy.ndarray of float64, shape (n_obs, batch), or None
        Values of ``observe(x, args)`` at iterations ``observed_iter``; NaN for samples
        that had stopped before that iteration.
    observed_iter : numpy.ndarray of int64, shape (n_obs,)
        Iterations at which ``observe`` was recorded.
    nfev : int
        Batched evaluations of ``g`` (or ``f``); block evaluations of ``g_block`` are
        counted in ``nfev_block``.
    wall_time : float
        Seconds spent in the solve (validation and compilation excluded).
    method : str
        Description of the method and its parameters.
    nfev_block : int
        Calls of ``g_block`` (Gauss-Seidel only).
    n_rejected : numpy.ndarray of int64, shape (batch,), or None
        Rejected step attempts per sample (ODE methods; zeros except for Dopri5).
    n_fallback : numpy.ndarray of int64, shape (batch,), or None
        Times the progress safeguard of an accelerated fixed-point method (Anderson)
        intervened in each sample: history restarts, plus the final switch to the damped
        Picard iteration (fixed-point methods; zeros for Picard and GaussSeidel).
    fallback_iter : numpy.ndarray of int64, shape (batch,), or None
        Iteration at which a sample switched to damped Picard for good, -1 for none
        (fixed-point methods).
    """

    x: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    failed: np.ndarray
    failure_iter: np.ndarray
    status: Status
    message: str
    residual: np.ndarray
    residual_rel: np.ndarray
    observed: np.ndarray | None
    observed_iter: np.ndarray
    nfev: int
    wall_time: float
    method: str
    nfev_block: int = 0
    n_rejected: np.ndarray | None = None
    n_fallback: np.ndarray | None = None
    fallback_iter: np.ndarray | None = None

    @property
    def fell_back(self) -> np.ndarray:
        """Samples that switched to damped Picard for good, shape (batch,) bool."""
        if self.fallback_iter is None:
            return np.zeros(self.batch, dtype=bool)
        return np.asarray(self.fallback_iter) >= 0

    @property
    def success(self) -> bool:
        """No sample failed and every sample converged (or the fixed steps all ran)."""
        if bool(self.failed.any()):
            return False
        return self.status in (Status.CONVERGED, Status.FIXED_STEPS)

    @property
    def batch(self) -> int:
        """Number of samples."""
        return int(self.x.shape[0])

    @property
    def final_residual(self) -> np.ndarray:
        """Last finite entry of each sample's column of ``residual``, shape (batch,).

        For a sample that converged or ran its fixed steps this is the residual of the
        returned state; NaN where the column has no finite entry.
        """
        r = np.asarray(self.residual, dtype=np.float64)
        out = np.full(r.shape[1] if r.ndim == 2 else self.batch, np.nan)
        if r.ndim != 2 or r.shape[0] == 0:
            return out
        finite = np.isfinite(r)
        last = r.shape[0] - 1 - np.argmax(finite[::-1], axis=0)
        has = finite.any(axis=0)
        out[has] = r[last[has], np.flatnonzero(has)]
        return out
