"""Numba driver of the fixed-point methods (Picard, Anderson, Broyden, block Gauss-Seidel).

One driver serves the four methods (chosen by an integer code at run time), so a
process compiles it once per (dtype, args type, observe return type) and never per
method or per user function: ``g``, ``g_block`` and ``observe`` arrive as first-class
function values (``numba.types.FunctionType``), whose compiled code is cached on disk
across processes (``cache=True``). See ``_compile.py``.

Complex states compile the same source: the normal equations of Anderson are Hermitian
(``H_pq = dF_p^H dF_q``, ``R_p = dF_p^H f_k``, complex128) and the bound handling goes
through the generic kernels of ``_kernels.py`` (bounds are refused for complex states).
Broyden's history (``u_j``, ``v_j``, float64 or complex128) uses the same conjugating dot
product, so its update is the Hermitian form ``s^H H y`` for complex states.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._bookkeeping import (
    driver_output,
    map_verdicts,
    new_records,
    record_observed,
    reserve_row,
)
from ._callbacks import (
    BAD_OBSERVE,
    BLOCK,
    DETAIL,
    ERROR,
    ITERATION,
    MAIN,
    OBSERVE,
    STAGE,
    UNWRITTEN,
    WHICH,
)
from ._kernels import (
    acc_zeros,
    active_set_signature,
    all_nan,
    broyden_apply,
    cholesky_solve,
    clip_row,
    clip_value,
    dot,
    fill_nan,
    fill_nan_cols,
)

PICARD = 0
ANDERSON = 1
GAUSS_SEIDEL = 2
BROYDEN = 3

# The progress safeguard of the accelerated methods (Anderson, Broyden; see
# methods.Anderson): the columns of its per-sample state (float64; the counts and
# iterations are exact integers), and its verdicts.
BEST = 0  # smallest residual seen
REF = 1  # residual of the last decrease by the factor `progress`
REF_ITER = 2  # its iteration
SAVED = 3  # residual of the stored state
FALLEN = 4  # 1.0 once the sample switched to damped Picard for good
N_FALLBACK = 5  # fallbacks so far
FALLBACK_ITER = 6  # iteration of the switch (-1 before it)
GUARD_COLUMNS = 7
PROCEED = 0  # take the method's step
RESTART = 1  # clear the sample's history, then take the method's step
DAMPED = 2  # the sample has fallen back: take a damped Picard step
RESTORED = 3  # the sample has just fallen back to the stored state: take no step


@njit(cache=True)
def new_guard(B):
    """The safeguard state of ``B`` samples: rows of :data:`GUARD_COLUMNS` float64 values."""
    guard = np.zeros((B, GUARD_COLUMNS))
    for b in range(B):
        guard[b, BEST] = np.inf
        guard[b, REF] = np.inf
        guard[b, SAVED] = np.inf
        guard[b, FALLBACK_ITER] = -1.0
    return guard


@njit(cache=True, inline="always")
def progress_safeguard(guard, x_saved, xb, b, k, r, limits):
    """Update sample ``b``'s progress safeguard with its residual ``r`` at iteration ``k``.

    ``guard[b]``: the sample's state (columns :data:`BEST` ... :data:`FALLBACK_ITER`);
    ``x_saved[b]``: its stored state, the state row ``xb`` whenever ``r`` halved since the
    last save; ``limits = (progress, window, regress, restarts)``.

    No decrease of ``r`` by ``progress`` within ``window`` iterations, or
    ``r > regress * best``, is a fallback: the first ``restarts`` ones clear the history
    (verdict RESTART), the next one turns the sample into damped Picard for good (DAMPED
    from then on), from the stored state if its residual is smaller than ``r`` (then
    ``xb`` is overwritten with it and the verdict is RESTORED). Otherwise PROCEED.

    Inlined (``inline="always"``): it runs for every sample and iteration. Few arrays
    cross its boundary because each one costs reference counting in the loop: with the
    eight state arrays passed one by one (or as a namedtuple) the float32 Anderson solve
    of the 784-500-10 map of ``benchmarks/bench_solvers.py`` was about 6 % slower than
    the code this helper replaced (interleaved runs).
    """
    progress, window, regress, restarts = limits
    if r < guard[b, BEST]:
        guard[b, BEST] = r
    if r <= 0.5 * guard[b, SAVED]:
        guard[b, SAVED] = r
        xs = x_saved[b]
        for i in range(xb.shape[0]):
            xs[i] = xb[i]
    if guard[b, FALLEN] != 0.0:
        return DAMPED
    if r <= progress * guard[b, REF]:
        guard[b, REF] = r
        guard[b, REF_ITER] = k
        return PROCEED
    if k - guard[b, REF_ITER] < window and not r > regress * guard[b, BEST]:
        return PROCEED
    guard[b, N_FALLBACK] += 1.0
    guard[b, REF] = guard[b, BEST]
    guard[b, REF_ITER] = k
    if guard[b, N_FALLBACK] <= restarts:
        return RESTART
    guard[b, FALLEN] = 1.0
    guard[b, FALLBACK_ITER] = k
    if r > guard[b, SAVED]:
        xs = x_saved[b]
        for i in range(xb.shape[0]):
            xb[i] = xs[i]
        return RESTORED
    return DAMPED


@njit(cache=True, inline="always")
def damped_step(xb, gb, beta):
    """``xb <- xb + beta (gb - xb)`` in place (``beta`` in the state dtype)."""
    for i in range(xb.shape[0]):
        xb[i] = xb[i] + beta * (gb[i] - xb[i])


def fp_driver(
    g,
    g_block,
    observe,
    x,
    args,
    lo,
    hi,
    has_bounds,
    method,
    damping,
    m,
    reg,
    restart_tol,
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
    control,
    status,
):
    atol, rtol, max_iter, fixed_steps, record_every, divergence_bound, do_observe = control
    B = x.shape[0]
    n = x.shape[1]
    gx = np.empty_like(x)
    limit = fixed_steps if fixed_steps >= 0 else max_iter
    res, rel, obs, obs_it, n_iter, conv, failed, fail_iter, active = new_records(
        B, limit, do_observe
    )
    verdict_rule = (atol, rtol, limit, fixed_steps, divergence_bound)  # map_verdicts'
    n_obs = 0
    nfev = 0
    nfev_block = 0
    beta = damping
    one_m_beta = 1.0 - damping
    tmp = np.empty(1, dtype=x.dtype)
    tmp[0] = damping
    beta_t = tmp[0]  # damping in the state dtype, so float32 loops stay float32
    # Anderson state (allocated once; size 1 along m for the other methods)
    ma = m if method == ANDERSON else 1
    nb = B if method == ANDERSON else 1
    dF = np.zeros((nb, ma, n), dtype=x.dtype)
    dG = np.zeros((nb, ma, n), dtype=x.dtype)
    fprev = np.zeros((nb, n), dtype=x.dtype)
    gprev = np.zeros((nb, n), dtype=x.dtype)
    H = acc_zeros((nb, ma, ma), x)  # float64, or complex128 for complex states
    R = acc_zeros((nb, ma), x)
    Hs = acc_zeros((ma, ma), x)
    L = acc_zeros((ma, ma), x)
    rhs = acc_zeros(ma, x)
    gam = acc_zeros(ma, x)
    # per sample, for both accelerated methods (Anderson, Broyden): history count and
    # head, previous residual and active-set signature, and the progress safeguard
    ns = B if method == ANDERSON or method == BROYDEN else 1
    cnt = np.zeros(ns, dtype=np.int64)
    head = np.zeros(ns, dtype=np.int64)
    has_prev = np.zeros(ns, dtype=np.bool_)
    rprev = np.full(ns, np.inf)
    sig_prev = np.full(ns, -1, dtype=np.int64)
    # the progress safeguard's state and stored states (see progress_safeguard)
    guard = new_guard(B)
    x_saved = np.zeros((ns, n), dtype=x.dtype)
    limits = (progress, window, regress, restarts)
    n_groups = group_ptr.shape[0] - 1
    # Broyden state (see methods.Broyden): pairs (u_j, v_j), the previous state and
    # residual, scratch rows, in the accumulation dtype (size 1 for the other methods)
    mb = m if method == BROYDEN else 1
    nbr = B if method == BROYDEN else 1
    nr = n if method == BROYDEN else 1
    bU = acc_zeros((nbr, mb, nr), x)
    bV = acc_zeros((nbr, mb, nr), x)
    bxp = acc_zeros((nbr, nr), x)
    bfp = acc_zeros((nbr, nr), x)
    bf = acc_zeros(nr, x)
    bs = acc_zeros(nr, x)
    by = acc_zeros(nr, x)
    bhy = acc_zeros(nr, x)
    bhts = acc_zeros(nr, x)
    bdx = acc_zeros(nr, x)

    k = 0
    while True:
        # every callback: say which call this is, call it, stop at once if it raised (the
        # hook set status[ERROR], see _callbacks.py); in the first iteration, NaN-fill
        # what it must write first, so that entries it does not write fail the sample
        status[ITERATION] = k
        status[WHICH] = MAIN
        status[STAGE] = -1
        if reuse_last_group and k > 0:
            # Gauss-Seidel over two groups whose last group's map values do not depend on
            # that group's entries (methods.GaussSeidel.last_group_independent): the
            # columns of the last group in gx still hold its block values from the
            # previous sweep, computed at the current x_0 (which has not changed since),
            # i.e. g(x_k) there; only the first group's block is evaluated at x_k
            status[WHICH] = BLOCK
            status[STAGE] = 0
            for rr in range(group_ptr[0], group_ptr[1]):
                g_block(x, gx, args, ranges[rr, 0], ranges[rr, 1])
                nfev_block += 1
                if status[ERROR] != 0:
                    break
        else:
            if k == 0:
                fill_nan(gx)
            g(x, gx, args)
            nfev += 1
        if status[ERROR] != 0:
            break
        if k == 0 and all_nan(gx):
            status[ERROR] = UNWRITTEN
            break
        res, rel = reserve_row(res, rel, k, limit)
        n_active = map_verdicts(
            x,
            gx,
            active,
            k,
            res,
            rel,
            verdict_rule,
            has_bounds,
            lo,
            hi,
            n_iter,
            conv,
            failed,
            fail_iter,
        )
        if do_observe and (k % record_every == 0 or n_active == 0):
            status[ITERATION] = k
            status[WHICH] = OBSERVE
            status[STAGE] = -1
            vals = observe(x, args)
            if status[ERROR] != 0:
                break
            if vals.shape[0] != B:
                status[ERROR] = BAD_OBSERVE
                status[DETAIL] = vals.shape[0]
                break
            obs, obs_it, n_obs = record_observed(vals, k, obs, obs_it, n_obs, n_iter)
        if n_active == 0:
            break

        if method == PICARD and beta == 1.0:
            # x_{k+1} = g(x_k) for the active rows. Copy whichever is fewer: the new
            # values of the active rows into x, or the frozen rows of x into gx followed
            # by a swap of the two buffers (then the loop copies nothing while every
            # sample is still running).
            if B - n_active < n_active:
                for b in range(B):
                    if not active[b]:
                        xb = x[b]
                        gb = gx[b]
                        for i in range(n):
                            gb[i] = xb[i]
                x, gx = gx, x
            else:
                for b in range(B):
                    if active[b]:
                        xb = x[b]
                        gb = gx[b]
                        for i in range(n):
                            xb[i] = gb[i]
        elif method == PICARD:
            for b in range(B):
                if not active[b]:
                    continue
                xb = x[b]
                gb = gx[b]
                for i in range(n):
                    xb[i] = xb[i] + beta_t * (gb[i] - xb[i])
                if has_bounds and beta > 1.0:
                    clip_row(xb, lo, hi)
        elif method == ANDERSON:
            for b in range(B):
                if not active[b]:
                    continue
                r = res[k, b]
                xb = x[b]
                gb = gx[b]
                fp = fprev[b]
                gp = gprev[b]
                # stagnation or regression: restart or fall back (see progress_safeguard)
                verdict = progress_safeguard(guard, x_saved, xb, b, k, r, limits)
                if verdict == RESTORED:
                    continue  # the next iteration evaluates g there
                if verdict == DAMPED:
                    damped_step(xb, gb, beta_t)
                    continue
                if verdict == RESTART:
                    cnt[b] = 0
                    head[b] = 0
                if has_prev[b]:
                    # new differences, then the current f and g become the previous ones
                    # (one output array per loop: LLVM vectorises those, not the fused one)
                    slot = head[b]
                    dFs = dF[b, slot]
                    dGs = dG[b, slot]
                    for i in range(n):
                        dFs[i] = (gb[i] - xb[i]) - fp[i]
                    for i in range(n):
                        dGs[i] = gb[i] - gp[i]
                    for i in range(n):
                        fp[i] = gb[i] - xb[i]
                    for i in range(n):
                        gp[i] = gb[i]
                    c = min(cnt[b] + 1, ma)
                    for j in range(c):
                        s = dot(dFs, dF[b, j])  # dF_slot^H dF_j
                        H[b, slot, j] = s
                        H[b, j, slot] = s.conjugate()
                    # right-hand sides R_j = dF_j^H f_k, updated incrementally: for an old
                    # slot, f_k = f_{k-1} + dF_slot gives R_j += H[j, slot]; only the new
                    # slot needs a dot product (a slot lives at most m iterations)
                    for j in range(c):
                        if j != slot:
                            R[b, j] += H[b, j, slot]
                    R[b, slot] = dot(dFs, fp)
                    cnt[b] = c
                    head[b] = (slot + 1) % ma
                else:
                    for i in range(n):
                        fp[i] = gb[i] - xb[i]
                    for i in range(n):
                        gp[i] = gb[i]
                has_prev[b] = True
                # restart: under the projection the map is only piecewise smooth (affine
                # for a clipped affine map); differences from two pieces make a wrong
                # secant model, so when the set of components of P(g) at a bound changes
                # (signature: sums of their indices) the history, including the newest
                # difference, is discarded and a plain step is taken
                if has_bounds:
                    sig = active_set_signature(gb, lo, hi)
                    if sig != sig_prev[b]:
                        cnt[b] = 0
                        head[b] = 0
                    sig_prev[b] = sig
                c = cnt[b]
                plain = c == 0 or r > growth * rprev[b] or k < delay
                rprev[b] = r
                if not plain:
                    dmax = 0.0
                    for j in range(c):
                        dmax = max(dmax, H[b, j, j].real)
                        rhs[j] = R[b, j]
                        for q in range(c):
                            Hs[j, q] = H[b, j, q]
                    for j in range(c):
                        Hs[j, j] += reg * dmax
                    if not cholesky_solve(Hs, rhs, c, L, gam, restart_tol):
                        cnt[b] = 0
                        head[b] = 0
                        plain = True
                for i in range(n):
                    xb[i] = xb[i] + beta_t * fp[i]
                if not plain:
                    for j in range(c):
                        tmp[0] = gam[j]
                        gj = tmp[0]
                        tmp[0] = gam[j] * one_m_beta
                        gjb = tmp[0]
                        dGj = dG[b, j]
                        for i in range(n):
                            xb[i] = xb[i] - gj * dGj[i]
                        if beta != 1.0:
                            dFj = dF[b, j]
                            for i in range(n):
                                xb[i] = xb[i] + gjb * dFj[i]
                if has_bounds:
                    clip_row(xb, lo, hi)
        elif method == BROYDEN:
            for b in range(B):
                if not active[b]:
                    continue
                r = res[k, b]
                xb = x[b]
                gb = gx[b]
                for i in range(n):
                    bf[i] = gb[i] - xb[i]
                # the progress safeguard, as Anderson's
                verdict = progress_safeguard(guard, x_saved, xb, b, k, r, limits)
                if verdict == RESTORED:
                    continue  # the next iteration evaluates g there
                if verdict == DAMPED:
                    damped_step(xb, gb, beta_t)
                    continue
                if verdict == RESTART:
                    cnt[b] = 0
                    has_prev[b] = False
                # active-set restart (see the Anderson branch): the secant pair across a
                # change of the set of components at a bound is discarded with the history
                changed = False
                if has_bounds:
                    sig = active_set_signature(gb, lo, hi)
                    changed = sig != sig_prev[b]
                    sig_prev[b] = sig
                if changed:
                    cnt[b] = 0
                elif has_prev[b]:
                    c = cnt[b]
                    if c == mb:  # limited memory: restart a full history
                        c = 0
                    for i in range(n):
                        bs[i] = xb[i] - bxp[b, i]
                    for i in range(n):
                        by[i] = bf[i] - bfp[b, i]
                    broyden_apply(bU[b], bV[b], c, beta, by, bhy, False)
                    den = dot(bs, bhy)  # s^H H y
                    scale = np.sqrt(dot(bs, bs).real * dot(bhy, bhy).real)
                    if abs(den) > reg * scale and den != 0:
                        broyden_apply(bU[b], bV[b], c, beta, bs, bhts, True)
                        Us = bU[b, c]
                        Vs = bV[b, c]
                        for i in range(n):
                            Us[i] = (bs[i] - bhy[i]) / den
                        for i in range(n):
                            Vs[i] = bhts[i]
                        c += 1
                    cnt[b] = c
                for i in range(n):
                    bxp[b, i] = xb[i]
                for i in range(n):
                    bfp[b, i] = bf[i]
                has_prev[b] = True
                plain = cnt[b] == 0 or r > growth * rprev[b] or k < delay
                rprev[b] = r
                if plain:
                    damped_step(xb, gb, beta_t)
                else:
                    broyden_apply(bU[b], bV[b], cnt[b], beta, bf, bdx, False)
                    for i in range(n):
                        xb[i] = xb[i] - bdx[i]
                if has_bounds:
                    clip_row(xb, lo, hi)
        else:  # GAUSS_SEIDEL
            for q in range(n_groups):
                if q > 0:
                    status[STAGE] = q
                    if use_block:
                        status[WHICH] = BLOCK
                        for rr in range(group_ptr[q], group_ptr[q + 1]):
                            if k == 0:
                                fill_nan_cols(gx, ranges[rr, 0], ranges[rr, 1])
                            g_block(x, gx, args, ranges[rr, 0], ranges[rr, 1])
                            nfev_block += 1
                            if status[ERROR] != 0:
                                break
                    else:
                        status[WHICH] = MAIN
                        if k == 0:
                            fill_nan(gx)
                        g(x, gx, args)
                        nfev += 1
                    if status[ERROR] != 0:
                        break
                for rr in range(group_ptr[q], group_ptr[q + 1]):
                    a0 = ranges[rr, 0]
                    a1 = ranges[rr, 1]
                    for b in range(B):
                        if not active[b]:
                            continue
                        for i in range(a0, a1):
                            v = gx[b, i]
                            if q > 0 and has_bounds:
                                v = clip_value(v, lo[i], hi[i])
                            v = x[b, i] + beta_t * (v - x[b, i])
                            if has_bounds and beta > 1.0:
                                v = clip_value(v, lo[i], hi[i])
                            x[b, i] = v
            if status[ERROR] != 0:
                break
        k += 1

    out = driver_output(
        res, rel, obs, obs_it, n_obs, k, n_iter, conv, failed, fail_iter, nfev, nfev_block, x
    )
    n_fallback = guard[:, N_FALLBACK].astype(np.int64)
    fallback_iter = guard[:, FALLBACK_ITER].astype(np.int64)
    return out + (n_fallback, fallback_iter)  # noqa: RUF005 (tuple concatenation, typed by Numba)
