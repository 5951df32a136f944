"""What one ``--fast`` minibatch of the deep presets costs, and its free phase's kernel.

Two tables. **Kernel**: the free phase, fused red-black kernel against the solvers'
driver.
``eqprop.phases.run_phase`` runs ``method="gauss-seidel-parity"`` (block Gauss-Seidel
over the layers of each parity, reusing the second group's block values) through
:func:`eqprop.kernels.fused_gauss_seidel_parity`; the reference is the same iteration
through ``solvers.solve_fixed_point(..., GaussSeidel(last_group_independent=True))``.
This script times both on the same phases, interleaved (A B A B ...), and checks on
every repeat that they return the same states and iteration counts (the test suite
checks every record, ``tests/test_fused_gauss_seidel.py``). Default network: the
``scellier2017-2h`` shape 784-500-500-10 float32, minibatch 20, MNIST-like binary inputs,
``eps = 1``, damping 1.5, ``atol = 1e-3`` (the preset's ``--fast`` setting), from
persistent-like states (a looser solve of the same inputs, perturbed), or from the
states of a training checkpoint (``--checkpoint``: its weights and persistent particles).

Run::

    NUMBA_CACHE_DIR=.numba_cache OPENBLAS_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/bench_red_black.py [--checkpoint runs/X/checkpoint.npz]

Prints one row per path: median milliseconds per phase, the slowest sample's sweeps,
milliseconds per sweep, and the ratio to the solvers' driver.

**Minibatch** (``--checkpoint`` only: a trained network and its particles): the parts
of one training step of random-sign EP at the preset's settings (``T`` from the
checkpoint's config, ``K``, ``eps = 0.5`` nudged phases), each timed on its own, median
milliseconds per minibatch: the input drive (``clamp``), the free phase of ``--fast``
and of the paper (``T`` fused steps), the nudged phase, the EP gradient (``combine``),
the optimizer step, and the whole ``Trainer``-style step for both free phases; beside
them the matrix-product floor: the two ``(batch, 500) x (500, 500)`` products that one
sweep or one synchronous step needs, timed inside Numba. The machine is shared:
compare ratios, not times.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time

import numpy as np

import solvers
from eqprop import kernels as K
from eqprop.network import Network, init_network
from eqprop.phases import Dynamics, clamp, run_phase


def solvers_phase(net, x, dyn, s0):
    """The reference: the same free phase through the solvers' generic driver."""
    cx = clamp(net, x)
    lay = net.layout(dyn.nudge)
    B = x.shape[0]
    args = (
        cx.theta,
        lay,
        cx.drive,
        np.zeros((B, net.n_out), dtype=net.dtype),
        np.array([0.0, dyn.eps], dtype=net.dtype),
        K.make_work(lay, B, net.dtype),
    )
    off = [int(o) for o in net.offsets]
    layers = [(off[i], off[i + 1]) for i in range(len(off) - 1)]
    method = solvers.GaussSeidel(
        groups=(tuple(layers[0::2]), tuple(layers[1::2])),
        damping=dyn.damping,
        last_group_independent=True,
    )
    return solvers.solve_fixed_point(
        K.fixed_point_map,
        s0,
        args,
        method=method,
        g_block=K.fixed_point_block,
        atol=dyn.atol,
        rtol=dyn.rtol,
        max_iter=dyn.max_iter,
        bounds=net.bounds,
    )


