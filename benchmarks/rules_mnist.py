"""Every learning rule training the same 784-500-10 network on MNIST under one budget.

Each rule starts from the ``scellier2017-1h`` preset (hopfield, hardsigmoid, squared cost,
T = 20 free and K = 4 second-phase steps, eps = 0.5, batch 20, lrs 0.2 / 0.1, float32,
persistent particles; Scellier & Bengio 2017) and changes only ``--rule`` and the rule's own
options, then trains ``--epochs`` epochs on the first ``--limit`` training images and is
tested on the first ``--limit`` test images. The backprop baselines are also run with the
cross-entropy readout (``--cost cross-entropy``): with the squared cost their output units
held at a bound of [0, 1] get no gradient (see docs/rules.rst).

Prints an RST table: test error, epochs, wall time of the run (training + evaluation),
training samples/s, and the equivalent ``eqprop train`` command.

Usage::

    PYTHONPATH=. python benchmarks/rules_mnist.py [--epochs 1] [--limit 10000] \\
        [--only ep-one-sided,rbp] [--csv runs/rules_mnist.csv]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from eqprop.presets import get_preset
from eqprop.train import Trainer

#: Row name -> (``eqprop train`` options, the same as TrainConfig.replace's flat names).
RUNS: dict[str, tuple[list[str], dict]] = {
    "ep-one-sided": (["--estimator", "one-sided"], dict(estimator="one-sided")),
    "ep-random-sign": (["--estimator", "random-sign"], dict(estimator="random-sign")),
    "ep-symmetric": (["--estimator", "symmetric"], dict(estimator="symmetric")),
    "chl": (["--rule", "chl"], dict(rule="chl")),
    "generec-basic": (["--rule", "generec"], dict(rule="generec")),
    "generec-symmetric-midpoint": (
        ["--rule", "generec", "--generec-form", "symmetric-midpoint"],
        dict(rule="generec", generec_form="symmetric-midpoint"),
    ),
    "coupled-positive": (
        ["--rule", "coupled", "--coupled-variant", "positive"],
        dict(rule="coupled", coupled_variant="positive"),
    ),
    "coupled-negative": (
        ["--rule", "coupled", "--coupled-variant", "negative"],
        dict(rule="coupled", coupled_variant="negative"),
    ),
    "coupled-centered": (
        ["--rule", "coupled", "--coupled-variant", "centered"],
        dict(rule="coupled", coupled_variant="centered"),
    ),
    "rbp": (["--rule", "rbp"], dict(rule="rbp")),
    "bptt": (["--rule", "bptt"], dict(rule="bptt")),
    "rbp (cross-entropy)": (
        ["--rule", "rbp", "--cost", "cross-entropy"],
        dict(rule="rbp", cost="cross-entropy"),
    ),
    "bptt (cross-entropy)": (
        ["--rule", "bptt", "--cost", "cross-entropy"],
        dict(rule="bptt", cost="cross-entropy"),
    ),
    "ep-symmetric (cross-entropy)": (
        ["--estimator", "symmetric", "--cost", "cross-entropy"],
        dict(estimator="symmetric", cost="cross-entropy"),
    ),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--limit", type=int, default=10000)
    p.add_argument("--preset", default="scellier2017-1h")
    p.add_argument("--only", default=None, help="comma-separated row names")
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    names = list(RUNS) if args.only is None else args.only.split(",")
    rows = []
    for name in names:
        flags, changes = RUNS[name]
        config = get_preset(args.preset).config.replace(
            **changes, epochs=args.epochs, limit=args.limit, preset=args.preset
        )
        budget = ["--epochs", str(args.epochs), "--limit", str(args.limit)]
        command = " ".join(["eqprop train --preset", args.preset, *flags, *budget])
        trainer = Trainer(config, quiet=True, command=command)
        t0 = time.perf_counter()
        result = trainer.run()
        wall = time.perf_counter() - t0
        h = result.history
        row = dict(
            rule=name,
            test=100 * float(h["test_error"].values[-1]),
            epochs=args.epochs,
            wall=wall,
            sps=float(h["samples_per_second"].values.mean()),
            command=command,
        )
        rows.append(row)
        print(f"{name}: {row['test']:.2f} % in {wall:.1f} s", file=sys.stderr, flush=True)
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"budget: {args.epochs} epoch(s) on {args.limit} training images, "
        f"tested on {args.limit} test images\n"
    )
    w = max(len(r["command"]) for r in rows) + 4
    header = (
        f"{'rule':<30} {'test error (%)':>14} {'epochs':>6} {'wall (s)':>8} "
        f"{'samples/s':>9} {'command':<{w}}"
    )
    sep = " ".join("=" * n for n in (30, 14, 6, 8, 9, w))
    print(sep)
    print(header)
    print(sep)
    for r in rows:
        print(
            f"{r['rule']:<30} {r['test']:>14.2f} {r['epochs']:>6} {r['wall']:>8.1f} "
            f"{r['sps']:>9.0f} ``{r['command']}``"
        )
    print(sep)
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
