"""Training throughput per preset, and how close it gets to the machine's matmul speed.

For each preset (float32, batch 20, the preset's T/K/estimator), on synthetic inputs of the
right size (the dynamics run a fixed number of steps, so the cost does not depend on the
pixel values):

- ``samples/s``: training samples per second of :meth:`eqprop.train.Trainer.train_epoch`
  (free phase, nudged phase(s), EP update, optimizer, persistent particles, bookkeeping);
- ``rule/s``: the same with ``rule.estimate`` + ``SGD.step`` alone in a bare loop, so
  ``overhead = 1 - samples/s / rule/s`` is what the trainer adds per minibatch;
- ``matmul``: the time of the bare ``numpy`` matrix products one step needs, same shapes,
  same dtype, measured in the same run: per dynamics iteration ``a_{l-1} @ W_l`` for every
  layer but the input one and ``a_{l+1} @ W_{l+1}.T`` for every hidden layer; per phase one
  ``x @ W_1`` (the input drive is constant within a phase); per phase that enters the
  update, ``a_{l-1}.T @ a_l`` for every layer. ``frac = matmul time / step time`` is the
  fraction of the machine's matmul throughput (at these shapes) that training reaches.
- ``GFLOP/s``: the floating-point operations of those products per second of training
  step, and ``of GEMM`` that rate over the rate of one large square float32 product (the
  machine's best matmul throughput, same run).

Usage::

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_train.py [--presets ...]
        [--seconds 3] [--threads 1]

Prints a table; record it in docs/training.rst with the machine and the command.

``--cli PRESET`` measures instead what a user of ``eqprop train`` gets: the CLI run as a
subprocess (``--limit``, ``--epochs``), back to back with no thread environment
variable and with ``OPENBLAS_NUM_THREADS=1``, alternating, ``--rounds`` times each; the
samples/s of the epochs after the first (which includes Numba compilation), median over
epochs and rounds. Issue #10's bar: no-variable / one-thread >= 0.9::

    NUMBA_CACHE_DIR=.numba_cache EQPROP_DATA_DIR=... .venv/bin/python \
        benchmarks/bench_train.py --cli scellier2017-1h --limit 2000 --epochs 3 --rounds 2

``--activations`` times, for each preset, the same training step (``Trainer.train_epoch``
on the same synthetic minibatches, float32, batch 20, the preset's settings) with each
activation in turn: hard sigmoid, sigmoid, shifted sigmoid, tanh, in a rotating order,
``--rounds`` times. It prints the median ms per step of each and the median over rounds
of its ratio to the hard sigmoid of the same round. Issue #11's bar: every ratio <= 1.3
with the ``ernoult2019-p1h`` settings::

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_train.py --activations \
        --presets ernoult2019-p1h scellier2017-1h --rounds 7 --seconds 8

``--baseline DIR`` compares against another checkout (e.g. ``git worktree add
../base COMMIT``): the ordinary measurement of each preset runs in a subprocess, once
importing ``eqprop`` from ``DIR`` and once from this checkout (``--root``; each with its
own ``NUMBA_CACHE_DIR`` under its tree), alternating which goes first, ``--rounds``
times; it prints the median samples/s of each and the median of the per-round ratios
(this / baseline). Issue #11's bar: >= 0.95 for the four MNIST presets::

    .venv/bin/python benchmarks/bench_train.py --baseline ../base --rounds 5 --seconds 4 \
        --presets scellier2017-1h ernoult2019-p1h scellier2017-2h scellier2017-3h
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time


def _threads_from_argv(argv: list[str]) -> str:
    """``--threads N`` must act before numpy/numba are imported (default 1)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


def _root_from_argv(argv: list[str]) -> str:
    """``--root DIR``: the checkout whose ``eqprop`` is imported (default: this one)."""
    for i, a in enumerate(argv):
        if a == "--root" and i + 1 < len(argv):
            return os.path.abspath(argv[i + 1])
        if a.startswith("--root="):
            return os.path.abspath(a.split("=", 1)[1])
    return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


_THREADS = _threads_from_argv(sys.argv[1:])
_ROOT = _root_from_argv(sys.argv[1:])
#: The environment this script was started with (before it sets the thread variables).
_ORIGINAL_ENV = dict(os.environ)
_THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import numpy as np  # noqa: E402

sys.path.insert(0, _ROOT)


def _synthetic(n_in: int, n_out: int, n: int, seed: int = 0):
    from eqprop.data import DatasetSplits, Split

    rng = np.random.default_rng(seed)

    def split(m: int) -> Split:
        x = np.ascontiguousarray(rng.random((m, n_in), dtype=np.float32))
        y = rng.integers(0, n_out, size=m).astype(np.int64)
        return Split(x, y, n_out)

    return DatasetSplits(split(n), split(20), split(20), name="synthetic")


