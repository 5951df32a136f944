"""Train a convolutional graph network by EP on the fast CPU path (a minimal loop).

Not the library's Trainer (which runs graph networks through ``eqprop.graph.kernels``,
dense couplings only): a plain loop over :class:`eqprop.graph.conv_kernels.FastMap`
written for the conv reproductions of issue #14 and their timing. Per batch: the input's
convolution cached; a free phase (``--T`` map iterations from zero, or fewer when
``--atol`` stops it); one nudged phase of ``--K`` iterations at ``+beta`` (one-sided EP)
or two at ``+beta`` and ``-beta`` from the free state (centered EP); the estimate
:math:`(\\partial_\\theta F(s_+) - \\partial_\\theta F(s_\\cdot))/\\beta` or
:math:`(\\partial_\\theta F(s_+) - \\partial_\\theta F(s_-))/(2\\beta)`; plain SGD with one
rate per coupling (a layer's bias takes the rate of its incoming coupling).

Writes one CSV row per epoch (train error over the epoch's batches at their free
states, test error, seconds, mean free iterations) to ``--out`` and prints them; with
``--probe N`` it first measures, on N batches of the untrained network, the free
iterations needed to reach each of several tolerances against ``--T`` fixed steps.

Ernoult et al. 2019's P-conv (their Table 1 command: ``--C_tab 64 32 1 --size_tab 10
--lr_tab 0.015 0.035 0.15 --epochs 40 --T 200 --Kmax 10 --beta 0.4``, hard sigmoid)::

    python benchmarks/train_conv_ep.py --net pconv --train 4000 --epochs 3

Fashion-MNIST, a small convolutional Hopfield network, centered EP::

    python benchmarks/train_conv_ep.py --dataset fashion-mnist --net hop --kind hopfield \\
        --estimator centered --T 60 --K 20 --beta 0.5 --eps 0.5 --lrs 0.1 0.05 0.02
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from eqprop.data import load_dataset  # noqa: E402
from eqprop.graph import conv_kernels as FK  # noqa: E402
from eqprop.graph.build import conv_chain  # noqa: E402

NETS = {
    # Ernoult et al. 2019 P-conv: 1-32-64, 5x5, no padding, 2x2 max-pool, 10 outputs
    "pconv": dict(channels=[32, 64], kernels=5, paddings=0, pool="max"),
    # a small conv Hopfield net: 1-16-32, 3x3, padding 1, 2x2 max-pool (28 -> 14 -> 7)
    "hop": dict(channels=[16, 32], kernels=3, paddings=1, pool="max"),
}


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--net", choices=list(NETS), default="pconv")
    p.add_argument("--kind", choices=["prototypical", "hopfield"], default="prototypical")
    p.add_argument("--activation", default="hardsigmoid")
    p.add_argument("--estimator", choices=["one-sided", "centered"], default="one-sided")
    p.add_argument("--nudge", default="outside", help="prototypical nudge: outside | inside")
    p.add_argument("--train", type=int, default=4000, help="first N training images")
    p.add_argument("--test", type=int, default=2000, help="first N test images")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--T", type=int, default=200)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--beta", type=float, default=0.4)
    p.add_argument("--eps", type=float, default=0.5, help="hopfield Euler step")
    p.add_argument("--atol", type=float, default=None, help="stop the free phase at max|g(s)-s|")
    p.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        default=[0.15, 0.035, 0.015],
        help="one rate per coupling, input side first",
    )
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe", type=int, default=0)
    p.add_argument("--out", default=None)
    return p.parse_args()


def free_phase(fm, a):
    s, it, _ = fm.relax(None, a.T, atol=a.atol, **phase_kw(a))
    return s.copy(), it


def phase_kw(a):
    if a.kind == "hopfield":
        return dict(eps=a.eps, nudge="inside")
    return dict(nudge=a.nudge)


def predict(fm, net, s):
    lo, hi = net.offsets[net.output_layer.name]
    return np.argmax(s[:, lo:hi], axis=1)


def probe(fm, net, split, a, tols=(1e-2, 1e-3, 1e-4, 1e-5)):
    """Free iterations to reach each tolerance, and the change they leave vs T steps."""
    B = a.batch
    counts = {t: [] for t in tols}
    gaps = {t: [] for t in tols}
    agree = {t: [] for t in tols}
    for k in range(a.probe):
        fm.set_input(split.x[k * B : (k + 1) * B])
        ref, _, _ = fm.relax(None, a.T, **phase_kw(a))
        ref = ref.copy()
        for t in tols:
            s, it, _ = fm.relax(None, a.T, atol=t, **phase_kw(a))
            counts[t].append(it)
            gaps[t].append(float(np.max(np.abs(s - ref))))
            agree[t].append(float(np.mean(predict(fm, net, s) == predict(fm, net, ref))))
    print(f"# probe: free iterations to max|g(s)-s| <= tol (of T={a.T}), {a.probe} batches")
    for t in tols:
        print(
            f"#   tol {t:g}: iterations mean {np.mean(counts[t]):.1f} max {max(counts[t])}, "
            f"max|s - s_T| {max(gaps[t]):.2e}, same prediction {np.mean(agree[t]):.3f}"
        )


def evaluate(fm, net, split, a):
    B = a.batch
    wrong = 0
    n = (len(split.labels) // B) * B
    for k in range(0, n, B):
        fm.set_input(split.x[k : k + B])
        s, _ = free_phase(fm, a)
        wrong += int(np.sum(predict(fm, net, s) != split.labels[k : k + B]))
    return wrong / n


def main():
    a = parse()
    spec = NETS[a.net]
    net = conv_chain(
        (1, 28, 28),
        spec["channels"],
        10,
        kernels=spec["kernels"],
        paddings=spec["paddings"],
        pool=spec["pool"],
        kind=a.kind,
        activation=a.activation,
        dtype=a.dtype,
        seed=a.seed,
    )
    couplings = [c.name for c in net.couplings]
    if len(a.lrs) != len(couplings):
        raise SystemExit(f"--lrs needs {len(couplings)} rates ({', '.join(couplings)})")
    rate = {f"{c}.W": lr for c, lr in zip(couplings, a.lrs, strict=True)}
    for c, lr in zip(net.couplings, a.lrs, strict=True):
        if net.layer(c.target).bias is not None:
            rate[f"{c.target}.b"] = lr
    data = load_dataset(a.dataset)
    train = data.train.head(a.train)
    test = data.test.head(a.test)
    B = a.batch
    fm = FK.FastMap(net, B)
    print(
        f"# {a.dataset} {a.net} {a.kind} {a.activation} {a.estimator} T={a.T} K={a.K} "
        f"beta={a.beta} lrs={a.lrs} atol={a.atol} train={a.train} test={a.test} "
        f"batch={B} {a.dtype} seed={a.seed}"
    )
    if a.probe:
        t0 = time.perf_counter()
        probe(fm, net, train, a)
        print(f"# probe took {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(a.seed)
    rows = []
    eye = np.eye(10, dtype=a.dtype)
    params = net.parameters()
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(train.labels))
        n = (len(order) // B) * B
        wrong, iters = 0, []
        for k in range(0, n, B):
            idx = order[k : k + B]
            x, y = train.x[idx], train.labels[idx]
            d = eye[y]
            fm.set_input(x)
            free, it = free_phase(fm, a)
            iters.append(it)
            wrong += int(np.sum(predict(fm, net, free) != y))
            g0 = fm.parameter_gradient(free)
            s1, _, _ = fm.relax(free, a.K, beta=a.beta, d=d, **phase_kw(a))
            g1 = fm.parameter_gradient(s1)
            if a.estimator == "centered":
                s2, _, _ = fm.relax(free, a.K, beta=-a.beta, d=d, **phase_kw(a))
                g2 = fm.parameter_gradient(s2)
                est = {k2: (g1[k2] - g2[k2]) / (2 * a.beta) for k2 in g1}
            else:
                est = {k2: (g1[k2] - g0[k2]) / a.beta for k2 in g1}
            for name, p in params.items():
                p -= rate[name] * est[name]
            if not all(np.isfinite(p).all() for p in params.values()):
                raise SystemExit(f"epoch {epoch}: non-finite parameters after batch {k // B}")
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        test_err = evaluate(fm, net, test, a)
        row = dict(
            epoch=epoch,
            train_error=wrong / n,
            test_error=test_err,
            train_seconds=round(train_s, 1),
            test_seconds=round(time.perf_counter() - t1, 1),
            mean_free_iterations=round(float(np.mean(iters)), 1),
            seconds_per_sample=train_s / n,
        )
        rows.append(row)
        print(
            f"epoch {epoch}: train error {100 * row['train_error']:.2f} %, test error "
            f"{100 * test_err:.2f} %, {train_s:.0f} s train ({1e3 * train_s / n:.1f} ms/sample), "
            f"{row['test_seconds']:.0f} s test, free iterations {row['mean_free_iterations']}",
            flush=True,
        )
        if a.out:
            with open(a.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                w.writeheader()
                w.writerows(rows)
    per = rows[-1]["seconds_per_sample"]
    print(
        f"# projected: {per * 60000 / 3600:.2f} h per 60,000-image epoch; 40 epochs "
        f"{40 * per * 60000 / 3600:.1f} h (train phases only, this machine and load)"
    )


if __name__ == "__main__":
    main()
