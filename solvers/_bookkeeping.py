"""Per-sample bookkeeping shared by the two Numba drivers (no function arguments, so they cache).

Both drivers record, for every sample ``b`` and iteration ``k``, the absolute residual
``r`` and the relative one ``r / max(max_i |x_i|, tiny)`` (NaN once the sample stopped),
decide whether the sample stops (failure, convergence, iteration limit), record the
``observe`` values of the samples still running at ``k``, and trim the record buffers at
the end. The helpers below hold that logic once. They allocate only when a buffer has to
grow (geometrically) and at the start and the end of a solve, never per sample.

What runs for every sample and iteration takes scalars only (:func:`sample_verdict`):
a helper there that took the record arrays made a 200-step Picard solve of a cheap map
(batch 128, n 510) markedly slower, even with ``inline="always"``, so the two stores of the
residual stay in the drivers' loops and the array updates run only when a sample stops
(:func:`stop_sample`). One iteration of the fixed-point map's whole batch
(:func:`map_verdicts`: one call per iteration, not per sample) is shared by the
fixed-point driver and by callers that run their own map loop with the solvers' stopping
rule (``eqprop.graph.conv_kernels``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kernels import _TINY, absmax_diff, clip_row, grow_rows, grow_vec


@njit(cache=True)
def new_records(B, limit, do_observe):
    """Record buffers and per-sample flags of a batch of ``B`` samples.

    Returns ``(res, rel, obs, obs_it, n_iter, conv, failed, fail_iter, active)``: residual
    rows (float64, NaN-filled, room for ``min(limit + 1, 64)`` rows), observation rows
    (NaN) and their iterations (-1), ``n_iter``/``fail_iter`` (-1), ``conv``/``failed``
    (False) and ``active`` (True).
    """
    cap = min(limit + 1, 64)
    res = np.full((cap, B), np.nan)
    rel = np.full((cap, B), np.nan)
    ocap = 16 if do_observe else 1
    obs = np.full((ocap, B), np.nan)
    obs_it = np.full(ocap, -1, dtype=np.int64)
    n_iter = np.full(B, -1, dtype=np.int64)
    conv = np.zeros(B, dtype=np.bool_)
    failed = np.zeros(B, dtype=np.bool_)
    fail_iter = np.full(B, -1, dtype=np.int64)
    active = np.ones(B, dtype=np.bool_)
    return res, rel, obs, obs_it, n_iter, conv, failed, fail_iter, active


@njit(cache=True)
def reserve_row(res, rel, k, limit):
    """``(res, rel)`` with room for row ``k`` (doubled, at most ``limit + 1`` rows)."""
    if k < res.shape[0]:
        return res, rel
    newcap = min(2 * res.shape[0], limit + 1)
    return grow_rows(res, newcap), grow_rows(rel, newcap)


# verdicts of sample_verdict
RUNNING = 0
CONVERGED = 1
STOPPED = 2  # at the iteration limit without meeting the tolerance
FAILED = 3


@njit(cache=True)
def sample_verdict(r, xm, k, atol, rtol, limit, fixed_steps, divergence_bound):
    """Whether a sample with residual ``r`` and ``xm = max_i |x_i|`` at iteration ``k`` stops.

    FAILED when ``not r <= divergence_bound`` (NaN included); CONVERGED when
    ``r <= atol + rtol * xm`` (not in fixed-steps mode, ``fixed_steps >= 0``); at
    ``k >= limit`` CONVERGED or STOPPED by the same tolerance; else RUNNING. Scalars only,
    so that it inlines into the per-sample loops.
    """
    if not r <= divergence_bound:
        return FAILED
    if fixed_steps < 0 and r <= atol + rtol * xm:
        return CONVERGED
    if k >= limit:
        return CONVERGED if r <= atol + rtol * xm else STOPPED
    return RUNNING


@njit(cache=True)
def stop_sample(b, k, verdict, n_iter, conv, failed, fail_iter, active):
    """Stop sample ``b`` at iteration ``k`` with a verdict other than RUNNING."""
    if verdict == FAILED:
        failed[b] = True
        fail_iter[b] = k
    else:
        conv[b] = verdict == CONVERGED
    active[b] = False
    n_iter[b] = k


@njit(cache=True)
def map_verdicts(
    x, gx, active, k, res, rel, control, has_bounds, lo, hi, n_iter, conv, failed, fail_iter
):
    """Iteration ``k``'s verdicts of a fixed-point map ``g`` for the samples still running.

    For every active sample ``b``: project ``g(x_k)`` (``gx[b]``, in place) onto the box
    ``[lo, hi]`` when ``has_bounds``, store the residual
    :math:`r_k = \\max_i |P(g(x_k))_i - x_{k,i}|` in ``res[k, b]`` and
    :math:`r_k / \\max(\\max_i |x_{k,i}|, \\text{tiny})` in ``rel[k, b]``, and stop the
    sample (:func:`stop_sample`) when :func:`sample_verdict` says so. ``control`` is
    ``(atol, rtol, limit, fixed_steps, divergence_bound)`` as :func:`sample_verdict`
    takes them. ``res``/``rel`` must have row ``k`` (:func:`reserve_row`).

    Returns
    -------
    int
        How many samples still run after iteration ``k`` (0: the solve is over).
    """
    atol, rtol, limit, fixed_steps, divergence_bound = control
    n_active = 0
    for b in range(x.shape[0]):
        if not active[b]:
            continue
        if has_bounds:
            clip_row(gx[b], lo, hi)
        r, xm = absmax_diff(gx[b], x[b])
        res[k, b] = r
        rel[k, b] = r / max(xm, _TINY)
        v = sample_verdict(r, xm, k, atol, rtol, limit, fixed_steps, divergence_bound)
        if v == RUNNING:
            n_active += 1
        else:
            stop_sample(b, k, v, n_iter, conv, failed, fail_iter, active)
    return n_active


@njit(cache=True)
def record_observed(vals, k, obs, obs_it, n_obs, n_iter):
    """Store ``vals`` (batch,) as observation row ``n_obs`` at iteration ``k``.

    Samples that stopped before ``k`` keep NaN. Returns ``(obs, obs_it, n_obs + 1)``
    (the buffers doubled when full).
    """
    if n_obs >= obs.shape[0]:
        obs = grow_rows(obs, 2 * obs.shape[0])
        obs_it = grow_vec(obs_it, 2 * obs_it.shape[0])
    for b in range(obs.shape[1]):
        if n_iter[b] < 0 or n_iter[b] >= k:
            obs[n_obs, b] = vals[b]
    obs_it[n_obs] = k
    return obs, obs_it, n_obs + 1


@njit(cache=True)
def driver_output(
    res, rel, obs, obs_it, n_obs, k, n_iter, conv, failed, fail_iter, nfev, nfev_block, x
):
    """The drivers' common output tuple, with the records trimmed to what was used.

    ``(res, rel, obs, obs_it, n_iter, conv, failed, fail_iter, nfev, nfev_block, x)``
    where ``res``/``rel`` are copies of the ``k + 1`` rows written and ``obs``/``obs_it``
    of the ``n_obs`` observations (see ``_common.build_result``).
    """
    rows = k + 1
    return (
        res[:rows].copy(),
        rel[:rows].copy(),
        obs[:n_obs].copy(),
        obs_it[:n_obs].copy(),
        n_iter,
        conv,
        failed,
        fail_iter,
        nfev,
        nfev_block,
        x,
    )
