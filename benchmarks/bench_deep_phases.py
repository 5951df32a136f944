"""Free-phase iterations of every ``solvers`` method on the deep presets (a script, not a test).

Scellier & Bengio (2017) run the free phase of their deep hopfield networks for a fixed
number of projected Euler steps, ``s <- clip(s - eps dE/ds, 0, 1)`` with ``eps = 0.5``:
``T = 150`` for 784-500-500-10 in their released script (``T = 100`` in the paper's
table; ``--T2h 100``) and ``T = 500`` for 784-500-500-500-10 (hard sigmoid).
This script measures the residual that those ``T`` steps reach and how many iterations
each ``solvers`` method needs to reach the same residual.

For each network (Glorot init of :func:`eqprop.init_network`, seed 0; and the weights of
each ``--checkpoint`` given, a training checkpoint of a 2h or 3h run) and a batch of 128
MNIST images:

1. ``fixed``: the paper's path, ``T`` synchronous steps (``Dynamics(method="fixed")``),
   from zero (the paper's first epoch) and, for the checkpoint, from the stored
   persistent particles of the first 128 training images. The per-sample residual
   reached is the solvers' fixed-point residual of the eps-map,
   :math:`r(s) = \\max_i |P(g(s))_i - s_i|` at :math:`s_T`.
2. The target is ``atol = max over samples of r(s_T)`` (every sample of the fixed path
   meets it; ``--target median`` uses the median instead, which half of the fixed path's
   samples miss).
3. Every method runs from the same start to ``atol`` (``fixed_steps=False``); the ODE
   methods (on :math:`\\dot s = -\\partial E/\\partial s`, whose projected field is
   about ``r / eps``) get ``atol / eps`` and their final states are checked with the
   fixed-point residual of the eps-map, like every other method (column ``r_fp``).

Columns: ``iters`` iterations of the slowest sample (what a batched solve costs) and the
mean over samples; ``b20`` the slowest sample's iterations averaged over the minibatches
of 20 consecutive samples (what a training minibatch of the presets costs: samples
converge independently, so a minibatch of 20 stops at its own slowest); ``evals`` full
map/field evaluations (``nfev``; RK4 uses 4 per step, Dopri5 6) plus block evaluations
of Gauss-Seidel (``+b``); ``iters/T``; ``time/fixed``
the median wall time of the solve over the median wall time of the fixed path, both
timed in this run (the machine is shared: ratios only); ``r_fp`` the largest
fixed-point residual of the final states; ``|ds|`` ``max |s_method - s_fixed|``;
``|ds*|`` ``max |s_method - s*|`` with ``s*`` the limit of the fixed path's own
trajectory (Picard continued from ``s_T`` in a float64 copy of the network to residual
1e-6); ``pred`` / ``pred*`` the number of samples whose predicted class (argmax of the
output layer) differs from that of ``s_T`` / of ``s*``; ``fb`` the number of samples in
which the progress safeguard of an accelerated method (Anderson, Broyden) intervened
(``SolveResult.n_fallback > 0``).

The ``Broyden`` rows are :class:`solvers.Broyden` (limited-memory "good" Broyden, #16).

Run from the repository root::

    NUMBA_CACHE_DIR=.numba_cache OPENBLAS_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/bench_deep_phases.py

Options: ``--repeat R`` timing repeats (median), ``--batch B``, ``--target max|median``,
``--max-iter-factor F`` (``max_iter = F * T``, default 3),
``--fast-atol A[,A]`` (the tolerances of the ``--fast`` rows, default 1e-4),
``--checkpoint NET=PATH[,NET=PATH]`` (training checkpoints of 784-500-500-10 ``2h`` or
784-500-500-500-10 ``3h`` runs; a bare ``PATH`` is a 2h one; default none), ``--nets
2h,3h``, ``--T2h T`` (default 150), ``--data-dir``. For a checkpoint with persistent
particles the train-split case starts from the particles of the first ``--batch``
training images (the order of a run without shuffling).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import solvers
from eqprop import Dynamics, init_network, load_checkpoint
from eqprop.data import load_dataset
from eqprop.gradients import make_step
from eqprop.network import Network
from eqprop.phases import free_phase

EPS = 0.5
PAPER = {"2h": ((784, 500, 500, 10), 150), "3h": ((784, 500, 500, 500, 10), 500)}
MINIBATCH = 20  # the presets' minibatch (column b20)


@dataclass
class Case:
    """One network, input batch and start state."""

    name: str
    net: Network
    x: np.ndarray
    s0: np.ndarray | None
    T: int


def fp_residual(net: Network, x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-sample fixed-point residual ``max_i |clip(g(s))_i - s_i|`` of the eps-map (float64)."""
    s = np.ascontiguousarray(s, dtype=net.dtype)
    out = make_step(net, x, eps=EPS)(s)
    return np.abs(out.astype(np.float64) - s.astype(np.float64)).max(axis=1)


