"""Benchmark of the solvers on the layered 784-500-10 map (a script, not a test).

The map of the state ``x = (h, o)`` (hidden 500 units, output 10) of a batch with the
input ``u`` clamped::

    h <- clip(u W1 + b1 + o W2^T, 0, 1)        (u W1 + b1 precomputed once per solve)
    o <- clip(h W2 + b2, 0, 1)

For every method: iterations (batched evaluations of the map) and wall time per solve,
against ``scipy.optimize.anderson`` and ``scipy.integrate.solve_ivp`` on the same
problem, and the ratio of the solver's time per map evaluation to the bare matrix
products that one evaluation needs (numpy ``@`` on contiguous arrays of the same dtype,
timed in the same run). Medians over repeats; the machine is shared, so compare ratios.

Run::

    NUMBA_CACHE_DIR=.numba_cache OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_solvers.py

Options: ``--dtype float32|float64``, ``--repeat R``, ``--batch B``, ``--no-scipy``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import subprocess
import time

import numba
import numpy as np
import scipy
import scipy.integrate
import scipy.optimize
from numba.extending import get_cython_function_address

from solvers import (
    RK4,
    Anderson,
    Dopri5,
    Euler,
    GaussSeidel,
    solve_fixed_point,
    solve_steady_state,
)

NIN, NH, NO = 784, 500, 10


def _blas_gemm(name, ctype):
    """SciPy's Fortran BLAS ``?gemm`` as a ctypes function that Numba can call."""
    ptr = ctypes.POINTER
    addr = get_cython_function_address("scipy.linalg.cython_blas", name)
    ci, cc = ctypes.c_int, ctypes.c_uint8
    functype = ctypes.CFUNCTYPE(
        None, ptr(cc), ptr(cc), ptr(ci), ptr(ci), ptr(ci), ptr(ctype), ptr(ctype), ptr(ci),
        ptr(ctype), ptr(ci), ptr(ctype), ptr(ctype), ptr(ci),
    )  # fmt: skip
    return functype(addr)


def make_maps(dtype):
    """The layered map for one dtype, with BLAS called on strided blocks of the state.

    ``np.dot`` inside Numba needs contiguous operands, but the hidden block ``x[:, :500]``
    of a (batch, 510) state is strided (row stride 510). BLAS itself takes a leading
    dimension, so calling ``?gemm`` directly multiplies the blocks in place and writes the
    products straight into ``out``: no copies, one elementwise pass for bias and clip.
    (Numba cannot cache functions that call ctypes pointers: these compile per process.)
    """
    gemm = _blas_gemm(*(("sgemm", ctypes.c_float) if dtype == np.float32 else
                        ("dgemm", ctypes.c_double)))  # fmt: skip

    @numba.njit
    def mm(a, lda, b, ldb, c, ldc, m, n, k, ibuf, fbuf, cbuf):
        """Row-major c[:m, :n] (ld ldc) = a[:m, :k] (ld lda) @ b[:k, :n] (ld ldb)."""
        # column-major view: c^T = b^T a^T
        ibuf[0] = n
        ibuf[1] = m
        ibuf[2] = k
        ibuf[3] = ldb
        ibuf[4] = lda
        ibuf[5] = ldc
        gemm(
            cbuf.ctypes, cbuf.ctypes, ibuf[0:].ctypes, ibuf[1:].ctypes, ibuf[2:].ctypes,
            fbuf[0:].ctypes, b.ctypes, ibuf[3:].ctypes, a.ctypes, ibuf[4:].ctypes,
            fbuf[1:].ctypes, c.ctypes, ibuf[5:].ctypes,
        )  # fmt: skip

    @numba.njit
    def hidden(x, out, args):
        P, _, W2T, _, ibuf, fbuf, cbuf = args
        B = x.shape[0]
        n = x.shape[1]
        mm(x[0, NH:], n, W2T, NH, out, n, B, NH, NO, ibuf, fbuf, cbuf)  # o W2^T
        for b in range(B):
            ob = out[b]
            pb = P[b]
            for i in range(NH):
                v = ob[i] + pb[i]
                v = 0 if v < 0 else v
                ob[i] = 1 if v > 1 else v

    @numba.njit
    def output(x, out, args):
        _, W2, _, b2, ibuf, fbuf, cbuf = args
        B = x.shape[0]
        n = x.shape[1]
        mm(x, n, W2, NO, out[0, NH:], n, B, NO, NH, ibuf, fbuf, cbuf)  # h W2
        for b in range(B):
            ob = out[b]
            for j in range(NO):
                v = ob[NH + j] + b2[j]
                v = 0 if v < 0 else v
                ob[NH + j] = 1 if v > 1 else v

    @numba.njit
    def layered(x, out, args):
        """out = g(x): both layers from the same x (Jacobi)."""
        hidden(x, out, args)
        output(x, out, args)

    @numba.njit
    def layered_block(x, out, args, start, stop):
        """Columns [start, stop) of g(x); blocks are whole layers (0-500 or 500-510)."""
        if start == 0:
            hidden(x, out, args)
        if stop == NH + NO:
            output(x, out, args)

    @numba.njit
    def layered_field(x, out, args):
        """dx/dt = g(x) - x."""
        layered(x, out, args)
        for b in range(x.shape[0]):
            for i in range(x.shape[1]):
                out[b, i] -= x[b, i]

    @numba.njit
    def time_map(x, out, args, reps):
        """Evaluate g reps times inside Numba (no Python call overhead)."""
        for _ in range(reps):
            layered(x, out, args)

    return layered, layered_block, layered_field, time_map


