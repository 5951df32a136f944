"""Nudged phases to a tolerance against the paper's ``K`` steps: does the EP estimate
change? (#16; a script, not a test.)

``scellier2017-2h --fast`` solves the free phase to ``atol`` and keeps the nudged phase at
the paper's ``K = 6`` projected Euler steps (``eps = 0.5``). This script measures, on the
weights and persistent particles of a 2h training checkpoint, what a nudged phase stopped
at a tolerance instead would give:

1. the free state ``s0``: the ``--fast`` free phase (``gauss-seidel-parity``, ``eps = 1``,
   damping 1.5, ``atol = 1e-3``, at most 150 sweeps) from the particles of the first
   ``--batches x 20`` training images (the presets' minibatch of 20, the script's data
   order);
2. for each minibatch and each sign of ``beta = +-2`` (the preset's random-sign
   estimator draws one per minibatch), the nudged phase from ``s0``: the paper's ``K``
   steps (``method="fused"``), and each tolerance variant: the same map
   (``eps = 0.5`` projected Euler, ``method="picard"``) or the free phase's block
   Gauss-Seidel, to ``atol``, at most ``--max-iter`` sweeps; and a reference, Picard on
   the ``eps = 0.5`` map to ``atol = 1e-6``;
3. the EP estimate of each, :math:`\\hat g = (\\partial E/\\partial\\theta(s_\\beta,
   \\beta) - \\partial E/\\partial\\theta(s_0, 0))/\\beta` (batch mean,
   :func:`eqprop.network.contrast_gradient`, float32 network, cosines in float64), and
   its cosine to the ``K``-step estimate (all parameters flattened; and the smallest
   cosine of a layer's weights), the slowest sample's nudged sweeps, the mean sweeps
   per sample and the wall time of the phase (median of ``--repeat``).

The adoption rule of #16's brief: a tolerance-stopped nudged phase goes into ``--fast``
only if its cosine to the ``K``-step estimate is at least 0.999 on every minibatch and
it costs less time than the ``K`` steps.

Run from the repository root::

    python benchmarks/bench_nudged_tolerance.py --checkpoint runs/d16/fast-s0/checkpoint.npz
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import solvers
from eqprop import Dynamics, init_network, load_checkpoint
from eqprop.data import load_dataset
from eqprop.network import contrast_gradient
from eqprop.phases import free_phase, nudged_phase

SIZES = (784, 500, 500, 10)
T, K, EPS, BETA = 150, 6, 0.5, 2.0
MINIBATCH = 20


def odd_even(net) -> tuple:
    off = [int(v) for v in net.offsets]
    layers = [(off[i], off[i + 1]) for i in range(len(off) - 1)]
    return (tuple(layers[0::2]), tuple(layers[1::2]))


def fast_free(net) -> Dynamics:
    gs = solvers.GaussSeidel(groups=odd_even(net), damping=1.5)
    return Dynamics(T=T, K=K, eps=1.0, method=gs, fixed_steps=False, atol=1e-3, max_iter=T)


def variants(net, atols: list[float], max_iter: int) -> list[tuple[str, Dynamics]]:
    """(label, nudged-phase Dynamics): the paper's K steps first, then the tolerance ones."""
    out = [(f"K={K} steps (paper, --fast)", Dynamics(T=T, K=K, eps=EPS, method="fused"))]
    for atol in atols:
        out.append(
            (
                f"eps=0.5 map to atol={atol:g}",
                Dynamics(
                    T=T,
                    K=K,
                    eps=EPS,
                    method="picard",
                    fixed_steps=False,
                    atol=atol,
                    max_iter=max_iter,
                ),
            )
        )
    gs = solvers.GaussSeidel(groups=odd_even(net), damping=1.5)
    for atol in atols:
        out.append(
            (
                f"--fast's GS (eps=1,d=1.5) to atol={atol:g}",
                Dynamics(
                    T=T, K=K, eps=1.0, method=gs, fixed_steps=False, atol=atol, max_iter=max_iter
                ),
            )
        )
    out.append(
        (
            "reference: eps=0.5 map to 1e-6",
            Dynamics(
                T=T, K=K, eps=EPS, method="picard", fixed_steps=False, atol=1e-6, max_iter=20000
            ),
        )
    )
    return out