def _matmul_flops(sizes: tuple[int, ...], B: int, n_iter_phase: list[int], n_upd: int) -> float:
    """Floating-point operations of the products one step needs (2 m n k per product)."""
    L = len(sizes) - 1
    per_iter = sum(2 * B * sizes[l - 1] * sizes[l] for l in range(2, L + 1))
    per_iter += sum(2 * B * sizes[l + 1] * sizes[l] for l in range(1, L))
    drive = 2 * B * sizes[0] * sizes[1]
    update = sum(2 * B * sizes[l - 1] * sizes[l] for l in range(1, L + 1))
    return float(sum(drive + n * per_iter for n in n_iter_phase) + n_upd * update)


def _preset_config(name: str, **changes):
    """Preset ``name``'s TrainConfig with ``changes`` (flat names), on this checkout's
    records (``preset.config``) or, with ``--root`` at a checkout from before them, on its
    flat record (``preset.settings``): ``--baseline`` compares the two."""
    from eqprop.presets import get_preset
    from eqprop.train import TrainConfig

    preset = get_preset(name)
    if hasattr(preset, "config"):
        return preset.config.replace(preset=name, **changes)
    return TrainConfig.from_dict({**preset.settings, "preset": name}).replace(**changes)


def _flat(cfg) -> dict:
    """The settings of ``cfg`` by flat name (either version of TrainConfig)."""
    if hasattr(cfg, "to_flat"):
        return cfg.to_flat()
    return dataclasses.asdict(cfg)