def problem(batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    W1 = (rng.standard_normal((NIN, NH)) / np.sqrt(NIN)).astype(dtype)
    b1 = (0.1 * rng.standard_normal(NH)).astype(dtype)
    # scale the coupling so that the map is a contraction (spectral norm ~0.9)
    W2 = rng.standard_normal((NH, NO))
    W2 *= 0.9 / np.linalg.norm(W2, 2)
    W2 = W2.astype(dtype)
    b2 = (0.1 * rng.standard_normal(NO)).astype(dtype)
    u = rng.random((batch, NIN)).astype(dtype)
    P = np.ascontiguousarray(u @ W1 + b1)
    W2T = np.ascontiguousarray(W2.T)
    # BLAS scalars: ints (m, n, k, lda, ldb, ldc), alpha = 1, beta = 0, trans = 'N'
    bufs = (np.zeros(6, np.int32), np.array([1, 0], dtype), np.array([ord("N")], np.uint8))
    return (P, W2, W2T, b2, *bufs)


def median_time(fn, repeat):
    ts = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-scipy", action="store_true")
    opt = ap.parse_args()
    dtype = np.dtype(opt.dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-9
    args = problem(opt.batch, dtype)
    layered, layered_block, layered_field, time_map = make_maps(dtype)
    P, W2, W2T, b2 = args[:4]
    B = opt.batch
    x0 = np.zeros((B, NH + NO), dtype)
    out = np.empty_like(x0)

    # bare matrix products of one map evaluation (numpy @, same dtype, contiguous)
    hc = np.ascontiguousarray(np.random.default_rng(1).random((B, NH)), dtype=dtype)
    oc = np.ascontiguousarray(np.random.default_rng(2).random((B, NO)), dtype=dtype)

    def bare():
        for _ in range(200):
            hc @ W2
            oc @ W2T

    def gonly():
        time_map(x0, out, args, 200)

    time_map(x0, out, args, 1)

    def t_bare_now():
        # median of short bursts, taken right before each solve (the load drifts)
        return median_time(bare, 5)[0] / 200

    ss_f = layered_field
    gs = GaussSeidel(groups=(((0, NH),), ((NH, NH + NO),)))
    cases = [
        ("Picard", lambda: solve_fixed_point(layered, x0, args, atol=tol, max_iter=5000)),
        (
            "Picard fixed_steps=50",
            lambda: solve_fixed_point(layered, x0, args, atol=tol, fixed_steps=50),
        ),
        (
            "Anderson(m=5)",
            lambda: solve_fixed_point(layered, x0, args, method=Anderson(m=5), atol=tol),
        ),
        (
            "GaussSeidel + g_block",
            lambda: solve_fixed_point(
                layered, x0, args, method=gs, g_block=layered_block, atol=tol, max_iter=5000
            ),
        ),
        (
            "Euler(dt=0.5)",
            lambda: solve_steady_state(ss_f, x0, args, method=Euler(dt=0.5), atol=tol),
        ),
        ("RK4(dt=0.5)", lambda: solve_steady_state(ss_f, x0, args, method=RK4(dt=0.5), atol=tol)),
        ("Dopri5", lambda: solve_steady_state(ss_f, x0, args, method=Dopri5(), atol=tol)),
    ]
    for _, fn in cases:
        fn()  # compile / load from cache
    # round-robin over the repeats so that every method sees the same load drift; the
    # ratio of each repeat uses the bare-product time measured just before it
    samples: dict[str, list] = {name: [] for name, _ in cases}
    bares, gs_t = [], []
    last = {}
    for _ in range(opt.repeat):
        bares.append(t_bare_now())
        gs_t.append(median_time(gonly, 3)[0] / 200)
        for name, fn in cases:
            tb = t_bare_now()
            t0 = time.perf_counter()
            res = fn()
            wall = time.perf_counter() - t0
            # products needed: 2 per full evaluation, 1 per block evaluation (each block
            # of this map needs one of the two products)
            n_products = 2 * res.nfev + res.nfev_block
            samples[name].append((wall, res.wall_time, res.wall_time / (n_products / 2 * tb)))
            last[name] = res
    t_bare = statistics.median(bares)
    t_g = statistics.median(gs_t)
    rows = []
    ref = last["Picard"].x.astype(np.float64)
    for name, _ in cases:
        res = last[name]
        iters = max(int(res.n_iter.max()), 1)
        wall = statistics.median(v[0] for v in samples[name])
        swall = statistics.median(v[1] for v in samples[name])
        ratio = statistics.median(v[2] for v in samples[name])
        best = min(v[2] for v in samples[name])
        err = np.abs(res.x - ref).max()
        rows.append(
            (name, iters, res.nfev + res.nfev_block, wall, swall / iters, ratio, best, err,
             res.success)
        )  # fmt: skip

    if not opt.no_scipy:
        Pd = P.astype(np.float64)
        W2d, W2Td, b2d = W2.astype(np.float64), W2T.astype(np.float64), b2.astype(np.float64)

        def g_np(xf):
            x = xf.reshape(B, NH + NO)
            h = np.clip(Pd + x[:, NH:] @ W2Td, 0, 1)
            o = np.clip(x[:, :NH] @ W2d + b2d, 0, 1)
            return np.concatenate([h, o], axis=1).ravel()

        counter = [0]

        def F(xf):
            counter[0] += 1
            return g_np(xf) - xf

        def run_anderson():
            counter[0] = 0
            return scipy.optimize.anderson(F, np.zeros(B * (NH + NO)), M=5, f_tol=tol)

        wall, xs = median_time(run_anderson, max(1, opt.repeat // 2))
        n_f = counter[0]
        rows.append(
            (
                "scipy.optimize.anderson (f64)",
                n_f,
                n_f,
                wall,
                wall / n_f,
                wall / (n_f * t_bare),
                float("nan"),
                np.abs(xs.reshape(B, -1) - ref).max(),
                True,
            )
        )

        def event(t, xf):
            return np.abs(F(xf)).max() - tol

        event.terminal = True

        def run_ivp():
            counter[0] = 0
            # step tolerances well below the steady-state tolerance: with looser ones
            # RK45 hovers at its stability limit and never meets the event
            return scipy.integrate.solve_ivp(
                lambda t, xf: F(xf),
                (0, 1e3),
                np.zeros(B * (NH + NO)),
                method="RK45",
                events=event,
                rtol=1e-6,
                atol=1e-9,
            )

        wall, sol = median_time(run_ivp, 1)
        n_f = counter[0]
        n_steps = len(sol.t) - 1
        rows.append(
            (
                "scipy solve_ivp RK45 (f64)",
                n_steps,
                n_f,
                wall,
                wall / n_steps,
                wall / (n_f * t_bare),
                float("nan"),
                np.abs(sol.y[:, -1].reshape(B, -1) - ref).max(),
                sol.status == 1,
            )
        )

    cpu = ""
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line for line in cpu.splitlines() if line.startswith("Model name"))
        cpu = cpu.split(":", 1)[1].strip()
    except Exception:
        cpu = platform.processor()
    print(
        f"# batch {B}, 784-500-10 layered map, {dtype}, tol {tol:g} (max norm), median of "
        f"{opt.repeat}; {cpu}, {os.cpu_count()} CPUs; numpy {np.__version__}, numba "
        f"{numba.__version__}, scipy {scipy.__version__}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(f"# bare matrix products per map evaluation (numpy @): {t_bare * 1e6:.1f} us")
    print(
        "# the map g alone (in Numba: 2 strided BLAS products into out, one bias/clip pass): "
        f"{t_g * 1e6:.1f} us = {t_g / t_bare:.2f}x bare"
    )
    print(
        "# iters: iterations (steps) of the slowest sample; evals: map evaluations (blocks "
        "included);\n# ratio: solve time / (bare products time x products the solve "
        "needed), i.e. per-iteration cost\n# over the bare matrix products of that iteration "
        "(median over repeats; best = minimum)"
    )
    hdr = (
        f"{'method':32s} {'iters':>6s} {'evals':>6s} {'ms/solve':>9s} {'us/iter':>8s} "
        f"{'ratio':>6s} {'best':>6s} {'max|x-x_P|':>11s} ok"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, it, nfev, wall, pi, ratio, best, err, ok in rows:
        print(
            f"{name:32s} {it:6d} {nfev:6d} {wall * 1e3:9.2f} {pi * 1e6:8.1f} "
            f"{ratio:6.2f} {best:6.2f} {err:11.2e} {'yes' if ok else 'NO'}"
        )


if __name__ == "__main__":
    main()
