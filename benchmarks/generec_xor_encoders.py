"""Epochs to criterion on XOR and the 4-2-4 / 8-3-8 encoders for GeneRec, CHL and EP.

The problems of O'Reilly (1996, Neural Computation 8:895, "Biologically plausible
error-driven learning using local activation differences: the generalized recirculation
algorithm"): XOR (2-2-1: four input patterns, one output) and the 4-2-4 and 8-3-8
encoders (each one-hot pattern mapped to itself through the narrow hidden layer). The
paper's text was not available to this project, so its settings and figures are not
used: every setting below is eqprop's own choice, stated here.

Network: ``init_network(sizes, kind, activation="sigmoid", cost="squared",
dtype="float64", seed=seed)`` (Glorot), every pattern in one batch, one update per epoch
(batch-mean gradient, plain SGD at ``--lr`` on every layer). Phases: ``--T`` fixed free
steps and ``--K`` second-phase steps from the free state, ``eps`` / damping as given.
Rules: ``generec`` (basic form), ``chl``, ``ep`` (symmetric, ``--beta``).
Criterion: every output of every pattern within ``--criterion`` of its target at the
free state (checked before each update); a seed that does not reach it in
``--max-epochs`` epochs counts as failed.

Prints an RST table: per problem and rule, the number of seeds that reached the criterion
and the mean, median and 90th percentile of their epochs.

Usage::

    PYTHONPATH=. python benchmarks/generec_xor_encoders.py [--seeds 50] [--max-epochs 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import eqprop as E
from eqprop.optim import SGD
from eqprop.rules import make_rule

PROBLEMS = {
    "xor": (
        (2, 2, 1),
        np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float),
        np.array([[0], [1], [1], [0]], float),
    ),
    "4-2-4": ((4, 2, 4), np.eye(4), np.eye(4)),
    "8-3-8": ((8, 3, 8), np.eye(8), np.eye(8)),
}


def epochs_to_criterion(problem, rule_name, seed, args):
    sizes, x, d = PROBLEMS[problem]
    net = E.init_network(
        sizes, kind=args.kind, activation="sigmoid", cost="squared", dtype="float64", seed=seed
    )
    dyn = E.Dynamics(T=args.T, K=args.K, eps=args.eps, damping=args.damping, method="fused")
    kw = dict(beta=args.beta, estimator="symmetric") if rule_name == "ep" else {}
    rule = make_rule(rule_name, **kw)
    opt = SGD([args.lr] * (len(sizes) - 1))
    rng = np.random.default_rng(seed)
    for epoch in range(args.max_epochs + 1):
        step = rule.estimate(net, x, d, dyn, rng=rng)
        if np.max(np.abs(step.prediction - d)) < args.criterion:
            return epoch
        if epoch < args.max_epochs:
            opt.step(net, step.gradient)
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--problems", default="xor,4-2-4,8-3-8")
    p.add_argument("--rules", default="generec,chl,ep")
    p.add_argument("--kind", default="prototypical")
    p.add_argument("--lr", type=float, default=2.0)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--T", type=int, default=40)
    p.add_argument("--K", type=int, default=20)
    p.add_argument("--eps", type=float, default=0.5)
    p.add_argument("--damping", type=float, default=0.5)
    p.add_argument("--criterion", type=float, default=0.4)
    p.add_argument("--max-epochs", type=int, default=1000)
    args = p.parse_args(argv)
    rows = []
    t0 = time.perf_counter()
    for problem in args.problems.split(","):
        for rule in args.rules.split(","):
            t = time.perf_counter()
            epochs = [epochs_to_criterion(problem, rule, s, args) for s in range(args.seeds)]
            ok = np.array([e for e in epochs if e is not None], float)
            row = (
                problem,
                rule,
                f"{ok.size}/{args.seeds}",
                f"{ok.mean():.0f}" if ok.size else "-",
                f"{np.median(ok):.0f}" if ok.size else "-",
                f"{np.percentile(ok, 90):.0f}" if ok.size else "-",
            )
            rows.append(row)
            print(" ".join(row), f"({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    print(f"\nsettings: {vars(args)}; total {time.perf_counter() - t0:.0f} s\n")
    head = ("problem", "rule", "reached", "mean epochs", "median", "90th pct")
    w = [max(len(str(r[i])) for r in [*rows, head]) for i in range(6)]
    sep = " ".join("=" * n for n in w)
    print(sep)
    print(" ".join(h.ljust(n) for h, n in zip(head, w)))
    print(sep)
    for r in rows:
        print(" ".join(str(v).ljust(n) for v, n in zip(r, w)))
    print(sep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
