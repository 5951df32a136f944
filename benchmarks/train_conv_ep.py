"""Train a convolutional graph network by EP with the library's Trainer (a thin driver).

The flags of the conv reproductions of issue #14 mapped onto a
:class:`eqprop.train.TrainConfig` (conv architecture, prototypical or hopfield kind,
one-sided or centered EP, the papers' ``T`` / ``K`` / ``beta`` / rates) and trained by
:class:`eqprop.train.Trainer` on the first ``--train`` training and ``--test`` test
images: per batch the input's convolution cached, a free phase of ``--T`` fixed steps on
the fast conv map (or, with ``--atol``, Picard through the solvers to that tolerance, at
most ``--T`` iterations), the nudged phase(s) of ``--K`` steps from the free state, the
EP estimate, SGD with one rate per coupling. Writes one CSV row per epoch (train error
at the free states of the epoch's batches, test error, seconds, mean free iterations)
to ``--out`` and prints them; ``--probe N`` first measures, on N batches of the
untrained network, the free iterations needed to reach several tolerances against
``--T`` fixed steps (on :class:`eqprop.graph.conv_kernels.FastMap` directly). The same
run from the command line is ``eqprop train --sizes 1x28x28-c32k5-p2-c64k5-p2-10 ...``
(``--preset ernoult2019-pconv``).

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
import dataclasses
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
from eqprop.train import TrainConfig, Trainer  # noqa: E402

NETS = {
    # Ernoult et al. 2019 P-conv: 1-32-64, 5x5, no padding, 2x2 max-pool, 10 outputs
    "pconv": "1x28x28-c32k5-p2-c64k5-p2-10",
    # a small conv Hopfield net: 1-16-32, 3x3, padding 1, 2x2 max-pool (28 -> 14 -> 7)
    "hop": "1x28x28-c16k3p1-p2-c32k3p1-p2-10",
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


def config(a) -> TrainConfig:
    """The TrainConfig of the flags (a prototypical net ignores --eps)."""
    free = {}
    if a.atol is not None:
        free = dict(free_method="picard", atol=a.atol, max_iter=a.T)
    return TrainConfig.from_flat(
        dataset=a.dataset,
        architecture=NETS[a.net],
        kind=a.kind,
        activation=a.activation,
        nudge="inside" if a.kind == "hopfield" else a.nudge,
        method="fixed",
        T=a.T,
        K=a.K,
        eps=a.eps,
        beta=a.beta,
        estimator="symmetric" if a.estimator == "centered" else "one-sided",
        lrs=tuple(a.lrs),
        batch_size=a.batch,
        epochs=a.epochs,
        seed=a.seed,
        dtype=a.dtype,
        persistent=False,
        eval_batch_size=a.batch,
        **free,
    ).validate()


def probe(cfg: TrainConfig, net, x, n: int, tols=(1e-2, 1e-3, 1e-4, 1e-5)):
    """Free iterations to reach each tolerance, and the change they leave vs T steps."""
    B = cfg.run.batch_size
    phases = cfg.dynamics.phases
    fm = FK.FastMap(net, B)
    kw = dict(eps=phases.eps, nudge=phases.nudge)
    counts = {t: [] for t in tols}
    gaps = {t: [] for t in tols}
    for k in range(n):
        fm.set_input(x[k * B : (k + 1) * B])
        ref = fm.relax(None, phases.T, **kw)[0].copy()
        for t in tols:
            s, it, _ = fm.relax(None, phases.T, atol=t, **kw)
            counts[t].append(it)
            gaps[t].append(float(np.max(np.abs(s - ref))))
    print(f"# probe: free iterations to max|g(s)-s| <= tol (of T={phases.T}), {n} batches")
    for t in tols:
        print(
            f"#   tol {t:g}: iterations mean {np.mean(counts[t]):.1f} max {max(counts[t])}, "
            f"max|s - s_T| {max(gaps[t]):.2e}"
        )


def main():
    a = parse()
    cfg = config(a)
    data = load_dataset(a.dataset)
    data = type(
        data
    )(  # the validation split is not used: one image, to skip its cost
        data.train.head(a.train),
        data.valid.head(1),
        data.test.head(a.test),
        *[getattr(data, f.name) for f in dataclasses.fields(data)][3:],
    )
    print(
        f"# {a.dataset} {a.net} ({cfg.network.architecture}) {a.kind} {a.activation} {a.estimator} "
        f"T={a.T} K={a.K} beta={a.beta} lrs={a.lrs} atol={a.atol} train={a.train} "
        f"test={a.test} batch={a.batch} {a.dtype} seed={a.seed}"
    )
    trainer = Trainer(cfg, data=data, quiet=True)
    if a.probe:
        t0 = time.perf_counter()
        probe(cfg, trainer.net, trainer.x_train, a.probe)
        print(f"# probe took {time.perf_counter() - t0:.1f} s")
    rows = []
    n = (a.train // a.batch) * a.batch
    for epoch in range(1, a.epochs + 1):
        trainer.run(epochs=epoch)
        h = trainer.history_dataset().isel(epoch=-1)
        train_s = float(h["train_time"])
        row = dict(
            epoch=epoch,
            train_error=float(h["train_error"]),
            test_error=float(h["test_error"]),
            train_seconds=round(train_s, 1),
            test_seconds=round(float(h["eval_time"]), 1),
            mean_free_iterations=round(float(h["free_iterations"]), 1),
            seconds_per_sample=train_s / n,
        )
        rows.append(row)
        print(
            f"epoch {epoch}: train error {100 * row['train_error']:.2f} %, test error "
            f"{100 * row['test_error']:.2f} %, {train_s:.0f} s train "
            f"({1e3 * train_s / n:.1f} ms/sample), {row['test_seconds']:.0f} s test, "
            f"free iterations {row['mean_free_iterations']}",
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
