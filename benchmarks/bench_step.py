"""Training-step throughput: free phase (T) + nudged phase (K) + weight gradient.

Prints samples/s per setting and path, and the fraction of bare NumPy matmul
throughput reached: the time of the matrix products one step needs (same shapes, same
dtype, same number of calls, timed in the same run) divided by the step's time. A
fraction of 1 would mean the step costs nothing beyond its products.

Usage (from the repository root)::

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_step.py [--threads 1]
        [--batch 20] [--repeat 5] [--seconds 2]

``--threads`` sets OPENBLAS_NUM_THREADS/OMP_NUM_THREADS before NumPy loads (default 1:
the small per-iteration products are slower with threads on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from pathlib import Path


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5, help="timed blocks per setting (best kept)")
    p.add_argument("--seconds", type=float, default=1.0, help="approximate length of one block")
    p.add_argument("--paths", default="fused,fixed", help="comma list of Dynamics methods")
    return p.parse_args()


ARGS = _parse()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import eqprop as E  # noqa: E402

SETTINGS = [
    # name, sizes, kind, activation, T, K, eps, beta, estimator, nudge
    (
        "Ernoult P-1h",
        (784, 512, 10),
        "prototypical",
        "hardsigmoid",
        40,
        15,
        0.5,
        0.5,
        "one-sided",
        "outside",
    ),
    (
        "Scellier 1h",
        (784, 500, 10),
        "hopfield",
        "hardsigmoid",
        20,
        4,
        0.5,
        1.0,
        "random-sign",
        "inside",
    ),
]


def _best_rate(fn, batch, seconds, repeat):
    """Best wall time per call over ``repeat`` blocks, its rate, and the best CPU time
    (``time.process_time``: on a shared machine the CPU time is the cost of the work
    itself, the wall time adds waiting for a core)."""
    fn()  # warm-up (compilation)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > 0.2 * seconds:
            break
        n *= 2
    n = max(1, int(n * seconds / dt))
    best = best_cpu = np.inf
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
        best_cpu = min(best_cpu, (time.process_time() - c0) / n)
    return best, batch / best, best_cpu


def _bare_matmuls(sizes, T, K, batch, dtype, rng):
    """The products of one step with NumPy: x W1 once, two per iteration per weight layer
    above the first (forward and feedback), the gradient products (x^T dA1 and one stacked
    product per deeper layer)."""
    x = rng.random((batch, sizes[0])).astype(dtype)
    Ws = [rng.random((a, b)).astype(dtype) for a, b in itertools.pairwise(sizes)]
    acts = [rng.random((batch, n)).astype(dtype) for n in sizes[1:]]
    stacked = [rng.random((2 * batch, n)).astype(dtype) for n in sizes[1:]]
    outs = [np.empty((batch, n), dtype) for n in sizes[1:]]
    gW = [np.empty_like(W) for W in Ws]

    def step():
        np.dot(x, Ws[0], out=outs[0])
        for _ in range(T + K):
            for l in range(1, len(Ws)):
                np.dot(acts[l - 1], Ws[l], out=outs[l])
                np.dot(acts[l], Ws[l].T, out=outs[l - 1])
        np.dot(x.T, acts[0], out=gW[0])
        for l in range(1, len(Ws)):
            np.dot(stacked[l - 1].T, stacked[l], out=gW[l])

    return step


def main() -> None:
    print(
        f"# bench_step: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"OPENBLAS_NUM_THREADS={ARGS.threads}, batch {ARGS.batch}, float32"
    )
    print(f"# load average before: {os.getloadavg()}")
    rng = np.random.default_rng(0)
    B = ARGS.batch
    header = (
        f"{'setting':<14} {'path':<6} {'samples/s':>10} {'ms/step':>8} {'bare mm ms':>10} "
        f"{'fraction':>8} | {'samples/cpu-s':>13} {'cpu ms':>7} {'bare cpu':>8} {'fraction':>8}"
    )
    print(header)
    for name, sizes, kind, act, T, K, eps, beta, est, nudge in SETTINGS:
        net = E.init_network(sizes, kind=kind, activation=act, dtype="float32", seed=0)
        x = rng.random((B, sizes[0])).astype(np.float32)
        d = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], B)]
        rule = E.EquilibriumPropagation(beta, est)
        bare, _, bare_cpu = _best_rate(
            _bare_matmuls(sizes, T, K, B, np.float32, rng), B, ARGS.seconds, ARGS.repeat
        )
        for path in ARGS.paths.split(","):
            dyn = E.Dynamics(T=T, K=K, eps=eps, method=path, nudge=nudge)
            g = np.random.default_rng(1)
            t, rate, cpu = _best_rate(
                lambda: rule.estimate(net, x, d, dyn, rng=g),  # noqa: B023
                B,
                ARGS.seconds,
                ARGS.repeat,
            )
            print(
                f"{name:<14} {path:<6} {rate:>10.0f} {1e3 * t:>8.3f} {1e3 * bare:>10.3f} "
                f"{bare / t:>8.2f} | {B / cpu:>13.0f} {1e3 * cpu:>7.3f} {1e3 * bare_cpu:>8.3f} "
                f"{bare_cpu / cpu:>8.2f}"
            )
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