def layer_groups(net: Network) -> dict[str, tuple]:
    """Gauss-Seidel groups: per layer in order, and odd layers then even layers."""
    off = [int(v) for v in net.offsets]
    layers = [(off[i], off[i + 1]) for i in range(len(off) - 1)]
    return {
        "layers": tuple((r,) for r in layers),
        "odd/even": (tuple(layers[0::2]), tuple(layers[1::2])),
        "even/odd": (tuple(layers[1::2]), tuple(layers[0::2])),
    }


HYBRID_STEPS = 20  # plain steps before Anderson in the two-stage contender
FAST_ATOL = 1e-4  # the --fast tolerance of the tables in docs/solvers.rst (2h now 1e-3)


def methods(
    net: Network, fast_atols: tuple[float, ...] = (FAST_ATOL,)
) -> list[tuple[str, Any, float]]:
    """(label, solvers method, eps of the map it iterates) of every contender.

    ``("hybrid", m)`` as method: ``HYBRID_STEPS`` Picard steps, then ``m``. Contenders
    with ``eps = 1`` iterate the map ``s <- clip(s - dE/ds, 0, 1)``, which for the hard
    sigmoid sets a layer to the exact minimiser of the energy given its neighbours
    (``clip(drive)``): Gauss-Seidel on that map over odd/even layers is block coordinate
    descent (the asynchronous updates of Scellier et al. 2023, arXiv:2312.15103), and
    ``damping > 1`` over-relaxes it (SOR). They stop on the residual of their own map,
    which is at least that of the ``eps = 0.5`` map (``r_fp`` checks the latter). The
    ``--fast`` row is the deep presets' fast free phase with its own tolerance
    (``fast_atols``, default ``FAST_ATOL``; one row each) instead of the target (``ok`` then
    says whether it also met the target); its ``reuse`` row is the same sweep with
    ``last_group_independent=True`` (the residual check evaluates only the first group's
    block and reuses the last group's block values of the previous sweep; what
    ``eqprop.phases`` runs for ``--fast``), same iterates and iterations, fewer
    evaluations.
    """
    g = layer_groups(net)
    out: list[tuple[str, Any, float]] = [
        ("Picard", solvers.Picard(), EPS),
        ("Picard(damping=1.5)", solvers.Picard(damping=1.5), EPS),
        ("Picard(damping=1.9)", solvers.Picard(damping=1.9), EPS),
    ]
    for m in (1, 2, 3, 5, 10):
        out.append((f"Anderson(m={m})", solvers.Anderson(m=m), EPS))
    out.append(("Anderson(m=5,damping=0.5)", solvers.Anderson(m=5, damping=0.5), EPS))
    out.append(("Anderson(m=5,restart_tol=1e-3)", solvers.Anderson(m=5, restart_tol=1e-3), EPS))
    out.append(("Anderson(m=5,growth=inf)", solvers.Anderson(m=5, growth=float("inf")), EPS))
    out.append((f"{HYBRID_STEPS} Picard + Anderson(m=5)", ("hybrid", solvers.Anderson(m=5)), EPS))
    out.append((f"{HYBRID_STEPS} Picard + Anderson(m=3)", ("hybrid", solvers.Anderson(m=3)), EPS))
    for label, groups in g.items():
        out.append((f"GaussSeidel({label})", solvers.GaussSeidel(groups=groups), EPS))
    oe = g["odd/even"]
    out.append(("GaussSeidel(odd/even,d=1.5)", solvers.GaussSeidel(groups=oe, damping=1.5), EPS))
    out += [
        ("eps=1: Picard (Jacobi)", solvers.Picard(), 1.0),
        ("eps=1: Anderson(m=2)", solvers.Anderson(m=2), 1.0),
        ("eps=1: GaussSeidel(odd/even)", solvers.GaussSeidel(groups=oe), 1.0),
        ("eps=1: GaussSeidel(odd/even,d=1.2)", solvers.GaussSeidel(groups=oe, damping=1.2), 1.0),
        ("eps=1: GaussSeidel(odd/even,d=1.5)", solvers.GaussSeidel(groups=oe, damping=1.5), 1.0),
        *(
            (
                f"--fast (atol={fa:g}, own map)",
                ("atol", fa, solvers.GaussSeidel(groups=oe, damping=1.5)),
                1.0,
            )
            for fa in fast_atols
        ),
        *(
            (
                f"--fast (atol={fa:g}, own map, reuse)",
                (
                    "atol",
                    fa,
                    solvers.GaussSeidel(groups=oe, damping=1.5, last_group_independent=True),
                ),
                1.0,
            )
            for fa in fast_atols
        ),
        ("eps=1.3: GaussSeidel(odd/even)", solvers.GaussSeidel(groups=oe), 1.3),
        ("eps=1.5: GaussSeidel(odd/even)", solvers.GaussSeidel(groups=oe), 1.5),
        ("eps=1.7: GaussSeidel(odd/even)", solvers.GaussSeidel(groups=oe), 1.7),
    ]
    # the quasi-Newton method of #16, with Anderson's defaults (delay=20) and without the
    # delay; and Anderson without its delay, for comparison
    B = solvers.Broyden
    out.append(("Anderson(m=5,delay=0)", solvers.Anderson(m=5, delay=0), EPS))
    for m in (2, 5, 10):
        out.append((f"Broyden(m={m})", B(m=m), EPS))
    out += [
        ("Broyden(m=5,growth=inf)", B(m=5, growth=float("inf")), EPS),
        ("Broyden(m=5,delay=0)", B(m=5, delay=0), EPS),
        ("eps=1: Anderson(m=2,delay=0)", solvers.Anderson(m=2, delay=0), 1.0),
        ("eps=1: Broyden(m=2)", B(m=2), 1.0),
        ("eps=1: Broyden(m=5)", B(m=5), 1.0),
        ("eps=1: Broyden(m=5,delay=0)", B(m=5, delay=0), 1.0),
    ]
    out += [
        (f"Euler(dt={EPS})", solvers.Euler(dt=EPS), EPS),
        ("Euler(dt=0.9)", solvers.Euler(dt=0.9), EPS),
        (f"RK4(dt={EPS})", solvers.RK4(dt=EPS), EPS),
        ("RK4(dt=1.0)", solvers.RK4(dt=1.0), EPS),
        ("Dopri5", solvers.Dopri5(dt0=EPS), EPS),
    ]
    return out