def estimate(net, x, d, s0, sb, beta) -> tuple[np.ndarray, list[np.ndarray]]:
    g = contrast_gradient(net, x, d, (s0, sb), (0.0, beta), (-1.0 / beta, 1.0 / beta))
    return g.flat().astype(np.float64), [w.astype(np.float64).ravel() for w in g.dW]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two updates; 1 if both are zero, 0 if only one is (no alignment)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--atols", default="1e-3,1e-4")
    p.add_argument("--max-iter", dest="max_iter", type=int, default=150)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data-dir", default=os.environ.get("EQPROP_DATA_DIR", "/work/shared/data"))
    a = p.parse_args(argv)

    _cfg, arr = load_checkpoint(a.checkpoint)
    net = init_network(SIZES, kind="hopfield", activation="hardsigmoid", seed=0)
    for l in range(len(net.weights)):
        net.weights[l][...] = arr[f"W{l}"]
        net.biases[l][...] = arr[f"b{l}"]
    data = load_dataset("mnist", data_dir=a.data_dir)
    n = a.batches * MINIBATCH
    X = np.ascontiguousarray(data.train.x[:n], dtype=np.float32)
    labels = np.asarray(data.train.labels[:n]).astype(int)
    D = np.zeros((n, SIZES[-1]), dtype=np.float32)
    D[np.arange(n), labels] = 1.0
    P = np.ascontiguousarray(arr["particles"][:n])
    atols = [float(v) for v in a.atols.split(",")]
    vs = variants(net, atols, a.max_iter)
    load0 = os.getloadavg()[0]
    print(
        f"# {a.checkpoint} (epoch {int(arr['epoch'])}), train[:{n}] in minibatches of "
        f"{MINIBATCH}, beta = +-{BETA}; load {load0:.1f} at start"
    )
    rows: dict[str, list[tuple[float, float, float, float, float]]] = {lab: [] for lab, _ in vs}
    for i in range(a.batches):
        sl = slice(i * MINIBATCH, (i + 1) * MINIBATCH)
        x, d = X[sl], D[sl]
        s0 = free_phase(net, x, fast_free(net), s0=P[sl]).state
        for beta in (BETA, -BETA):
            ref = None
            for lab, dyn in vs:
                nudged_phase(net, x, d, beta, dyn, s0=s0)  # warm-up / compile
                times = []
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    ph = nudged_phase(net, x, d, beta, dyn, s0=s0)
                    times.append(time.perf_counter() - t0)
                g, gw = estimate(net, x, d, s0, ph.state, beta)
                if ref is None:
                    ref = (g, gw)
                it = (
                    np.asarray(ph.result.n_iter)
                    if not dyn.is_fixed_steps
                    else np.full(x.shape[0], K)
                )
                cw = min(cosine(u, v) for u, v in zip(gw, ref[1], strict=True))
                rows[lab].append(
                    (
                        cosine(g, ref[0]),
                        cw,
                        float(it.max()),
                        float(it.mean()),
                        statistics.median(times),
                    )
                )
    print(
        f"{'nudged phase':44s} {'cos min':>8s} {'cos mean':>8s} {'cosW min':>8s} "
        f"{'sweeps max':>10s} {'mean':>6s} {'ms':>7s} {'ms/K':>6s}"
    )
    base_ms = statistics.mean(r[4] for r in rows[vs[0][0]])
    for lab, _ in vs:
        r = np.asarray(rows[lab])
        print(
            f"{lab:44s} {r[:, 0].min():8.5f} {r[:, 0].mean():8.5f} {r[:, 1].min():8.5f} "
            f"{r[:, 2].max():10.0f} {r[:, 3].mean():6.1f} {1e3 * r[:, 4].mean():7.2f} "
            f"{r[:, 4].mean() / base_ms:6.2f}"
        )
    print(
        f"# {2 * a.batches} (minibatch, sign) pairs; cos: to the K-step estimate; ms: "
        f"median of {a.repeat} per phase, mean over pairs; load {os.getloadavg()[0]:.1f} at end"
    )


if __name__ == "__main__":
    main()
