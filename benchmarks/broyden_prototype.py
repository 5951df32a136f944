"""Limited-memory "good" Broyden for ``x = P(g(x))``, per sample: a benchmark-only prototype (#16).

Issue #16 asked for a quasi-Newton method in :mod:`solvers`, kept only if it beats
Anderson on the deep networks. This module is that method, written like the library's
fixed-point methods (a Numba driver over a batch of independent samples, the same
safeguards as :class:`solvers.Anderson`, fall-back reporting, a
:class:`solvers.SolveResult`), so that ``benchmarks/bench_deep_phases.py --broyden`` and
``benchmarks/bench_solver_battery.py --broyden`` can measure it against the library's
methods on the same maps. It lost (docs/solvers.rst, "A quasi-Newton method: measured and
dropped"), so it stays out of :mod:`solvers`; it is not part of the package and has no
tests of its own beyond the battery run of the benchmark.

The method (Broyden 1965, "good" update, inverse form by Sherman-Morrison; limited memory
as in the deep-equilibrium solvers of Bai, Kolter and Koltun 2019). With the residual
``F(x) = P(g(x)) - x`` (max-norm ``r = max_i |F_i|``, the solvers' fixed-point residual)
and an approximation ``H_k`` of the inverse Jacobian of ``F``, each sample steps

``x_{k+1} = P(x_k - H_k F_k)``,  ``H_0 = -damping I``

(so that with no history the step is damped Picard, ``x + damping F``), and after each
step, with ``s = x_{k+1} - x_k`` and ``y = F_{k+1} - F_k``, updates

``H_{k+1} = H_k + (s - H_k y) (s^T H_k) / (s^T H_k y)``

stored as ``H_k = -damping I + sum_j u_j v_j^T`` with ``u = (s - H y) / (s^T H y)`` and
``v = H^T s``. Limited memory: with ``restart_full`` (default) the history is cleared
when it holds ``m`` pairs (restarted Broyden); without it the oldest pair is dropped,
which on a contractive linear test map (n = 30, spectral radius 0.95) needed 2-4 times
more iterations than the restart at m = 5 and 10, with progress-safeguard fall-backs.
A pair whose denominator is tiny, ``|s^T H y| <= denom_tol ||s|| ||H y||``, is not
added.

Safeguards (as in :class:`solvers.Anderson`, same parameter names and defaults): with
bounds (and ``active_set_restart``, default), the history is cleared when the set of
components of ``P(g(x))`` at a bound changes (the projected map is only piecewise
smooth); a plain damped step is taken when
the residual grew by more than ``growth`` since the previous iteration, and for the first
``delay`` iterations; the progress safeguard clears the history when the residual did not
decrease by ``progress`` within ``window`` iterations or exceeds ``regress`` times the best
seen, and after ``restarts`` such restarts switches the sample to damped Picard for good
(from the best stored state), counted in ``n_fallback`` / ``fallback_iter``.

Real states (float32/float64) only; the history and the step are computed in float64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit

import solvers
from solvers._bookkeeping import RUNNING, sample_verdict
from solvers._kernels import _TINY, absmax_diff, active_set_signature, clip_row, dot
from solvers._result import Status
from solvers._validate import check_bounds


@dataclass(frozen=True)
class Broyden:
    """Parameters of the prototype (see the module docstring); validated on creation."""

    m: int = 5
    damping: float = 1.0
    denom_tol: float = 1e-10
    growth: float = 1.0
    window: int = 20
    progress: float = 0.9
    regress: float = 100.0
    restarts: int = 3
    delay: int = 0
    restart_full: bool = True
    active_set_restart: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1:
            raise ValueError(f"Broyden m must be an int >= 1, got {self.m!r}")
        if not 0 < self.damping <= 1:
            raise ValueError(f"Broyden damping must be in (0, 1], got {self.damping!r}")
        if not 0 <= self.denom_tol < 1:
            raise ValueError(f"Broyden denom_tol must be in [0, 1), got {self.denom_tol!r}")
        if not self.growth >= 1:
            raise ValueError(f"Broyden growth must be >= 1 (or inf), got {self.growth!r}")
        if not 0 < self.progress <= 1 or not self.regress > 1:
            raise ValueError("Broyden needs progress in (0, 1] and regress > 1")
        for name, lowest in (("window", 1), ("restarts", 0), ("delay", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lowest:
                raise ValueError(f"Broyden {name} must be an int >= {lowest}, got {v!r}")

    def describe(self) -> str:
        return (
            f"Broyden(m={self.m}, damping={self.damping:g}, denom_tol={self.denom_tol:g}, "
            f"growth={self.growth:g}, window={self.window}, progress={self.progress:g}, "
            f"regress={self.regress:g}, restarts={self.restarts}, delay={self.delay}, "
            f"restart_full={self.restart_full}, active_set_restart={self.active_set_restart})"
        )


@njit(cache=True)
def _apply(U, V, c, damping, w, out, transpose):
    """``out = H w`` (or ``H^T w``) with ``H = -damping I + sum_{j<c} U_j V_j^T`` (float64)."""
    n = w.shape[0]
    for i in range(n):
        out[i] = -damping * w[i]
    for j in range(c):
        a = U[j] if not transpose else V[j]
        b = V[j] if not transpose else U[j]
        t = dot(b, w)
        for i in range(n):
            out[i] += t * a[i]


@njit(cache=True)
def _norm2(v):
    return np.sqrt(dot(v, v))


def _driver(g, x, args, lo, hi, has_bounds, atol, max_iter, params):
    (
        damping,
        m,
        denom_tol,
        growth,
        window,
        progress,
        regress,
        restarts,
        delay,
        restart_full,
        active_restart,
    ) = params
    B, n = x.shape
    gx = np.empty_like(x)
    res = np.full((max_iter + 1, B), np.nan)
    n_iter = np.full(B, -1, dtype=np.int64)
    conv = np.zeros(B, dtype=np.bool_)
    failed = np.zeros(B, dtype=np.bool_)
    fail_iter = np.full(B, -1, dtype=np.int64)
    active = np.ones(B, dtype=np.bool_)
    U = np.zeros((B, m, n))
    V = np.zeros((B, m, n))
    cnt = np.zeros(B, dtype=np.int64)
    head = np.zeros(B, dtype=np.int64)
    xprev = np.zeros((B, n))
    fprev = np.zeros((B, n))
    has_prev = np.zeros(B, dtype=np.bool_)
    rprev = np.full(B, np.inf)
    sig_prev = np.full(B, -1, dtype=np.int64)
    rbest = np.full(B, np.inf)
    rref = np.full(B, np.inf)
    kref = np.zeros(B, dtype=np.int64)
    rsaved = np.full(B, np.inf)
    xsaved = np.zeros((B, n), dtype=x.dtype)
    fallen = np.zeros(B, dtype=np.bool_)
    n_fallback = np.zeros(B, dtype=np.int64)
    fallback_iter = np.full(B, -1, dtype=np.int64)
    f = np.empty(n)
    s = np.empty(n)
    y = np.empty(n)
    hy = np.empty(n)
    hts = np.empty(n)
    dx = np.empty(n)
    nfev = 0
    k = 0
    while True:
        g(x, gx, args)
        nfev += 1
        n_active = 0
        for b in range(B):
            if not active[b]:
                continue
            if has_bounds:
                clip_row(gx[b], lo, hi)
            r, xm = absmax_diff(gx[b], x[b])
            res[k, b] = r
            v = sample_verdict(r, xm, k, atol, 0.0, max_iter, -1, 1e8)
            if v == RUNNING:
                n_active += 1
            else:
                active[b] = False
                n_iter[b] = k
                if v == 3:  # FAILED
                    failed[b] = True
                    fail_iter[b] = k
                else:
                    conv[b] = v == 1
        if n_active == 0:
            break
        for b in range(B):
            if not active[b]:
                continue
            r = res[k, b]
            xb = x[b]
            gb = gx[b]
            for i in range(n):
                f[i] = np.float64(gb[i]) - np.float64(xb[i])
            # progress safeguard (as in the library's Anderson driver)
            if r < rbest[b]:
                rbest[b] = r
            if r <= 0.5 * rsaved[b]:
                rsaved[b] = r
                for i in range(n):
                    xsaved[b, i] = xb[i]
            if not fallen[b]:
                if r <= progress * rref[b]:
                    rref[b] = r
                    kref[b] = k
                elif k - kref[b] >= window or r > regress * rbest[b]:
                    n_fallback[b] += 1
                    rref[b] = rbest[b]
                    kref[b] = k
                    cnt[b] = 0
                    head[b] = 0
                    has_prev[b] = False
                    if n_fallback[b] > restarts:
                        fallen[b] = True
                        fallback_iter[b] = k
                        if r > rsaved[b]:
                            for i in range(n):
                                xb[i] = xsaved[b, i]
                            continue
            if fallen[b]:
                for i in range(n):
                    xb[i] = xb[i] + damping * (gb[i] - xb[i])
                continue
            changed = False
            if has_bounds and active_restart:
                sig = active_set_signature(gb, lo, hi)
                changed = sig != sig_prev[b]
                sig_prev[b] = sig
            if changed:
                cnt[b] = 0
                head[b] = 0
            elif has_prev[b]:
                for i in range(n):
                    s[i] = np.float64(xb[i]) - xprev[b, i]
                    y[i] = f[i] - fprev[b, i]
                c = cnt[b]
                if restart_full and c == m:
                    c = 0
                    cnt[b] = 0
                    head[b] = 0
                _apply(U[b], V[b], c, damping, y, hy, False)
                den = dot(s, hy)
                if abs(den) > denom_tol * _norm2(s) * _norm2(hy) and den != 0.0:
                    _apply(U[b], V[b], c, damping, s, hts, True)
                    slot = head[b]
                    Us = U[b, slot]
                    Vs = V[b, slot]
                    for i in range(n):
                        Us[i] = (s[i] - hy[i]) / den
                        Vs[i] = hts[i]
                    cnt[b] = min(c + 1, m)
                    head[b] = (slot + 1) % m
            for i in range(n):
                xprev[b, i] = xb[i]
                fprev[b, i] = f[i]
            has_prev[b] = True
            plain = cnt[b] == 0 or r > growth * rprev[b] or k < delay
            rprev[b] = r
            if plain:
                for i in range(n):
                    dx[i] = damping * f[i]
            else:
                _apply(U[b], V[b], cnt[b], damping, f, dx, False)
                for i in range(n):
                    dx[i] = -dx[i]
            for i in range(n):
                xb[i] = xb[i] + dx[i]
            if has_bounds:
                clip_row(xb, lo, hi)
        k += 1
    return x, res[: k + 1].copy(), n_iter, conv, failed, fail_iter, n_fallback, fallback_iter, nfev


_drivers: dict = {}


def solve_broyden(g, x0, args, method: Broyden, *, atol: float, max_iter: int, bounds=None):
    """Solve ``x = P(g(x))`` with :class:`Broyden`; returns a :class:`solvers.SolveResult`.

    ``g(x, out, args)`` is a Numba function as for :func:`solvers.solve_fixed_point`;
    ``x0`` (batch, n) float32/float64 is copied and projected; no ``rtol``, no
    ``fixed_steps``, divergence bound 1e8 (the library's defaults).
    """
    if not isinstance(method, Broyden):
        raise ValueError(f"method must be a Broyden(...), got {method!r}")
    x = np.array(x0, order="C", copy=True)
    if x.dtype.kind != "f" or x.ndim != 2:
        raise ValueError(f"x0 must be a real 2-D array (batch, n), got {x.dtype} {x.shape}")
    lo, hi, has_bounds = check_bounds(bounds, x.shape[1], x.dtype)
    if has_bounds:
        np.clip(x, lo, hi, out=x)
    drv = _drivers.get(g)
    if drv is None:
        drv = _drivers[g] = njit(cache=False)(_driver)
    p = method
    params = (
        float(p.damping),
        p.m,
        float(p.denom_tol),
        float(p.growth),
        p.window,
        float(p.progress),
        float(p.regress),
        p.restarts,
        p.delay,
        bool(p.restart_full),
        bool(p.active_set_restart),
    )
    t0 = time.perf_counter()
    xs, res, n_iter, conv, failed, fail_iter, n_fb, fb_it, nfev = drv(
        g, x, args, lo, hi, has_bounds, float(atol), int(max_iter), params
    )
    wall = time.perf_counter() - t0
    if failed.any():
        status = Status.FAILED
    elif conv.all():
        status = Status.CONVERGED
    else:
        status = Status.MAX_ITER
    rel = res / np.maximum(np.abs(xs).max(axis=1), _TINY)[None, :]
    return solvers.SolveResult(
        x=xs,
        converged=conv,
        n_iter=n_iter,
        failed=failed,
        failure_iter=fail_iter,
        status=status,
        message=f"{int(conv.sum())}/{len(conv)} converged; fell back: {np.flatnonzero(fb_it >= 0)}",
        residual=res,
        residual_rel=rel,
        observed=None,
        observed_iter=np.zeros(0, dtype=np.int64),
        nfev=int(nfev),
        wall_time=wall,
        method=p.describe(),
        n_fallback=n_fb,
        fallback_iter=fb_it,
    )


def free_phase_broyden(net, x, method: Broyden, *, eps: float, atol: float, max_iter: int, s0=None):
    """The free phase of a layered ``eqprop`` network solved by :func:`solve_broyden`.

    The same map and arguments as :func:`eqprop.phases.free_phase` builds for the
    library's fixed-point methods (``kernels.fixed_point_map`` at step ``eps``, beta 0,
    the nudge inside), from zero or from ``s0``.
    """
    from eqprop import kernels as K
    from eqprop.phases import clamp

    cx = clamp(net, x)
    B = cx.batch
    s = net.zero_state(B) if s0 is None else np.array(s0, dtype=net.dtype, order="C")
    lay = net.layout("inside")
    target = np.zeros((B, net.n_out), dtype=net.dtype)
    sc = np.array([0.0, eps], dtype=net.dtype)
    work = K.make_work(lay, B, net.dtype)
    args = (cx.theta, lay, cx.drive, target, sc, work)
    return solve_broyden(
        K.fixed_point_map, s, args, method, atol=atol, max_iter=max_iter, bounds=net.bounds
    )
