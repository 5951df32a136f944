"""Compile time of the general graph path per network topology (a script, not a test).

The general path hands :func:`eqprop.graph.kernels.fixed_point_map` and its ``args`` to
:mod:`solvers`, whose driver is compiled once per ``args`` *type*. This script runs, in a
fresh process with an empty Numba cache, the free phase of three graph networks of
different topologies one after the other (float64, batch 8, 20 fixed steps) and prints,
per network, the CPU time (``time.process_time``: compilation is single-threaded, and
CPU time is less disturbed than wall time on a shared machine) of its first phase
(compilation included) and of a second phase (compiled), then repeats the whole sequence
in a second process on the now warm on-disk cache.

The three networks differ in the number of state layers and couplings (so with one
record per layer and coupling in ``args``, each is a new type):

* ``2 layers, 1 coupling``: chain 6-5-3 with a skip from the input;
* ``3 layers, 3 couplings``: chain 6-5-4-3 with the skip 1-3;
* ``4 layers, 6 couplings``: chain 6-5-4-4-3, free feedback, skips 1-3, 2-4, 1-4.

Run (``--tree DIR`` times another checkout, e.g. an older commit exported with
``git archive``; several ``--tree`` are run interleaved)::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/bench_graph_compile.py \\
        --tree . --tree /tmp/baseline

The machine is shared: compare the trees' times within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
import numpy as np
from eqprop.graph import chain
from eqprop.phases import Dynamics, clamp, free_phase

nets = [
    ("2 layers, 1 coupling", chain([6, 5, 3], activation="sigmoid", skip=[(0, 2)])),
    ("3 layers, 3 couplings", chain([6, 5, 4, 3], activation="sigmoid", skip=[(1, 3)])),
    ("4 layers, 6 couplings", chain([6, 5, 4, 4, 3], activation="sigmoid", feedback="free",
                                    skip=[(1, 3), (2, 4), (1, 4)])),
]
dyn = Dynamics(T=20)
x = np.random.default_rng(0).random((8, 6))
out = []
for name, net in nets:
    times = []
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        s = free_phase(net, clamp(net, x, path="general"), dyn).state
        times += [time.process_time() - c0, time.perf_counter() - t0]
    out.append((name, *times, float(np.abs(s).sum())))
print(json.dumps(out))
"""


def _run(tree: str, cache: str) -> list:
    tree = os.path.abspath(tree)
    env = dict(os.environ, PYTHONPATH=tree, NUMBA_CACHE_DIR=cache)
    res = subprocess.run(  # cwd: "-c" puts the working directory first on sys.path
        [sys.executable, "-c", _CHILD],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", help="checkout to time (default: this one)")
    a = p.parse_args()
    trees = a.tree or [os.path.join(os.path.dirname(__file__), os.pardir)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, tree in enumerate(trees):
            cache = os.path.join(tmp, f"cache{i}")
            rows[tree] = (_run(tree, cache), _run(tree, cache))  # cold cache, then warm
            print(f"done: {tree}", flush=True)
    print("CPU seconds (wall seconds) of the first and second free phase per network")
    head = f"{'tree':<24} {'network':<22} {'cold 1st':>15} {'2nd':>6} {'warm 1st':>14} {'2nd':>6}"
    print(head)
    for tree, (cold, warm) in rows.items():
        for c, w in zip(cold, warm, strict=True):
            assert c[-1] == w[-1]  # same result
            print(
                f"{tree[-24:]:<24} {c[0]:<22} {c[1]:6.2f} ({c[2]:6.2f}) {c[3]:6.3f} "
                f"{w[1]:5.2f} ({w[2]:5.2f}) {w[3]:6.3f}"
            )
        print(
            f"{tree[-24:]:<24} {'all three':<22} {sum(r[1] for r in cold):6.2f} "
            f"({sum(r[2] for r in cold):6.2f}) {'':>6} {sum(r[1] for r in warm):5.2f} "
            f"({sum(r[2] for r in warm):5.2f})"
        )
    print("checksums:", {t: [r[-1] for r in rows[t][0]] for t in rows})


if __name__ == "__main__":
    main()
