#!/usr/bin/env python
"""Benchmark: a beta sweep run serially versus on a local Dask cluster of 2 workers.

The workload is the beta-sweep study (:func:`studies.beta.beta_sweep`) on a 784-500-10
Hopfield network: 8 betas x 3 estimators x 4 seeds (24 sweep points, each with the 4
seeds inside: a free phase, recurrent backprop and 4 EP estimates per point).

Both runs use single-threaded BLAS and numba (set below before numpy is imported, and in
the workers' environment), so the speed-up measures the parallelism of the sweep runner
over points. Numba's compilation is warmed up (in this process and in every worker)
before timing; the cluster start-up is timed separately. The two datasets are checked to
be identical (provenance attributes aside).

Usage::

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_studies.py
    .venv/bin/python benchmarks/bench_studies.py --quick    # 20-16-5 network, seconds
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, ROOT)

_ENV = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
os.environ.update(_ENV)
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(ROOT, ".numba_cache"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, wait  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402


def _spin(n: int = 6_000_000) -> float:
    """A CPU-bound pure-Python loop; returns its wall time."""
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t0


def _capacity(client, workers: int) -> float:
    """Parallel capacity the machine gives us right now: the time of ``workers`` spins
    one after the other in this process over the time of the same spins run at once in
    the ``workers`` worker processes (``workers`` on an idle machine with that many
    cores; about 1 when the cores are saturated by other jobs)."""
    t_one = sum(_spin() for _ in range(workers))
    ex = client.get_executor(pure=False)
    t0 = time.perf_counter()
    wait([ex.submit(_spin) for _ in range(workers)])
    return t_one / (time.perf_counter() - t0)


def _pool_cpu(pool) -> dict[int, float]:
    """CPU time (user + system) of each process of a ProcessPoolExecutor, by pid."""
    import psutil

    out = {}
    for pid in list(pool._processes):
        t = psutil.Process(pid).cpu_times()
        out[pid] = t.user + t.system
    return out


def _cpu() -> float:
    """CPU time of this process (user + system), in seconds."""
    return time.process_time()


def _warm(sizes: list[int], batch: int) -> int:
    """Compile/load numba kernels in this process (one tiny point)."""
    from studies.beta import BetaSetup, beta_point
    from studies.setup import BatchSetup, NetworkSetup

    setup = BetaSetup(network=NetworkSetup(sizes=sizes), batch=BatchSetup(size=batch), seeds=(0,))
    beta_point(0.01, "symmetric", setup)
    return os.getpid()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sizes", default="784-500-10")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--atol", type=float, default=1e-10)
    p.add_argument("--repeat", type=int, default=2, help="interleaved repetitions (min kept)")
    p.add_argument("--quick", action="store_true", help="20-16-5 network (smoke run)")
    args = p.parse_args()
    sizes = [int(v) for v in ("20-16-5" if args.quick else args.sizes).split("-")]

    from dask.distributed import Client, LocalCluster

    from studies.beta import BetaSetup, beta_sweep
    from studies.setup import BatchSetup, NetworkSetup, SolverSetup
    from studies.sweep import DASK_WORKER_CONFIG

    betas = list(np.logspace(-3, 0, 8))
    kw = dict(
        betas=betas,
        estimators=("one-sided", "random-sign", "symmetric"),
        setup=BetaSetup(
            network=NetworkSetup(sizes=sizes),
            batch=BatchSetup(size=args.batch),
            solver=SolverSetup(atol=args.atol),
            seeds=(0, 1, 2, 3),
        ),
        progress=False,
    )

    load_before = os.getloadavg()[0]
    _warm(sizes, args.batch)
    t0 = time.perf_counter()
    import dask

    with (
        dask.config.set(DASK_WORKER_CONFIG),
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=dict(_ENV),
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(args.workers)
        t_start = time.perf_counter() - t0
        client.run(_warm, sizes, args.batch)
        executor = client.get_executor(pure=False)
        pool = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
        wait([pool.submit(_warm, sizes, args.batch) for _ in range(args.workers)])
        t_serial, t_dask, capacity, t_pool = [], [], [], []
        cpu_serial, cpu_workers, cpu_main, cpu_pool = [], [], [], []
        # interleaved, so that both see the same background load on a shared machine
        for _ in range(args.repeat):
            capacity.append(_capacity(client, args.workers))
            t0, c0 = time.perf_counter(), _cpu()
            serial = beta_sweep(**kw)
            t_serial.append(time.perf_counter() - t0)
            cpu_serial.append(_cpu() - c0)
            w0 = client.run(_cpu)
            t0, c0 = time.perf_counter(), _cpu()
            distributed = beta_sweep(**kw, executor=executor)
            t_dask.append(time.perf_counter() - t0)
            cpu_main.append(_cpu() - c0)
            w1 = client.run(_cpu)
            cpu_workers.append([w1[k] - w0[k] for k in w0])
            xr.testing.assert_identical(
                serial.drop_attrs(deep=False), distributed.drop_attrs(deep=False)
            )
            p0 = _pool_cpu(pool)
            t0, c0 = time.perf_counter(), _cpu()
            pooled = beta_sweep(**kw, executor=pool)
            t_pool.append(time.perf_counter() - t0)
            p1 = _pool_cpu(pool)
            cpu_pool.append((max(p1[k] - p0.get(k, 0.0) for k in p1), _cpu() - c0))
            xr.testing.assert_identical(
                serial.drop_attrs(deep=False), pooled.drop_attrs(deep=False)
            )
        pool.shutdown()
    t_serial_min, t_dask_min = min(t_serial), min(t_dask)
    # CPU-time view, independent of other jobs' load: serial CPU time over (busiest
    # worker's CPU time + the client process's CPU time, counted as if it never overlapped)
    # = a conservative estimate of the wall speed-up on idle cores
    cpu_bound = [cs / (max(cw) + cm) for cs, cw, cm in zip(cpu_serial, cpu_workers, cpu_main)]
    n_points = serial.sizes["beta"] * serial.sizes["estimator"]
    result = {
        "benchmark": "beta sweep, serial vs local Dask",
        "sizes": sizes,
        "grid": "8 betas x 3 estimators x 4 seeds",
        "points": n_points,
        "batch": args.batch,
        "workers": args.workers,
        "serial_s": [round(t, 2) for t in t_serial],
        "dask_s": [round(t, 2) for t in t_dask],
        "cluster_start_s": round(t_start, 2),
        "speedup": round(t_serial_min / t_dask_min, 2),
        "speedup_with_start": round(t_serial_min / (t_dask_min + t_start), 2),
        "parallel_capacity": [round(c, 2) for c in capacity],
        "cpu_serial_s": [round(c, 2) for c in cpu_serial],
        "cpu_workers_s": [[round(c, 2) for c in cw] for cw in cpu_workers],
        "cpu_client_s": [round(c, 2) for c in cpu_main],
        "cpu_speedup": [round(c, 2) for c in cpu_bound],
        "process_pool_s": [round(t, 2) for t in t_pool],
        "process_pool_speedup": round(t_serial_min / min(t_pool), 2),
        "process_pool_cpu_speedup": [
            round(cs / (w + m), 2) for cs, (w, m) in zip(cpu_serial, cpu_pool)
        ],
        "cpu_count": os.cpu_count(),
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(
        f"{n_points} points ({result['grid']}) on {'-'.join(map(str, sizes))}, batch "
        f"{args.batch}: serial {t_serial_min:.1f} s, {args.workers} Dask workers "
        f"{t_dask_min:.1f} s (min of {args.repeat}) "
        f"(+{t_start:.1f} s cluster start): speed-up {result['speedup']:.2f}x "
        f"({result['speedup_with_start']:.2f}x with start-up); identical results; "
        f"parallel capacity of the machine meanwhile {result['parallel_capacity']} "
        f"(pure-Python control: {args.workers} processes at once vs one after the other); "
        f"CPU-time speed-up (serial CPU / (busiest worker + client CPU)) {result['cpu_speedup']}; "
        f"process pool of {args.workers}: {min(t_pool):.1f} s, speed-up "
        f"{result['process_pool_speedup']:.2f}x, CPU-time {result['process_pool_cpu_speedup']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