@dataclass
class Solve:
    """What one contender did (summed over its stages)."""

    state: np.ndarray
    n_iter: np.ndarray
    nfev: int
    nfev_block: int
    converged: np.ndarray
    failed: np.ndarray
    n_fallback: np.ndarray | None = None


def solve(case: Case, meth: Any, atol: float, max_iter: int, eps: float = EPS) -> Solve:
    """Run one contender on the ``eps``-map from the case's start to ``atol`` (ODE methods:
    ``atol / eps``)."""
    net, x, s0 = case.net, case.x, case.s0
    n0, nf0 = 0, 0
    if isinstance(meth, tuple) and meth[0] == "atol":  # its own tolerance, not the target
        atol, meth = meth[1], meth[2]
    if isinstance(meth, tuple):  # two stages: HYBRID_STEPS plain steps, then the method
        pre = free_phase(net, x, Dynamics(T=HYBRID_STEPS, eps=EPS, method="fixed"), s0=s0)
        s0, n0, nf0, meth = pre.state, HYBRID_STEPS, pre.result.nfev, meth[1]
    is_ode = isinstance(meth, solvers.Euler | solvers.RK4 | solvers.Dopri5)
    dyn = Dynamics(
        T=case.T,
        eps=eps,
        method=meth,
        fixed_steps=False,
        atol=atol / EPS if is_ode else atol,
        max_iter=max_iter,
    )
    res = free_phase(net, x, dyn, s0=s0).result
    return Solve(
        np.ascontiguousarray(res.x),
        res.n_iter + n0,
        res.nfev + nf0,
        res.nfev_block,
        res.converged,
        res.failed,
        res.n_fallback,
    )


def timed(fn, repeat: int):
    """(result of the last call, median seconds over ``repeat`` calls)."""
    times, res = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return res, statistics.median(times)