def _time_matmuls(cfg, net, n_iter_phase: list[int], n_update_phases: int, reps: int) -> float:
    """Seconds per step of the bare products (see module docstring)."""
    dt = np.dtype(_flat(cfg)["dtype"])
    sizes = cfg.sizes
    B = _flat(cfg)["batch_size"]
    L = len(sizes) - 1
    rng = np.random.default_rng(1)
    acts = [rng.random((B, n)).astype(dt) for n in sizes]
    Ws = [np.ascontiguousarray(W) for W in net.weights]
    outs_f = [np.empty((B, sizes[l]), dt) for l in range(L + 1)]
    outs_g = [np.empty((sizes[l - 1], sizes[l]), dt) for l in range(1, L + 1)]

    def one_step() -> None:
        for n_it in n_iter_phase:
            np.matmul(acts[0], Ws[0], out=outs_f[1])  # input drive, once per phase
            for _ in range(n_it):
                for l in range(2, L + 1):
                    np.matmul(acts[l - 1], Ws[l - 1], out=outs_f[l])
                for l in range(1, L):
                    np.matmul(acts[l + 1], Ws[l].T, out=outs_f[l])
        for _ in range(n_update_phases):
            for l in range(1, L + 1):
                np.matmul(acts[l - 1].T, acts[l], out=outs_g[l - 1])

    one_step()
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(reps):
            one_step()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def _gemm_gflops(dtype: str, n: int = 1024) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def bench_preset(name: str, seconds: float, rounds: int = 3) -> dict[str, float | str]:
    """Interleave ``rounds`` measurements of trainer, bare rule loop and matmuls; keep
    the best of each (the machine is shared, so the minimum is the least disturbed)."""
    from eqprop.train import Trainer

    cfg = _preset_config(name, dtype="float32", batch_size=20, epochs=1, limit=None, output=None)
    sizes = cfg.sizes
    # warm-up on a tiny data set compiles everything and sizes the measurement
    warm = Trainer(cfg, _synthetic(sizes[0], sizes[-1], 40), quiet=True)
    warm.train_epoch()
    per_sample = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        warm.train_epoch()
        per_sample = min(per_sample, (time.perf_counter() - t0) / 40)
    per_round = seconds / rounds / 2
    n = max(100, min(20000, int(per_round / max(per_sample, 1e-7)) // 20 * 20))
    trainer = Trainer(cfg, _synthetic(sizes[0], sizes[-1], n), quiet=True)
    x, d = trainer.x_train, trainer.d_train
    rng = np.random.default_rng(0)
    n_b = n // 20
    flat = _flat(cfg)
    T, K = flat["T"], flat["K"]
    K_phases = [K, K] if flat.get("estimator") == "symmetric" else [K]
    reps = max(1, min(50, n_b))
    best_sps = best_rule = 0.0
    best_mm = float("inf")
    for _ in range(rounds):
        row = trainer.train_epoch()
        best_sps = max(best_sps, float(row["samples_per_second"]))
        t0 = time.perf_counter()
        for i in range(n_b):
            sl = slice(20 * i, 20 * i + 20)
            step = trainer.rule.estimate(trainer.net, x[sl], d[sl], trainer.dyn, rng=rng)
            trainer.optimizer.step(trainer.net, step.gradient)
        best_rule = max(best_rule, n_b * 20 / (time.perf_counter() - t0))
        best_mm = min(best_mm, _time_matmuls(cfg, trainer.net, [T, *K_phases], 2, reps))
    t_step = 20.0 / best_sps
    flops = _matmul_flops(sizes, 20, [T, *K_phases], 2)
    return {
        "preset": name,
        "arch": flat["architecture"],
        "T+K": f"{T}+{'+'.join(str(k) for k in K_phases)}",
        "samples": n,
        "samples/s": best_sps,
        "rule/s": best_rule,
        "overhead": 1.0 - best_sps / best_rule,
        "step ms": 1e3 * t_step,
        "matmul ms": 1e3 * best_mm,
        "frac": best_mm / t_step,
        "GFLOP/s": flops / t_step / 1e9,
    }


def _cli_samples_per_second(
    preset: str, limit: int, epochs: int, env: dict[str, str]
) -> list[float]:
    """samples/s of epochs 2.. of one ``eqprop train`` subprocess (progress lines)."""
    import re
    import subprocess
    import tempfile

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    env = {**env, "PYTHONPATH": os.pathsep.join([root, env.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "eqprop", "train", "--preset", preset, "--limit",
                str(limit), "--epochs", str(epochs), "-o", out, "--overwrite"]  # fmt: skip
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    rates = [float(m) for m in re.findall(r"epoch \d+/\d+ .* (\d+) samples/s", proc.stderr)]
    return rates[1:]


def cli_thread_bar(preset: str, limit: int, epochs: int, rounds: int) -> None:
    """Print the CLI's samples/s with no thread variable vs OPENBLAS_NUM_THREADS=1."""
    bare = {k: v for k, v in _ORIGINAL_ENV.items() if k not in _THREAD_VARS}
    cases = {"no variable": bare, "OPENBLAS_NUM_THREADS=1": {**bare, "OPENBLAS_NUM_THREADS": "1"}}
    rates: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, env in cases.items():
            rates[name] += _cli_samples_per_second(preset, limit, epochs, env)
    print(f"# eqprop train --preset {preset} --limit {limit} --epochs {epochs}, {rounds} "
          f"round(s), {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    med = {k: float(np.median(v)) for k, v in rates.items()}
    for name, values in rates.items():
        print(f"{name:>24}: {med[name]:8.0f} samples/s (epochs 2..: {values})")
    ratio = med["no variable"] / med["OPENBLAS_NUM_THREADS=1"]
    print(f"{'ratio':>24}: {ratio:8.2f} (bar >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")


ACTIVATIONS = ("hardsigmoid", "sigmoid", "shifted-sigmoid", "tanh")


def activation_costs(name: str, seconds: float, rounds: int) -> dict[str, tuple[float, float]]:
    """``{activation: (median ms per step, median ratio to the hard sigmoid)}`` of the
    training step with the settings of preset ``name`` (see module docstring)."""
    from eqprop.train import Trainer

    base = _preset_config(name, dtype="float32", batch_size=20, epochs=1, limit=None, output=None)
    sizes = base.sizes

    def trainer(act: str, n: int) -> Trainer:
        cfg = base.replace(activation=act)
        return Trainer(cfg, _synthetic(sizes[0], sizes[-1], n), quiet=True)

    # compile every variant and size the blocks from the slowest of them
    per_step = 0.0
    for act in ACTIVATIONS:
        warm = trainer(act, 40)
        warm.train_epoch()
        t0 = time.perf_counter()
        warm.train_epoch()
        per_step = max(per_step, (time.perf_counter() - t0) / 2)
    n = max(40, min(20000, int(seconds / rounds / len(ACTIVATIONS) / per_step) * 20))
    trainers = {act: trainer(act, n) for act in ACTIVATIONS}
    ms: dict[str, list[float]] = {act: [] for act in ACTIVATIONS}
    ratios: dict[str, list[float]] = {act: [] for act in ACTIVATIONS}
    for k in range(rounds):
        order = ACTIVATIONS[k % 4 :] + ACTIVATIONS[: k % 4]
        t = {}
        for act in order:
            row = trainers[act].train_epoch()
            t[act] = 20e3 / float(row["samples_per_second"])
        for act in ACTIVATIONS:
            ms[act].append(t[act])
            ratios[act].append(t[act] / t["hardsigmoid"])
    return {a: (float(np.median(ms[a])), float(np.median(ratios[a]))) for a in ACTIVATIONS}


def print_activation_costs(presets: list[str], seconds: float, rounds: int) -> None:
    print(f"# training step per activation, float32, batch 20, {rounds} interleaved rounds, "
          f"median; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("preset | " + " | ".join(f"{a} ms" for a in ACTIVATIONS) + " | "
          + " | ".join(f"{a} / hard" for a in ACTIVATIONS[1:]))  # fmt: skip
    for name in presets:
        r = activation_costs(name, seconds, rounds)
        cells = [f"{r[a][0]:.3f}" for a in ACTIVATIONS]
        cells += [f"{r[a][1]:.2f}" for a in ACTIVATIONS[1:]]
        print(f"{name} | " + " | ".join(cells), flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


def _bench_in_subprocess(root: str, preset: str, seconds: float) -> dict[str, float | str]:
    """One :func:`bench_preset` of ``preset`` with ``eqprop`` imported from ``root``."""
    import json
    import subprocess

    env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(root, ".numba_cache")}
    env.pop("PYTHONPATH", None)
    argv = [sys.executable, os.path.abspath(__file__), "--root", root, "--json",
            "--presets", preset, "--seconds", str(seconds), "--threads", _THREADS]  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_with_baseline(baseline: str, presets: list[str], seconds: float, rounds: int) -> None:
    """Print samples/s of this checkout and of ``baseline``, alternating, and the ratio."""
    base = os.path.abspath(baseline)
    if not os.path.isdir(os.path.join(base, "eqprop")):
        raise SystemExit(f"--baseline {baseline}: no eqprop package in {base}")
    roots = {"baseline": base, "this": _ROOT}
    print(f"# baseline {base}, this {_ROOT}; {rounds} alternating rounds, {seconds} s each; "
          f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("preset | baseline samples/s | this samples/s | this / baseline | per-round ratios")
    for name in presets:
        rates: dict[str, list[float]] = {"baseline": [], "this": []}
        for k in range(rounds):
            for which in ("baseline", "this") if k % 2 == 0 else ("this", "baseline"):
                r = _bench_in_subprocess(roots[which], name, seconds)
                rates[which].append(float(r["samples/s"]))
        ratios = [t / b for t, b in zip(rates["this"], rates["baseline"], strict=True)]
        print(
            f"{name} | {np.median(rates['baseline']):.1f} | {np.median(rates['this']):.1f} | "
            f"{np.median(ratios):.3f} | {' '.join(f'{x:.2f}' for x in ratios)}",
            flush=True,
        )
    print(f"# load average after: {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--presets",
        nargs="+",
        default=[
            "digits",
            "scellier2017-1h",
            "ernoult2019-p1h",
            "scellier2017-2h",
            "scellier2017-3h",
        ],
    )
    p.add_argument("--seconds", type=float, default=3.0, help="target seconds per preset")
    p.add_argument(
        "--threads",
        default="1",
        help="numba/BLAS threads (set before import; default 1: the machine is shared)",
    )
    p.add_argument("--cli", metavar="PRESET", help="measure the CLI thread bar for PRESET")
    p.add_argument("--limit", type=int, default=2000, help="--cli: samples per split")
    p.add_argument("--epochs", type=int, default=3, help="--cli: epochs per run (>= 2)")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="--cli: runs per environment (default 2); --activations, --baseline: "
        "interleaved rounds (default 5)",
    )
    p.add_argument(
        "--activations",
        action="store_true",
        help="time the step of each preset with each activation, ratio to the hard sigmoid",
    )
    p.add_argument("--baseline", metavar="DIR", help="compare samples/s with the checkout DIR")
    p.add_argument("--root", metavar="DIR", help="import eqprop from checkout DIR")
    p.add_argument("--json", action="store_true", help="one JSON line per preset (no table)")
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.activations and args.baseline:
        p.error("--activations and --baseline are separate measurements: give one")
    if args.cli:
        cli_thread_bar(args.cli, args.limit, args.epochs, args.rounds or 2)
        return 0
    if args.activations:
        print_activation_costs(args.presets, args.seconds, args.rounds or 5)
        return 0
    if args.baseline:
        compare_with_baseline(args.baseline, args.presets, args.seconds, args.rounds or 5)
        return 0
    if args.json:
        import json

        for name in args.presets:
            print(json.dumps(bench_preset(name, args.seconds)), flush=True)
        return 0
    import numba

    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, numpy {np.__version__}, numba {numba.__version__}, "
        f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}, BLAS threads={_THREADS}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    gemm = _gemm_gflops("float32")
    print(f"# large float32 GEMM (1024^3): {gemm:.1f} GFLOP/s")
    cols = [
        "preset",
        "arch",
        "T+K",
        "samples",
        "samples/s",
        "rule/s",
        "overhead",
        "step ms",
        "matmul ms",
        "frac",
        "GFLOP/s",
        "of GEMM",
    ]
    print(" | ".join(cols))
    for name in args.presets:
        r = bench_preset(name, args.seconds)
        r["of GEMM"] = float(r["GFLOP/s"]) / gemm
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                v = f"{v:.3f}" if c in ("overhead", "frac", "of GEMM") else f"{v:.1f}"
            cells.append(str(v))
        print(" | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
