"""A seeded battery of fixed-point problems of the kind eqprop's networks produce.

Shared by ``tests/test_solvers_battery.py`` (a small battery, fast) and
``benchmarks/bench_solver_battery.py`` (a large one). Problem ``i`` is the free phase of a
layered network (:mod:`eqprop.kernels`' map) with 1-3 hidden layers, hopfield or
prototypical kind, hard-sigmoid or sigmoid units and Glorot weights times a gain, all
chosen from ``i``; each is solved by Picard, Anderson and Broyden (defaults) and
Gauss-Seidel over odd/even layers, from zero, to ``atol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import solvers

KINDS = ("hopfield", "prototypical")
ACTIVATIONS = ("hardsigmoid", "sigmoid")
GAINS = (0.5, 1.0, 2.0, 3.0)
ACCELERATED = ("anderson", "broyden", "gauss-seidel")  # compared with Picard


@dataclass(frozen=True)
class Problem:
    depth: int
    kind: str
    activation: str
    gain: float
    seed: int


def problem(i: int) -> Problem:
    """Problem ``i`` of the battery (depth, kind, activation and gain cycle with ``i``)."""
    return Problem(
        depth=1 + i % 3,
        kind=KINDS[(i // 3) % 2],
        activation=ACTIVATIONS[(i // 6) % 2],
        gain=GAINS[(i // 12) % 4],
        seed=i,
    )


def build(p: Problem, *, batch: int, n_in: int = 16, hidden: int = 12, n_out: int = 4):
    """Network and free-phase kernel arguments of problem ``p`` (float64)."""
    from eqprop import kernels as K
    from eqprop.network import init_network
    from eqprop.phases import clamp

    sizes = (n_in, *([hidden] * p.depth), n_out)
    net = init_network(
        sizes, kind=p.kind, activation=p.activation, dtype="float64", seed=p.seed, gain=p.gain
    )
    rng = np.random.default_rng(p.seed + 10_000)
    cx = clamp(net, rng.random((batch, n_in)))
    lay = net.layout("inside")
    target = np.zeros((batch, sizes[-1]), dtype=net.dtype)
    sc = np.array([0.0, 0.5], dtype=net.dtype)
    work = K.make_work(lay, batch, net.dtype)
    return net, (cx.theta, lay, cx.drive, target, sc, work)


def methods(net) -> dict:
    off = [int(o) for o in net.offsets]
    layers = [(off[i], off[i + 1]) for i in range(len(off) - 1)]
    groups = tuple(g for g in (tuple(layers[0::2]), tuple(layers[1::2])) if g)
    return {
        "picard": solvers.Picard(),
        "anderson": solvers.Anderson(),
        "broyden": solvers.Broyden(),
        "gauss-seidel": solvers.GaussSeidel(groups=groups),
    }


def run(i: int, *, batch: int = 3, atol: float = 1e-6, max_iter: int = 400, override=None):
    """``{method: SolveResult}`` of problem ``i``."""
    from eqprop import kernels as K

    net, args = build(problem(i), batch=batch)
    out = {}
    for name, m in methods(net).items():
        if override is not None and name in override:
            m = override[name]
        block = K.fixed_point_block if name == "gauss-seidel" else None
        out[name] = solvers.solve_fixed_point(
            K.fixed_point_map,
            net.zero_state(batch),
            args,
            method=m,
            g_block=block,
            atol=atol,
            max_iter=max_iter,
            bounds=net.bounds,
        )
    return out


def summary(results: list[dict], names: tuple[str, ...] = ACCELERATED) -> dict:
    """Per method of ``names``: samples where Picard converged, how many of them the method
    converged on, and how many in no more iterations than Picard."""
    out = {}
    for name in names:
        n_ref = n_conv = n_le = 0
        worst = []
        for i, r in enumerate(results):
            ok = r["picard"].converged
            n_ref += int(ok.sum())
            c = r[name].converged & ok
            n_conv += int(c.sum())
            le = c & (r[name].n_iter <= r["picard"].n_iter)
            n_le += int(le.sum())
            for b in np.flatnonzero(ok & ~le):
                worst.append((i, int(b), int(r["picard"].n_iter[b]), int(r[name].n_iter[b])))
        out[name] = dict(reference=n_ref, converged=n_conv, not_slower=n_le, losers=worst)
    return out
