"""Holomorphic EP against centered (symmetric) EP on MNIST under the same budget.

Trains the same 784-500-10 network (prototypical dynamics, shifted sigmoid, squared cost,
nudge inside the activation, fan-in init, no persistent particles) with
``--rule ep --estimator symmetric`` and with ``--rule holomorphic --points N`` for each
``N`` in ``--points``: same seed, epochs, ``T``, ``K``, batch size, learning rates and
``|beta|``. Prints the equivalent ``eqprop train`` command of each run and one RST table:
test and validation error after the last epoch, training seconds per epoch (mean over the
epochs after the first, which also compiles) and their ratio to the symmetric run.

Usage::

    PYTHONPATH=. python benchmarks/holomorphic_mnist.py [--limit 10000] [--epochs 3] \\
        [--points 2,4] [--beta 0.5] [-T 40] [-K 15] [--lrs 0.08,0.04] [--seed 0]

Needs the MNIST files in ``$EQPROP_DATA_DIR`` (``eqprop.data``). CPU only; with the
defaults about ten minutes on one loaded core (docs/holomorphic.rst).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from eqprop.train import TrainConfig, Trainer


def common(args: argparse.Namespace) -> dict:
    return dict(
        dataset="mnist",
        architecture="784-500-10",
        kind="prototypical",
        activation="shifted-sigmoid",
        nudge="inside",
        cost="squared",
        init="fan-in",
        method="fused",
        T=args.T,
        K=args.K,
        beta=args.beta,
        lrs=tuple(args.lrs),
        batch_size=args.batch_size,
        persistent=False,
        limit=args.limit,
        epochs=args.epochs,
        seed=args.seed,
    )


def command(args: argparse.Namespace, rule: list[str]) -> str:
    lrs = " ".join(str(v) for v in args.lrs)
    return (
        "eqprop train --dataset mnist --sizes 784-500-10 --kind prototypical "
        "--activation shifted-sigmoid --nudge inside --init fan-in --method fused "
        f"-T {args.T} -K {args.K} --beta {args.beta} --lrs {lrs} --batch-size "
        f"{args.batch_size} --no-persistent --limit {args.limit} --epochs {args.epochs} "
        f"--seed {args.seed} " + " ".join(rule)
    )


def run(settings: dict) -> dict:
    h = Trainer(TrainConfig.from_flat(settings).validate(), quiet=True).run().history
    t = np.asarray(h["train_time"].values)
    return {
        "test": float(h["test_error"].values[-1]),
        "valid": float(h["valid_error"].values[-1]),
        "sec": float(np.mean(t[1:]) if t.size > 1 else t[0]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--points", default="2,4")
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("-T", type=int, default=40)
    p.add_argument("-K", type=int, default=15)
    p.add_argument("--lrs", type=lambda s: [float(v) for v in s.split(",")], default=[0.08, 0.04])
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    base = common(args)
    runs = [("centered EP (symmetric)", ["--rule", "ep", "--estimator", "symmetric"], {})]
    runs[0][2].update(rule="ep", estimator="symmetric")
    for n in (int(v) for v in args.points.split(",")):
        runs.append(
            (
                f"holomorphic EP, N = {n}",
                ["--rule", "holomorphic", "--points", str(n)],
                dict(rule="holomorphic", points=n),
            )
        )
    rows = []
    for label, flags, rule in runs:
        print(command(args, flags), flush=True)
        rows.append((label, run({**base, **rule})))
    ref = rows[0][1]["sec"]
    print()
    w = max(len(r[0]) for r in rows)
    line = f"{'=' * w}  ==========  ===========  ========  ========"
    print(line)
    print(f"{'rule':<{w}}  test error  valid error  s/epoch   vs EP")
    print(line)
    for label, r in rows:
        print(
            f"{label:<{w}}  {100 * r['test']:>9.2f}%  {100 * r['valid']:>10.2f}%  "
            f"{r['sec']:>8.1f}  {r['sec'] / ref:>7.1f}x"
        )
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
