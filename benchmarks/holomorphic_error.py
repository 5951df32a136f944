"""Holomorphic EP's error against recurrent backprop: versus N and versus |beta|.

Two tables (RST) and one figure, on a small hopfield network (sigmoid units, squared
cost, tied weights, Glorot-uniform draw) with a random batch, float64 / complex128,
every phase relaxed by Picard iteration of the reference map to ``--atol``:

``points``
    Relative error :math:`\\|\\hat g - g\\|/\\|g\\|` of holomorphic EP
    (:func:`eqprop.graph.holomorphic.holomorphic_ep`) against recurrent backprop at the
    same free state, for each ``N`` in ``--points`` at ``|beta| = --beta``, with each
    phase started from the previous point's state and from the free state, and the total
    Picard iterations of the N phases for each start.
``beta``
    Relative error versus ``|beta|`` (``--betas``) of real-beta EP (one-sided and
    centered) and of holomorphic EP for each ``N`` in ``--sweep-points`` (previous-state
    start). An estimate one of whose phases the relaxation cannot settle (Picard iteration
    diverges or does not reach ``--atol`` in ``--max-iter``: the nudged fixed point is
    unstable under the dynamics) is reported as ``unstable`` and left out of the figure.

Usage::

    PYTHONPATH=. python benchmarks/holomorphic_error.py \\
        [--sizes 10-12-4] [--batch 8] [--seed 0] [--beta 0.5] \\
        [--points 2,3,4,6,8,16,32] [--sweep-points 2,4] \\
        [--betas 0.001,0.002,...] [--atol 1e-14] [--max-iter 20000] \\
        [--figure docs/figures/holomorphic_error.png]

CPU only, a few seconds (the default network has 16 state units).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from eqprop.graph import chain
from eqprop.graph import holomorphic as H
from eqprop.graph.backprop import free_equilibrium, recurrent_backprop

DEFAULT_BETAS = ",".join(f"{b:.3g}" for b in np.logspace(-3, np.log10(2.0), 17))


def _list(text: str, kind):
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(
            f"error: cannot read {text!r} as a comma list of {kind.__name__}"
        ) from None


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise SystemExit(f"error: --sizes {text!r}: give layer sizes like 10-12-4")
    return sizes


def problem(sizes, batch: int, seed: int, atol: float):
    """Network, batch, free state and the recurrent-backprop gradient."""
    net = chain(sizes, activation="sigmoid", seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(batch, sizes[0]))
    d = rng.uniform(0.0, 1.0, size=(batch, sizes[-1]))
    s = free_equilibrium(net, x, atol=atol)
    ref = recurrent_backprop(net, x, d, s).grads
    return net, x, d, s, ref


def _err_or_none(fn):
    try:
        return fn()
    except ValueError as exc:
        if "no fixed point" not in str(exc):
            raise
        return None


def points_table(net, x, d, s, ref, beta: float, points, tol: dict):
    rows = []
    for n in points:
        row = {"N": n}
        for start in H.START_MODES:
            res = _err_or_none(
                lambda n=n, start=start: H.holomorphic_ep(
                    net, x, d, points=n, beta=beta, s_free=s, start=start, **tol
                )
            )
            row[start] = None if res is None else H.relative_error(res.grads, ref)
            row[f"it_{start}"] = None if res is None else sum(res.info["iterations"])
        rows.append(row)
    return rows


def beta_table(net, x, d, s, ref, betas, sweep_points, tol: dict):
    cols = ["one-sided", "centered"] + [f"N={n}" for n in sweep_points]
    rows = []
    for b in betas:
        row: dict[str, float | None] = {"beta": b}
        for est in ("one-sided", "centered"):
            g = _err_or_none(
                lambda est=est, b=b: H.real_beta_ep(
                    net, x, d, beta=b, estimator=est, s_free=s, **tol
                )
            )
            row[est] = None if g is None else H.relative_error(g, ref)
        for n in sweep_points:
            res = _err_or_none(
                lambda n=n, b=b: H.holomorphic_ep(net, x, d, points=n, beta=b, s_free=s, **tol)
            )
            row[f"N={n}"] = None if res is None else H.relative_error(res.grads, ref)
        rows.append(row)
    return cols, rows


def _fmt(v, spec=".2e"):
    return "unstable" if v is None else format(v, spec)


def _rst(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join("=" * w for w in widths)
    out = [line, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append(line)
    return "\n".join(out)


def figure(path, beta, prow, cols, brow):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.4, 3.4), constrained_layout=True)
    for start, mark in (("previous", "o-"), ("free", "x--")):
        pts = [(r["N"], r[start]) for r in prow if r[start] is not None]
        a1.semilogy(*zip(*pts, strict=True), mark, label=f"start: {start}")
    a1.set_xlabel("points N")
    a1.set_ylabel("relative error vs RBP")
    a1.set_title(f"holomorphic EP, |beta| = {beta:g}")
    a1.legend(frameon=False)
    styles = {
        "one-sided": dict(fmt="s:", ms=4),
        "centered": dict(fmt="^", ms=8, mfc="none", zorder=3),  # N=2 lies on it
    }
    for c in cols:
        pts = [(r["beta"], r[c]) for r in brow if r[c] is not None]
        style = dict(styles.get(c, dict(fmt="o-", ms=3)))
        fmt = style.pop("fmt")
        a2.loglog(*zip(*pts, strict=True), fmt, label=c, **style)
    a2.set_xlabel("|beta|")
    a2.set_title("error vs |beta| (missing: unstable)")
    a2.legend(frameon=False, fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10-12-4", help="layer sizes, input first (10-12-4)")
    p.add_argument("--batch", type=int, default=8, help="batch size (8)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batch (0)")
    p.add_argument("--beta", type=float, default=0.5, help="|beta| of the points table (0.5)")
    p.add_argument("--points", default="2,3,4,6,8,16,32", help="N of the points table")
    p.add_argument("--sweep-points", default="2,4", help="N of the |beta| sweep (2,4)")
    p.add_argument("--betas", default=DEFAULT_BETAS, help="|beta| values of the sweep")
    p.add_argument("--atol", type=float, default=1e-14, help="relaxation tolerance (1e-14)")
    p.add_argument("--max-iter", type=int, default=20000, help="iterations per phase (20000)")
    p.add_argument(
        "--figure", default="docs/figures/holomorphic_error.png", help="PNG to write ('' none)"
    )
    a = p.parse_args(argv)
    sizes = _sizes(a.sizes)
    points = _list(a.points, int)
    sweep = _list(a.sweep_points, int)
    betas = _list(a.betas, float)
    t0 = time.perf_counter()
    try:
        net, x, d, s, ref = problem(sizes, a.batch, a.seed, a.atol)
        tol = {"atol": a.atol, "max_iter": a.max_iter}
        prow = points_table(net, x, d, s, ref, a.beta, points, tol)
        cols, brow = beta_table(net, x, d, s, ref, betas, sweep, tol)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"network {a.sizes} hopfield sigmoid, squared cost, batch {a.batch}, seed {a.seed}, "
        f"atol {a.atol:g}\n"
    )
    print(f"Relative error vs N at |beta| = {a.beta:g} (Picard iterations of the N phases)\n")
    header = ["N", "start: previous", "start: free", "iterations (previous)", "iterations (free)"]
    print(
        _rst(
            header,
            [
                [
                    str(r["N"]),
                    _fmt(r["previous"]),
                    _fmt(r["free"]),
                    _fmt(r["it_previous"], "d"),
                    _fmt(r["it_free"], "d"),
                ]
                for r in prow
            ],
        )
    )
    print("\nRelative error vs |beta|\n")
    rows = [[f"{r['beta']:.3g}", *(_fmt(r[c]) for c in cols)] for r in brow]
    print(_rst(["\\|beta\\|", *cols], rows))  # escaped: |beta| is an RST substitution
    if a.figure:
        figure(a.figure, a.beta, prow, cols, brow)
        print(f"\nwrote {a.figure}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
