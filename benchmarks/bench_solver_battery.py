"""Anderson, Broyden and Gauss-Seidel against Picard on a large battery of network free phases.

The battery of ``tests/solver_battery.py`` (depths 1-3, hopfield and prototypical,
hard-sigmoid and sigmoid units, gains 0.5-3, seeded), larger than the test's 200
problems: per method, the samples where Picard converged, how many of them the method
converged on, how many in no more iterations than Picard, the fallbacks of Anderson's
progress safeguard, and the summed iterations; then a breakdown by kind and activation.

Run::

    PYTHONPATH=. NUMBA_CACHE_DIR=.numba_cache OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/bench_solver_battery.py --problems 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from solver_battery import problem, run, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--atol", type=float, default=1e-6)
    ap.add_argument("--max-iter", type=int, default=1000)
    opt = ap.parse_args()
    t0 = time.perf_counter()
    results = [
        run(i, batch=opt.batch, atol=opt.atol, max_iter=opt.max_iter) for i in range(opt.problems)
    ]
    wall = time.perf_counter() - t0
    s = summary(results)
    print(
        f"# {opt.problems} problems x {opt.batch} samples, atol {opt.atol:g}, max_iter "
        f"{opt.max_iter}; {wall:.1f} s"
    )
    print(f"{'method':14s} {'ref':>6s} {'conv':>6s} {'<=P':>6s} {'<=P %':>6s} {'fell back':>9s} "
          f"{'iters':>8s}")  # fmt: skip
    n_p = sum(int(r["picard"].n_iter.sum()) for r in results)
    print(f"{'picard':14s} {'':>6s} {'':>6s} {'':>6s} {'':>6s} {'':>9s} {n_p:8d}")
    for name, v in s.items():
        fb = sum(int(r[name].fell_back.sum()) for r in results)
        its = sum(int(r[name].n_iter.sum()) for r in results)
        pct = 100 * v["not_slower"] / max(v["reference"], 1)
        print(
            f"{name:14s} {v['reference']:6d} {v['converged']:6d} {v['not_slower']:6d} "
            f"{pct:6.1f} {fb:9d} {its:8d}"
        )
    print("\n# samples slower than Picard, by (kind, activation)")
    for name, v in s.items():
        by: dict[tuple, int] = defaultdict(int)
        for i, _, _, _ in v["losers"]:
            p = problem(i)
            by[(p.kind, p.activation)] += 1
        print(name, dict(by))


if __name__ == "__main__":
    main()
