"""Cost per iteration of the general graph map against today's chain paths.

784-500-10 hopfield hard-sigmoid chain (the ``scellier2017-1h`` shape), batch 20, float32
by default: seconds per dynamics iteration of

- ``chain map``: ``eqprop.kernels.fixed_point_map`` called in a bare loop;
- ``graph map``: ``eqprop.graph.kernels.fixed_point_map`` (same network, converted with
  ``eqprop.graph.from_network``) in a bare loop;
- ``fused``: today's fused path (``Dynamics(method="fused")``, one Numba loop);
- ``fixed``: today's ``solvers`` path (``Dynamics(method="fixed")``, Picard fixed steps);
- ``graph fixed``: ``eqprop.graph.kernels.solve_phase(..., fixed_steps=T)`` (Picard).

Usage (needs a quiet machine for stable numbers)::

    NUMBA_CACHE_DIR=.numba_cache OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/bench_graph_map.py [--dtype float32] [--steps 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import eqprop as E
from eqprop import kernels as K
from eqprop.graph import from_network
from eqprop.graph import kernels as GK


def _best(fn, repeats: int) -> float:
    fn()  # compile / warm up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--steps", type=int, default=200, help="iterations per timing (default 200)")
    ap.add_argument("--repeats", type=int, default=7, help="timings, best kept (default 7)")
    ap.add_argument("--batch", type=int, default=20)
    opt = ap.parse_args()
    net = E.init_network((784, 500, 10), dtype=opt.dtype, seed=0)
    g = from_network(net)
    rng = np.random.default_rng(0)
    x = rng.random((opt.batch, 784)).astype(opt.dtype)
    n = opt.steps
    dyn_fused = E.Dynamics(T=n, eps=0.5, method="fused")
    dyn_fixed = E.Dynamics(T=n, eps=0.5, method="fixed")
    cx = E.clamp(net, x)
    lay = net.layout()
    args = (
        cx.theta,
        lay,
        cx.drive,
        np.zeros((opt.batch, 10), opt.dtype),
        np.array([0.0, 0.5], opt.dtype),
        K.make_work(lay, opt.batch, net.dtype),
    )
    gargs = GK.make_args(g, x, eps=0.5)
    s = net.zero_state(opt.batch)
    out = np.empty_like(s)

    def chain_map():
        for _ in range(n):
            K.fixed_point_map(s, out, args)

    def graph_map():
        for _ in range(n):
            GK.fixed_point_map(s, out, gargs)

    rows = {
        "chain map": _best(chain_map, opt.repeats),
        "graph map": _best(graph_map, opt.repeats),
        "fused": _best(lambda: E.free_phase(net, cx, dyn_fused), opt.repeats),
        "fixed": _best(lambda: E.free_phase(net, cx, dyn_fixed), opt.repeats),
        "graph fixed": _best(lambda: GK.solve_phase(g, x, eps=0.5, fixed_steps=n), opt.repeats),
    }
    print(f"784-500-10 hopfield hardsigmoid, batch {opt.batch}, {opt.dtype}, {n} iterations")
    for k, t in rows.items():
        print(f"{k:12s} {1e6 * t / n:8.2f} us/iter   x{t / rows['fused']:.2f} of fused")
    print(f"graph map / chain map: {rows['graph map'] / rows['chain map']:.2f}")


if __name__ == "__main__":
    main()