def reference_state(case: Case, s_T: np.ndarray) -> np.ndarray:
    """The limit of the fixed path's own trajectory: Picard continued from ``s_T`` in a
    float64 copy of the network to residual 1e-6 (up to 20000 more steps)."""
    net = case.net
    net64 = init_network(net.sizes, kind=net.kind, activation=net.activation, dtype="float64")
    for l, (W, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        net64.weights[l][...] = W
        net64.biases[l][...] = b
    dyn = Dynamics(T=1, eps=EPS, method="picard", fixed_steps=False, atol=1e-6, max_iter=20000)
    ph = free_phase(net64, case.x.astype(np.float64), dyn, s0=s_T.astype(np.float64))
    return ph.state


def minibatch_max(n_iter: np.ndarray, size: int = MINIBATCH) -> float:
    """Mean over consecutive minibatches of ``size`` samples of the slowest one's iterations."""
    n = np.asarray(n_iter)
    return float(np.mean([n[i : i + size].max() for i in range(0, n.shape[0], size)]))


def predictions(net: Network, s: np.ndarray) -> np.ndarray:
    return np.argmax(s[:, int(net.offsets[-2]) : int(net.offsets[-1])], axis=1)


def run_case(
    case: Case,
    repeat: int,
    target: str,
    max_iter: int,
    only: tuple[str, ...] = (),
    fast_atols: tuple[float, ...] = (FAST_ATOL,),
) -> list[str]:
    """Table rows of one case (of the contenders whose label starts with one of ``only``,
    or all)."""
    net, x, T = case.net, case.x, case.T
    fixed_dyn = Dynamics(T=T, eps=EPS, method="fixed")
    free_phase(net, x, Dynamics(T=2, eps=EPS, method="fixed"), s0=case.s0)  # warm-up
    ph_fixed, t_fixed = timed(lambda: free_phase(net, x, fixed_dyn, s0=case.s0), repeat)
    s_fixed = ph_fixed.state
    r_T = ph_fixed.result.residual[T]
    r_check = fp_residual(net, x, s_fixed)
    atol = float(np.max(r_T) if target == "max" else np.median(r_T))
    s_star = reference_state(case, s_fixed)
    pred_fixed = predictions(net, s_fixed)
    pred_star = predictions(net, s_star)
    lines = [
        f"## {case.name}: T={T}, eps={EPS}, batch {x.shape[0]}, start "
        f"{'zero' if case.s0 is None else 'persistent particles'}",
        f"# residual of s_T per sample: min {r_T.min():.3g}, median {np.median(r_T):.3g}, "
        f"max {r_T.max():.3g} (recomputed: max {r_check.max():.3g}); "
        f"target atol = {target} = {atol:.3g}",
        f"# fixed path: {t_fixed * 1e3:.1f} ms (median of {repeat}); "
        f"max|s_T - s*| = {np.abs(s_fixed - s_star).max():.2g}; "
        f"samples of the fixed path meeting atol: {(r_T <= atol).sum()}/{x.shape[0]}",
        f"{'method':42s} {'iters':>6s} {'mean':>6s} {'b20':>6s} {'evals':>11s} {'iters/T':>7s} "
        f"{'time/fixed':>10s} {'r_fp':>8s} {'|ds|':>8s} {'|ds*|':>8s} {'pred':>4s} "
        f"{'pred*':>5s} {'fb':>3s} ok",
        "-" * 141,
    ]
    lines.append(
        f"{'fixed (paper, T steps)':42s} {T:6d} {T:6.1f} {T:6.1f} {ph_fixed.result.nfev:11d} "
        f"{1.0:7.3f} {1.0:10.2f} {r_T.max():8.2g} {0.0:8.2g} "
        f"{np.abs(s_fixed - s_star).max():8.2g} {0:4d} "
        f"{int((pred_fixed != pred_star).sum()):5d} {0:3d} yes"
    )
    for label, meth, eps in methods(net, fast_atols):
        if only and not label.startswith(only):
            continue
        solve(case, meth, atol, 2, eps)  # compile / load the driver before timing
        res, t = timed(lambda meth=meth, eps=eps: solve(case, meth, atol, max_iter, eps), repeat)
        r_fp = fp_residual(net, x, res.state)
        it = res.n_iter
        evals = f"{res.nfev}" + (f"+{res.nfev_block}b" if res.nfev_block else "")
        ok = bool(res.converged.all() and not res.failed.any() and r_fp.max() <= atol * 1.0001)
        note = "" if ok else f" ({int(res.converged.sum())}/{len(it)} converged)"
        fb = 0 if res.n_fallback is None else int((np.asarray(res.n_fallback) > 0).sum())
        lines.append(
            f"{label:42s} {it.max():6d} {it.mean():6.1f} {minibatch_max(it):6.1f} "
            f"{evals:>11s} {it.max() / T:7.3f} "
            f"{t / t_fixed:10.2f} {r_fp.max():8.2g} {np.abs(res.state - s_fixed).max():8.2g} "
            f"{np.abs(res.state - s_star).max():8.2g} "
            f"{int((predictions(net, res.state) != pred_fixed).sum()):4d} "
            f"{int((predictions(net, res.state) != pred_star).sum()):5d} "
            f"{fb:3d} {'yes' if ok else 'NO'}{note}"
        )
    return lines


def machine() -> str:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for ln in out.splitlines():
            if ln.startswith("Model name:"):
                model = ln.split(":", 1)[1].strip()
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"{model}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} at start; numpy {np.__version__}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--target", choices=("max", "median"), default="max")
    p.add_argument("--max-iter-factor", type=int, default=3, help="max_iter = factor * T")
    p.add_argument("--nets", default="2h,3h")
    p.add_argument("--data-dir", default="/work/shared/data")
    p.add_argument(
        "--checkpoint",
        default="none",
        help="NET=PATH[,NET=PATH]: training checkpoints of 2h / 3h runs (bare PATH: 2h)",
    )
    p.add_argument("--T2h", type=int, default=150, help="T of the 2h net (paper's table: 100)")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated label prefixes: run only those contenders (default: all)",
    )
    p.add_argument("--no-init", action="store_true", help="skip the Glorot-init cases")
    p.add_argument(
        "--fast-atol",
        dest="fast_atol",
        default=f"{FAST_ATOL:g}",
        help="comma-separated tolerances of the --fast rows (own map; default %(default)s)",
    )
    a = p.parse_args(argv)

    data = load_dataset("mnist", data_dir=a.data_dir)
    x_test = np.ascontiguousarray(data.test.x[: a.batch], dtype=np.float32)
    ckpts: dict[str, list[str]] = {}
    for item in (v for v in a.checkpoint.split(",") if v and v != "none"):
        key, _, path = item.rpartition("=")
        key = key or "2h"
        if key not in PAPER:
            p.error(f"--checkpoint {item!r}: the net must be one of {', '.join(PAPER)}")
        if not os.path.isfile(path):
            p.error(f"--checkpoint {item!r}: no such file")
        ckpts.setdefault(key, []).append(path)
    cases: list[Case] = []
    for key in a.nets.split(","):
        sizes, T = PAPER[key]
        if key == "2h":
            T = a.T2h
        net = init_network(sizes, kind="hopfield", activation="hardsigmoid", seed=0)
        if not a.no_init:
            cases.append(
                Case(f"{key} Glorot init (seed 0), MNIST test[:{a.batch}]", net, x_test, None, T)
            )
        for path in ckpts.get(key, []):
            _cfg, arr = load_checkpoint(path)
            tnet = init_network(sizes, kind="hopfield", activation="hardsigmoid", seed=0)
            for l in range(len(tnet.weights)):
                tnet.weights[l][...] = arr[f"W{l}"]
                tnet.biases[l][...] = arr[f"b{l}"]
            tag = f"{key} trained ({path}, epoch {int(arr['epoch'])})"
            cases.append(Case(f"{tag}, MNIST test[:{a.batch}]", tnet, x_test, None, T))
            if "particles" in arr:
                x_train = np.ascontiguousarray(data.train.x[: a.batch], dtype=np.float32)
                s0 = np.ascontiguousarray(arr["particles"][: a.batch])
                cases.append(Case(f"{tag}, MNIST train[:{a.batch}]", tnet, x_train, s0, T))
            del arr
    print(f"# bench_deep_phases: {machine()}")
    print(
        "# iters: iterations of the slowest sample (mean: over samples; b20: slowest of each "
        "minibatch of 20, averaged); evals: nfev (+ block "
        "evaluations b); time/fixed: median wall time over the fixed path's, same run"
    )
    for case in cases:
        print()
        only = tuple(v for v in a.only.split(",") if v)
        fast_atols = tuple(float(v) for v in a.fast_atol.split(","))
        rows = run_case(case, a.repeat, a.target, a.max_iter_factor * case.T, only, fast_atols)
        print("\n".join(rows), flush=True)
    print(f"\n# load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