def problem(args):
    """``(net, batches)``: the network and a list of ``(x, s0)`` minibatches."""
    rng = np.random.default_rng(0)
    if args.checkpoint:
        from eqprop.train import Trainer

        tr = Trainer.from_checkpoint(args.checkpoint, quiet=True, overrides={"output": None})
        net = tr.net
        if tr.particles is None or not isinstance(net, Network):
            raise SystemExit("--checkpoint needs a dense run with persistent particles")
        batches = [
            (tr.x_train[i : i + args.batch], tr.particles[i : i + args.batch].copy())
            for i in range(0, args.batches * args.batch, args.batch)
        ]
        return net, batches
    sizes = tuple(int(v) for v in (args.sizes or "784-500-500-10").split("-"))
    net = init_network(sizes, dtype=args.dtype or "float32", seed=0)
    loose = Dynamics(method="gauss-seidel-parity", eps=1.0, damping=1.5, atol=1e-2, max_iter=500)
    batches = []
    for _ in range(args.batches):
        x = (rng.random((args.batch, sizes[0])) < 0.2).astype(net.dtype)
        s0 = run_phase(net, x, loose).state
        noise = rng.normal(0.0, 0.05, s0.shape).astype(net.dtype)
        batches.append((x, np.clip(s0 + noise, 0.0, 1.0)))
    return net, batches


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes", default=None, help="layer sizes, without --checkpoint (default: 784-500-500-10)"
    )
    p.add_argument(
        "--dtype", default=None, help="float32 or float64, without --checkpoint (default: float32)"
    )
    p.add_argument("--batch", type=int, default=20, help="minibatch size (default: %(default)s)")
    p.add_argument(
        "--batches", type=int, default=20, help="minibatches per repeat (default: %(default)s)"
    )
    p.add_argument("--repeat", type=int, default=15, help="timed repeats (default: %(default)s)")
    p.add_argument("--atol", type=float, default=1e-3, help="tolerance (default: %(default)s)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a dense training checkpoint: its weights and persistent particles "
        "(default: Glorot weights, persistent-like states)",
    )
    args = p.parse_args(argv)
    if args.checkpoint and (args.sizes or args.dtype):
        p.error("--sizes and --dtype are the checkpoint's own with --checkpoint")
    if args.batch < 1 or args.batches < 1 or args.repeat < 1 or not args.atol > 0:
        p.error("--batch, --batches and --repeat must be >= 1 and --atol > 0")
    net, batches = problem(args)
    dyn = Dynamics(method="gauss-seidel-parity", eps=1.0, damping=1.5, atol=args.atol, max_iter=500)
    dyn = dataclasses.replace(dyn, T=dyn.max_iter)

    def fused():
        return [run_phase(net, x, dyn, s0=s0) for x, s0 in batches]

    def driver():
        return [solvers_phase(net, x, dyn, s0) for x, s0 in batches]

    for a, b in zip(fused(), driver(), strict=True):  # warm-up (compilation) and check
        if not (np.array_equal(a.state, b.x) and np.array_equal(a.result.n_iter, b.n_iter)):
            raise SystemExit("the fused kernel and the solvers' driver disagree")
    times = {"fused red-black kernel": [], "solvers driver (reference)": []}
    sweeps = [int(r.result.n_iter.max()) for r in fused()]
    for _ in range(args.repeat):
        for name, fn in (("fused red-black kernel", fused), ("solvers driver (reference)", driver)):
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / len(batches))
    ref = statistics.median(times["solvers driver (reference)"])
    mean_sweeps = float(np.mean(sweeps))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")  # fmt: skip
    src = args.checkpoint or f"{net.sizes} {net.dtype} Glorot, persistent-like states"
    print(f"# {src}; batch {args.batch} x {len(batches)} minibatches, atol {args.atol:g}, "
          f"{args.repeat} interleaved repeats; slowest-sample sweeps per minibatch: "
          f"mean {mean_sweeps:.1f}")  # fmt: skip
    print(f"{'path':30s} {'ms/phase':>9s} {'ms/sweep':>9s} {'time/reference':>15s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:30s} {1e3 * med:9.3f} {1e3 * med / mean_sweeps:9.3f} {med / ref:15.3f}")
    if args.checkpoint:
        minibatch_table(args)


