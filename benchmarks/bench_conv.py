"""Conv training-step throughput: free phase (T) + nudged phase (K) + EP gradient.

One training step of a convolutional graph network on the fast CPU path
(:mod:`eqprop.graph.conv_kernels`): the input's convolution cached for the batch,
``T`` free iterations from zero, ``K`` nudged iterations (``beta``, squared cost, nudge
outside, as Ernoult et al. 2019's code), the one-sided EP estimate from two parameter
gradients and an SGD update. Printed per network and dtype:

* samples/s of the step (best of ``--repeat``);
* ``bare``: the time of the matrix products the step needs (same shapes, same operand
  layouts, same dtype, same number of calls, ``np.matmul(out=)``, timed in the same run);
  ``step/bare`` is the overhead factor (1 = the step costs nothing beyond its
  products; the target is <= 1.5);
* ``GEMM %``: the step's product flops per second as a fraction of the machine's GEMM
  rate, measured in the same run on a square ``--gemm-n`` product;
* ``ref map``: one iteration of the NumPy reference map
  (:func:`eqprop.graph.reference.fixed_point_map`) against one of the fast map.

Networks: Ernoult et al. 2019's P-conv (1-32-64 channels, 5x5 kernels, no padding,
2x2 max-pool after each convolution, 10 outputs, hard sigmoid, prototypical) and a
Laborieux et al. 2021-style net sized for 28x28 inputs (3x3 kernels, padding 1, 2x2
max-pool after each layer, channels 32-64-128, a quarter of their 128-256-512; 28 -> 14
-> 7 -> 3).

Usage (from the repository root)::

    NUMBA_CACHE_DIR=.numba_cache python benchmarks/bench_conv.py [--threads 1]
        [--batch 20] [--T 200] [--K 10] [--repeat 3] [--dtypes float32,float64]
        [--root OTHER_CHECKOUT]

The step and its bare products are timed alternately (``--repeat`` times each, best
kept), so that both see the same load. ``--root`` imports eqprop from another checkout
(the old code under this harness: interleave old and new runs to compare them).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--T", type=int, default=200)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3, help="timed steps per setting (best kept)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--nets", default="pconv,laborieux28")
    p.add_argument("--gemm-n", type=int, default=1024)
    p.add_argument(
        "--root",
        default=None,
        help="import eqprop from this checkout instead (old code, same harness)",
    )
    return p.parse_args()


ARGS = _parse()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
ROOT = Path(ARGS.root).resolve() if ARGS.root else Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from eqprop.graph import conv_kernels as FK  # noqa: E402
from eqprop.graph import reference as R  # noqa: E402
from eqprop.graph.build import conv_chain  # noqa: E402

NETS = {
    "pconv": ("P-conv (Ernoult 2019)", dict(channels=[32, 64], kernels=5, paddings=0)),
    "laborieux28": (
        "Laborieux-style 28x28",
        dict(channels=[32, 64, 128], kernels=3, paddings=1),
    ),
}


def build(key: str, dtype: str):
    _, kw = NETS[key]
    return conv_chain(
        (1, 28, 28),
        kw["channels"],
        10,
        kernels=kw["kernels"],
        paddings=kw["paddings"],
        kind="prototypical",
        dtype=dtype,
        seed=0,
    )


def ep_step(fm: FK.FastMap, net, x, d, T, K, beta, lr):
    """One training step on the fast path; returns nothing (updates net in place)."""
    fm.set_input(x)
    s, _, _ = fm.relax(None, T, nudge="outside")
    free = s.copy()
    g0 = fm.parameter_gradient(free)
    s, _, _ = fm.relax(free, K, beta=beta, d=d, nudge="outside")
    g1 = fm.parameter_gradient(s)
    params = net.parameters()
    for k, p in params.items():
        p -= lr * (g1[k] - g0[k]) / beta


def product_list(fm: FK.FastMap, T: int, K: int):
    """(a, b, out, count) of every product one step makes (operand layouts as the ops')."""
    rng = np.random.default_rng(0)
    dt = fm.dtype
    N = T + K
    prods = []

    def mat(*shape):
        return rng.uniform(-1, 1, shape).astype(dt)

    def add(a, b, count):
        prods.append((a, b, np.empty((a.shape[0], b.shape[1]), dtype=dt), count))

    for c, op in fm.input_ops + [(c, op) for c, op, _ in fm.inner_ops]:
        inner = fm.net.layer(c.source).role != "input"
        B = fm.batch
        if isinstance(op, FK.ConvOp):
            Kc, M = getattr(op, "patch_shape", None) or op.cols.shape  # (old ops: cols)
            O = op.z.shape[1]
            W2 = mat(O, Kc)
            colsT, g = mat(Kc, M), mat(M, O)
            fwd = (N if inner else 1) + (2 if op.is_max else 0)
            add(colsT.T, W2.T, fwd)
            if inner:
                add(W2.T, g.T, N)
            add(g.T, colsT.T, 2)
        else:
            n, m = c.W.shape
            W = mat(n, m)
            add(mat(B, n), W, N if inner else 1)
            if inner:
                add(mat(B, m), W.T, N)
            add(mat(B, n).T, mat(B, m), 2)
    return prods


def time_products(prods) -> float:
    t0 = time.perf_counter()
    for a, b, out, count in prods:
        for _ in range(count):
            np.matmul(a, b, out=out)
    return time.perf_counter() - t0


def flops(prods) -> float:
    return float(sum(2 * a.shape[0] * a.shape[1] * b.shape[1] * c for a, b, _, c in prods))


def gemm_rate(n: int, dtype: str) -> float:
    a = np.random.default_rng(1).uniform(-1, 1, (n, n)).astype(dtype)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        np.matmul(a, a, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def main() -> None:
    B, T, K = ARGS.batch, ARGS.T, ARGS.K
    print(
        f"# bench_conv: batch {B}, T {T}, K {K}, threads {ARGS.threads}, best of "
        f"{ARGS.repeat}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, numpy {np.__version__}"
    )
    rows = []
    for dtype in ARGS.dtypes.split(","):
        peak = gemm_rate(ARGS.gemm_n, dtype)
        print(f"# GEMM rate {dtype} (n={ARGS.gemm_n}): {peak / 1e9:.1f} GFLOP/s")
        for key in ARGS.nets.split(","):
            net = build(key, dtype)
            rng = np.random.default_rng(2)
            x = rng.uniform(0, 1, (B, net.n_in))
            d = np.eye(10)[rng.integers(0, 10, B)]
            fm = FK.FastMap(net, B)
            ep_step(fm, net, x, d, 3, 2, 0.4, 1e-3)  # compile / warm up
            prods = product_list(fm, T, K)
            time_products(prods)
            step = bare = np.inf
            for _ in range(ARGS.repeat):  # interleaved: both see the same load
                t0 = time.perf_counter()
                ep_step(fm, net, x, d, T, K, 0.4, 1e-3)
                step = min(step, time.perf_counter() - t0)
                bare = min(bare, time_products(prods))
            fm.set_input(x)
            s = net.zero_state(B) + 0.5
            out = np.empty_like(s)
            fast_it = min(_timed(fm.map, s, out, nudge="outside") for _ in range(5))
            ref_it = min(_timed(R.fixed_point_map, net, x, s, nudge="outside") for _ in range(3))
            fl = flops(prods)
            rows.append(
                (
                    NETS[key][0],
                    dtype,
                    B / step,
                    step,
                    bare,
                    step / bare,
                    100 * fl / step / peak,
                    fast_it * 1e3,
                    ref_it * 1e3,
                )
            )
    head = (
        "network",
        "dtype",
        "samples/s",
        "step s",
        "bare s",
        "step/bare",
        "GEMM %",
        "map ms",
        "ref map ms",
    )
    print("| " + " | ".join(head) + " |")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.2f} | "
            f"{r[6]:.0f} | {r[7]:.2f} | {r[8]:.2f} |"
        )


def _timed(fn, *args, **kw) -> float:
    t0 = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
