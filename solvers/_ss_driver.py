"""Numba driver of the explicit ODE methods (projected Euler, RK4, Dormand-Prince 5(4)).

Integrates ``dx/dt = f(x)`` of a batch until the projected field vanishes (steady state).
One driver for the three methods, with ``f`` and ``observe`` as first-class function
values (see ``_compile.py``).
"""

from __future__ import annotations

import numpy as np

from ._bookkeeping import (
    FAILED,
    RUNNING,
    driver_output,
    new_records,
    record_observed,
    reserve_row,
    sample_verdict,
    stop_sample,
)
from ._callbacks import (
    BAD_OBSERVE,
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
    _TINY,
    absmax,
    absmax_diff,
    absmax_field,
    acc_zeros,
    all_nan,
    clip_row,
    fill_nan,
    step_rows,
)

EULER = 0
RUNGE_KUTTA4 = 1
DOPRI5 = 2


def ss_driver(
    f,
    observe,
    x,
    args,
    lo,
    hi,
    has_bounds,
    method,
    dt,
    step_atol,
    step_rtol,
    dt_max,
    safety,
    min_factor,
    max_factor,
    control,
    status,
):
    atol, rtol, max_iter, fixed_steps, record_every, divergence_bound, do_observe = control
    B = x.shape[0]
    n = x.shape[1]
    nstage = 7 if method == DOPRI5 else (4 if method == RUNGE_KUTTA4 else 1)
    K = np.zeros((nstage, B, n), dtype=x.dtype)
    xs = x.copy()
    xn = x.copy() if method == DOPRI5 else np.zeros((1, 1), dtype=x.dtype)
    tmp = np.empty(1, dtype=x.dtype)
    tmp[0] = dt
    dt_t = tmp[0]  # step in the state dtype, so float32 loops stay float32
    tmp[0] = dt / 2
    half_t = tmp[0]
    tmp[0] = dt / 6
    sixth_t = tmp[0]
    # Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae", J. Comput.
    # Appl. Math. 6(1):19-26, the RK5(4)7M pair: stage matrix (row s = stage s, the last
    # row the 5th-order weights, so f there is the FSAL first stage of the next step) and
    # the weights of the error estimate (5th minus embedded 4th order).
    A = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [1 / 5, 0.0, 0.0, 0.0, 0.0, 0.0],
            [3 / 40, 9 / 40, 0.0, 0.0, 0.0, 0.0],
            [44 / 45, -56 / 15, 32 / 9, 0.0, 0.0, 0.0],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0.0, 0.0],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0.0],
            [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
        ]
    )
    E = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])
    h = np.full(B, dt)
    erow = acc_zeros(n, x)  # Dopri5's scaled error of one sample (complex128 if x is)
    stab = 3.0
    t = np.zeros(B)
    n_rej = np.zeros(B, dtype=np.int64)

    limit = fixed_steps if fixed_steps >= 0 else max_iter
    res, rel, obs, obs_it, n_iter, conv, failed, fail_iter, active = new_records(
        B, limit, do_observe
    )
    n_obs = 0
    nfev = 0
    k1 = K[0]

    # every call of f: say which call this is, call it, stop at once if it raised (the
    # hook set status[ERROR], see _callbacks.py); NaN-fill each buffer before its first
    # call (here and in iteration 0), so that entries f does not write fail the sample
    status[ITERATION] = 0
    status[WHICH] = MAIN
    status[STAGE] = -1
    fill_nan(k1)
    f(x, k1, args)
    nfev += 1
    k = 0
    if status[ERROR] == 0 and all_nan(k1):
        status[ERROR] = UNWRITTEN
    while status[ERROR] == 0:
        res, rel = reserve_row(res, rel, k, limit)
        n_active = 0
        for b in range(B):
            if not active[b]:
                continue
            r, xm = absmax_field(k1[b], x[b], lo, hi, has_bounds)
            res[k, b] = r
            rel[k, b] = r / max(xm, _TINY)
            v = sample_verdict(r, xm, k, atol, rtol, limit, fixed_steps, divergence_bound)
            if v == RUNNING and method == DOPRI5 and not h[b] > 1e-14 * max(t[b], dt):
                v = FAILED  # step size underflow: the error control cannot make progress
            if v == RUNNING:
                n_active += 1
            else:
                stop_sample(b, k, v, n_iter, conv, failed, fail_iter, active)
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

        status[ITERATION] = k
        status[WHICH] = MAIN
        if method == EULER:
            for b in range(B):
                if not active[b]:
                    continue
                xb = x[b]
                kb = k1[b]
                for i in range(n):
                    xb[i] = xb[i] + dt_t * kb[i]
                if has_bounds:
                    clip_row(xb, lo, hi)
            f(x, k1, args)
            nfev += 1
        elif method == RUNGE_KUTTA4:
            for s in range(1, 4):
                cs = half_t if s < 3 else dt_t
                step_rows(xs, x, K[s - 1], cs, active, lo, hi, has_bounds)
                status[STAGE] = s
                if k == 0:
                    fill_nan(K[s])
                f(xs, K[s], args)
                nfev += 1
                if status[ERROR] != 0:
                    break
            if status[ERROR] != 0:
                break
            k2 = K[1]
            k3 = K[2]
            k4 = K[3]
            for b in range(B):
                if not active[b]:
                    continue
                xb = x[b]
                a1 = k1[b]
                a2 = k2[b]
                a3 = k3[b]
                a4 = k4[b]
                for i in range(n):
                    xb[i] = xb[i] + sixth_t * (a1[i] + 2 * a2[i] + 2 * a3[i] + a4[i])
                if has_bounds:
                    clip_row(xb, lo, hi)
            status[STAGE] = -1
            f(x, k1, args)
            nfev += 1
        else:  # DOPRI5
            for s in range(1, 7):
                dst = xs if s < 6 else xn
                for b in range(B):
                    if not active[b]:
                        continue
                    hb = h[b]
                    db = dst[b]
                    xb = x[b]
                    # stage point x + h sum_p A[s, p] K_p as axpy passes (vectorised)
                    for i in range(n):
                        db[i] = xb[i]
                    for p in range(s):
                        if A[s, p] != 0.0:
                            tmp[0] = hb * A[s, p]
                            c = tmp[0]
                            kp = K[p, b]
                            for i in range(n):
                                db[i] += c * kp[i]
                    if has_bounds:
                        clip_row(db, lo, hi)
                status[STAGE] = s
                if k == 0:
                    fill_nan(K[s])
                f(dst, K[s], args)
                nfev += 1
                if status[ERROR] != 0:
                    break
            if status[ERROR] != 0:
                break
            # K[6] now holds f at the (projected) 5th-order solution xn
            for b in range(B):
                if not active[b]:
                    continue
                hb = h[b]
                xb = x[b]
                xnb = xn[b]
                # scaled local error |h e_i| / (step_atol + step_rtol max(|x_i|, |xn_i|))
                for i in range(n):
                    erow[i] = 0.0
                for p in range(7):
                    if E[p] != 0.0:
                        c64 = hb * E[p]
                        kp = K[p, b]
                        for i in range(n):
                            erow[i] += c64 * kp[i]
                for i in range(n):
                    sc = step_atol + step_rtol * max(abs(xb[i]), abs(xnb[i]))
                    erow[i] = erow[i] / sc
                err = absmax(erow)
                ok = err <= 1.0
                if ok:
                    fac = max_factor if err == 0.0 else safety * err**-0.2
                    fac = min(max_factor, max(min_factor, fac))
                    # Stability cap (stiffness estimate of Hairer & Wanner, Solving ODEs
                    # II, Sec. IV.2): the last two stages sit at the same time, so
                    # lam = |f(xn) - f(xs6)| / |xn - xs6| estimates the dominant eigenvalue
                    # along the step; keep h |lam| <= 3.0 inside Dopri5's stability region
                    # (about 3.3 on the negative real axis). Without it the error control
                    # lets the step hover at the stability limit and the residual stalls
                    # at a level set by step_atol instead of converging.
                    num = absmax_diff(K[6, b], K[5, b])[0]
                    den = absmax_diff(xnb, xs[b])[0]
                    hn = min(hb * fac, dt_max)
                    if num > 0 and den > 0:
                        hn = min(hn, stab * den / num)
                    t[b] += hb
                    k0 = K[0, b]
                    k6 = K[6, b]
                    for i in range(n):
                        xb[i] = xnb[i]
                    for i in range(n):
                        k0[i] = k6[i]
                    h[b] = hn
                else:
                    n_rej[b] += 1
                    fac = min_factor
                    if err == err:
                        fac = min(1.0, max(min_factor, safety * err**-0.2))
                    h[b] = hb * fac
        k += 1

    out = driver_output(
        res, rel, obs, obs_it, n_obs, k, n_iter, conv, failed, fail_iter, nfev, 0, x
    )
    return out + (n_rej,)  # noqa: RUF005 (tuple concatenation, typed by Numba)