def _median_ms(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def _gemm_floor_ms(net, batch, repeat):
    """Two products of one sweep of a 2h-shaped net: a (batch, n2) x (n2, n1) and a
    (batch, n1) x (n1, n2), inside Numba (no Python dispatch)."""
    from numba import njit

    @njit
    def loop(a1, a2, w, t1, t2, n):  # pragma: no cover - compiled
        for _ in range(n):
            np.dot(a2, w.T, t1)
            np.dot(a1, w, t2)

    w = np.ascontiguousarray(net.weights[1])
    a1 = np.random.default_rng(0).random((batch, w.shape[0])).astype(w.dtype)
    a2 = np.random.default_rng(1).random((batch, w.shape[1])).astype(w.dtype)
    t1 = np.empty((batch, w.shape[0]), w.dtype)
    t2 = np.empty((batch, w.shape[1]), w.dtype)
    n = 200
    loop(a1, a2, w, t1, t2, 1)
    return _median_ms(lambda: loop(a1, a2, w, t1, t2, n), repeat) / n


def minibatch_table(args):
    """The parts of one training step at the checkpoint's settings (see the docstring)."""
    from eqprop.phases import free_phase, nudged_phase
    from eqprop.train import Trainer

    tr = Trainer.from_checkpoint(args.checkpoint, quiet=True, overrides={"output": None})
    net, rule, opt = tr.net, tr.rule, tr.optimizer
    nudged_dyn = tr.dyn
    fast = dataclasses.replace(
        nudged_dyn, method="gauss-seidel-parity", eps=1.0, damping=1.5, atol=args.atol,
        max_iter=nudged_dyn.T,
    )  # fmt: skip
    B = args.batch
    x, d, s0 = tr.x_train[:B], tr.d_train[:B], tr.particles[:B].copy()
    cx = clamp(net, x)
    free_fast = free_phase(net, cx, fast, s0=s0)
    beta = float(rule.beta)
    nudged = nudged_phase(net, cx, d, beta, nudged_dyn, s0=free_fast.state)
    phases = {"free": free_fast, "nudged+": nudged}
    grad = rule.combine(net, cx, d, phases)
    saved = [w.copy() for w in net.weights], [b.copy() for b in net.biases]

    def restore():
        for w, v in zip(net.weights, saved[0], strict=True):
            w[...] = v
        for b, v in zip(net.biases, saved[1], strict=True):
            b[...] = v

    def optimizer_step():
        opt.step(net, grad)
        restore()

    def whole(free_dyn):
        def step():
            rng = np.random.default_rng(0)
            st = rule.estimate(net, x, d, nudged_dyn, rng=rng, s0=s0, free_dyn=free_dyn)
            opt.step(net, st.gradient)
            restore()

        return step

    def fast_free():
        return free_phase(net, cx, fast, s0=s0)

    def paper_free():
        return free_phase(net, cx, nudged_dyn, s0=s0)

    def nudge():
        return nudged_phase(net, cx, d, beta, nudged_dyn, s0=free_fast.state)

    r = args.repeat * 5
    rows = [
        ("input drive (clamp)", _median_ms(lambda: clamp(net, x), r)),
        (f"free phase --fast (atol {args.atol:g})", _median_ms(fast_free, r)),
        (f"free phase paper (T = {nudged_dyn.T} steps)", _median_ms(paper_free, args.repeat)),
        (f"nudged phase (K = {nudged_dyn.K} steps)", _median_ms(nudge, r)),
        ("EP gradient (combine)", _median_ms(lambda: rule.combine(net, cx, d, phases), r)),
        ("optimizer step (+ restore)", _median_ms(optimizer_step, r)),
        ("whole step, --fast", _median_ms(whole(fast), r)),
        ("whole step, paper", _median_ms(whole(nudged_dyn), args.repeat)),
    ]
    floor = _gemm_floor_ms(net, B, r)
    sweeps = float(free_fast.result.n_iter.max())
    print(f"\n# minibatch of {B} from {args.checkpoint}: --fast free phase {sweeps:.0f} "
          f"sweeps here; matrix-product floor of one sweep or step: {floor:.3f} ms")  # fmt: skip
    print(f"{'part':40s} {'ms':>8s} {'floor units':>12s}")
    for name, ms in rows:
        print(f"{name:40s} {ms:8.3f} {ms / floor:12.1f}")
    fast_ms, paper_ms = rows[-2][1], rows[-1][1]
    print(f"paper / --fast whole step: {paper_ms / fast_ms:.2f}x")


if __name__ == "__main__":
    main()
