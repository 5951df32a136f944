"""Cost of exact reference gradients, memory of BPTT versus EP, and the GDU numbers.

Three measurements (all in one run, ratios against a baseline of the same run):

``rbp``
    Time of one exact gradient by recurrent backprop (dense and iterative adjoint, given
    the free fixed point) divided by the time of the free phase that produced the fixed
    point (same network, batch, dtype). Target: <= 1.5x.
``memory``
    Peak traced memory (``tracemalloc``, which sees numpy's buffers) of :func:`bptt` and of
    one EP estimate (``EquilibriumPropagation.estimate``, one-sided) versus ``T``, plus the
    bytes of the stored trajectory. BPTT grows linearly in ``T``; EP does not store the
    trajectory.
``gdu``
    The GDU measures of :func:`eqprop.gdu.gdu` for the paper's settings
    (:data:`eqprop.gdu.SETTINGS`) on MNIST inputs when available, synthetic otherwise.

Usage::

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_gradients.py \\
        [--parts rbp,memory,gdu] [--batch 20] [--repeats 5]

Prints tables; record them in docs/gradients.rst with the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def _best(fn, repeats):
    best = np.inf
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _inputs(n_in, n_out, batch, seed=0, dtype="float32"):
    x = None
    try:
        from eqprop.data import load_dataset

        if n_in == 784:
            root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
            data_dir = os.environ.get(
                "EQPROP_DATA_DIR", os.path.join(root, os.pardir, "shared", "data")
            )
            tr = load_dataset("mnist", data_dir=data_dir, download=False).train
            x = np.ascontiguousarray(tr.x[:batch], dtype=dtype)
            y = tr.labels[:batch]
            return x, np.eye(n_out, dtype=dtype)[y], "mnist"
    except Exception:  # no local MNIST: synthetic inputs of the right size
        pass
    rng = np.random.default_rng(seed)
    x = rng.random((batch, n_in)).astype(dtype)
    return x, np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, batch)], "synthetic"


def bench_rbp(batch, repeats):
    from eqprop import gradients as G
    from eqprop.network import init_network
    from eqprop.phases import Dynamics, clamp, free_phase

    print("\n== rbp: exact gradient by recurrent backprop / one free phase ==")
    print(
        f"{'network':>34} {'free phase':>22} {'free s':>9} {'method':>9} "
        f"{'rbp s':>9} {'ratio':>6} {'adj. it':>7}"
    )
    tol = dict(method="picard", atol=1e-6, max_iter=20000)
    cases = [
        (
            "784-500-10 hopfield hardsigmoid",
            (784, 500, 10),
            "hopfield",
            "hardsigmoid",
            Dynamics(eps=0.5, **tol),
            "picard to 1e-6",
        ),
        (
            "784-500-10 hopfield sigmoid",
            (784, 500, 10),
            "hopfield",
            "sigmoid",
            Dynamics(eps=0.5, **tol),
            "picard to 1e-6",
        ),
        (
            "784-512-10 prototypical hardsig.",
            (784, 512, 10),
            "prototypical",
            "hardsigmoid",
            Dynamics(**tol),
            "picard to 1e-6",
        ),
        (
            "784-500-500-10 hopfield hardsig.",
            (784, 500, 500, 10),
            "hopfield",
            "hardsigmoid",
            Dynamics(eps=0.5, **tol),
            "picard to 1e-6",
        ),
    ]
    rows = []
    for label, sizes, kind, act, dyn, dlabel in cases:
        net = init_network(sizes, kind, act, "squared", dtype="float64", seed=0)
        x, d, src = _inputs(sizes[0], sizes[-1], batch, dtype="float64")
        tf, ph = _best(lambda net=net, x=x, dyn=dyn: free_phase(net, x, dyn), repeats)
        n_free = int(np.max(ph.result.n_iter))
        dlabel = f"{dlabel} ({n_free} it)"
        cx = clamp(net, x)
        for method in ("iterative", "iterative+clamped", "dense"):
            if method == "dense" and net.n_state > 600:
                continue
            xin = cx if method.endswith("clamped") else x
            tr, g = _best(
                lambda net=net, xin=xin, d=d, ph=ph, method=method, dyn=dyn: G.recurrent_backprop(
                    net,
                    xin,
                    d,
                    s_star=ph.state,
                    eps=dyn.eps,
                    method=method.split("+")[0],
                    atol=1e-6,
                    check_fixed_point=None,
                ),
                repeats,
            )
            it = g.info.get("n_iter", "-")
            print(
                f"{label:>34} {dlabel:>22} {tf:9.4f} {method:>9} {tr:9.4f} {tr / tf:6.2f} {it!s:>7}"
            )
            rows.append((label, dlabel, tf, method, tr, tr / tf, src))
    return rows


def bench_memory(batch):
    from eqprop import gradients as G
    from eqprop.network import init_network
    from eqprop.phases import Dynamics
    from eqprop.rules import EquilibriumPropagation

    print(f"\n== memory: peak traced bytes, 784-500-10 hopfield, float32, batch {batch} ==")
    print(
        f"{'T':>5} {'BPTT peak MB':>13} {'trajectory MB':>14} {'EP peak MB':>11} "
        f"{'EP (fused) MB':>14}"
    )
    net = init_network(
        (784, 500, 10), "hopfield", "hardsigmoid", "squared", dtype="float32", seed=0
    )
    x, d, _ = _inputs(784, 10, batch)
    G.bptt(net, x, d, 2, eps=0.5)  # warm up (compilation, caches) outside the traces
    rows = []
    for T in (25, 50, 100, 200, 400, 800):
        tracemalloc.start()
        g = G.bptt(net, x, d, T, eps=0.5)
        _, peak_b = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peaks = []
        for method in ("fixed", "fused"):
            dyn = Dynamics(T=T, K=4, eps=0.5, method=method)
            rule = EquilibriumPropagation(beta=0.5)
            rule.estimate(net, x, d, dyn)  # warm up (compilation)
            tracemalloc.start()
            rule.estimate(net, x, d, dyn)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            peaks.append(peak)
        tb = g.info["trajectory_nbytes"]
        print(
            f"{T:5d} {peak_b / 1e6:13.2f} {tb / 1e6:14.2f} {peaks[0] / 1e6:11.2f} "
            f"{peaks[1] / 1e6:14.2f}"
        )
        rows.append((T, peak_b, tb, *peaks))
    return rows


def bench_gdu(batch):
    from eqprop.gdu import SETTINGS, gdu
    from eqprop.network import init_network

    print(f"\n== gdu: EP updates vs BPTT gradients, batch {batch}, float64 ==")
    cfgs = [
        ("prototypical (P, hardsigmoid, inside)", "prototypical", "hardsigmoid", "inside", None),
        (
            "prototypical (P, hardsigmoid, inside, T=1500)",
            "prototypical",
            "hardsigmoid",
            "inside",
            1500,
        ),
        (
            "prototypical (P, hardsigmoid, outside, T=1500)",
            "prototypical",
            "hardsigmoid",
            "outside",
            1500,
        ),
        ("prototypical (P, sigmoid, inside)", "prototypical", "sigmoid", "inside", None),
        ("energy-based (EB, hardsigmoid)", "energy-based", "hardsigmoid", "inside", None),
        ("energy-based (EB, hardsigmoid, T=8000)", "energy-based", "hardsigmoid", "inside", 8000),
        ("energy-based (EB, sigmoid)", "energy-based", "sigmoid", "inside", None),
        ("toy (EB, tanh)", "toy", "tanh", "inside", None),
    ]
    for label, key, act, nudge, T in cfgs:
        s = dict(SETTINGS[key])
        if T is not None:
            s["T"] = T
        net = init_network(s["sizes"], s["kind"], act, "squared", dtype="float64", seed=0)
        x, d, src = _inputs(s["sizes"][0], s["sizes"][-1], batch, dtype="float64")
        t0 = time.perf_counter()
        ds = gdu(net, x, d, beta=s["beta"], T=s["T"], K=s["K"], eps=s.get("eps", 0.5), nudge=nudge)
        el = time.perf_counter() - t0
        print(
            f"-- {label}: {s}, inputs {src}, free residual "
            f"{float(ds.free_residual):.2e}, active fraction "
            f"{np.round(ds.active_fraction.values, 3)}, {el:.1f} s"
        )
        for q in ("neurons", "weights"):
            for layer in ds.layer.values:
                c = ds.cosine.sel(quantity=q, layer=layer).values
                sg = ds.sign_agreement.sel(quantity=q, layer=layer).values
                rr = ds.rel_rmse.sel(quantity=q, layer=layer).values
                print(
                    f"   {q:>8} {layer}: cosine min/median {np.nanmin(c):.4f}/"
                    f"{np.nanmedian(c):.4f}  sign agreement min {np.nanmin(sg):.3f}  "
                    f"rel. RMSE max {np.nanmax(rr):.2e}"
                )
        print(
            "   final update vs truncated BPTT cosine:",
            np.round(ds.final_cosine_bptt.values, 5),
            " vs RBP:",
            np.round(ds.final_cosine_rbp.values, 5),
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="rbp,memory,gdu")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, python {platform.python_version()}, numpy {np.__version__}"
    )
    parts = a.parts.split(",")
    if "rbp" in parts:
        bench_rbp(a.batch, a.repeats)
    if "memory" in parts:
        bench_memory(a.batch)
    if "gdu" in parts:
        bench_gdu(a.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
