"""Training ``scellier2017-2h`` with the paper's fixed ``T`` against ``--fast``, back to
back, one epoch at a time (#16; a script, not a test).

Each run is trained in one-epoch chunks: epoch 1 is
``eqprop train --preset scellier2017-2h [--fast] --train-on-valid --epochs 1 --seed S -o
DIR`` (``--train-on-valid``: all 60,000 MNIST training images, test on the 10,000 test
images), every later epoch ``eqprop train --resume DIR/checkpoint.npz --epochs E -o DIR``
(an exact continuation). The chunks of the runs are interleaved (fast s0, fixed s0, fast
s1, fixed s1, then epoch 2 of each, ...) so that a change of the load of a shared
machine falls on every run alike. Each chunk is a child process; its CPU time (user +
system, :func:`resource.getrusage` of the children) and wall time are logged with the
load average to ``OUT/chunks.jsonl``. The training and evaluation times per epoch come
from each run's history (``train_time``, ``eval_time``, wall seconds).

``--report`` reads the log and the histories and prints, per run and epoch, the test
and training error, times, samples/s and free-phase sweeps, and for a few test-error
thresholds the cumulative CPU and wall time to the first epoch at or below each
threshold, and their ratio fixed / fast.

Run from the repository root (the environment of the project's notes)::

    python benchmarks/bench_train_fast_fixed.py --out runs/d16 --seeds 0,1 \\
        --epochs 60 --stop-at 07:28
    python benchmarks/bench_train_fast_fixed.py --out runs/d16 --report

Runs trained in one process each instead (``eqprop train --preset scellier2017-2h
[--fast] --train-on-valid --epochs 60 --seed S -o OUT/{fast,fixed}-sS``, e.g. each pinned
to a core with ``taskset``) are reported from their histories alone: ``--report`` on a
folder without ``chunks.jsonl``.

``--stop-at HH:MM`` (UTC): a chunk is not started if the previous chunk of the same
protocol, 1.2 times as long, would end after it. ``--limit N`` trains on the first N
images only (smoke tests).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PRESET = "scellier2017-2h"
PROTOCOLS = ("fast", "fixed")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _command(out: Path, protocol: str, seed: int, epoch: int, limit: int | None) -> list[str]:
    run_dir = out / f"{protocol}-s{seed}"
    base = [sys.executable, "-m", "eqprop", "train"]
    if epoch == 1:
        cmd = [*base, "--preset", PRESET, "--train-on-valid", "--epochs", "1"]
        cmd += ["--seed", str(seed), "-o", str(run_dir)]
        if protocol == "fast":
            cmd.insert(cmd.index("--train-on-valid"), "--fast")
        if limit is not None:
            cmd += ["--limit", str(limit)]
        return cmd
    ckpt = run_dir / "checkpoint.npz"
    return [*base, "--resume", str(ckpt), "--epochs", str(epoch), "-o", str(run_dir)]


def _deadline(stop_at: str | None) -> float:
    if stop_at is None:
        return float("inf")
    now = dt.datetime.now(dt.UTC)
    hh, mm = (int(x) for x in stop_at.split(":"))
    end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    return end.timestamp()


def run_chunks(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "chunks.jsonl"
    seeds = [int(s) for s in args.seeds.split(",")]
    deadline = _deadline(args.stop_at)
    last: dict[str, float] = {}
    done = {(p, s): 0 for p in PROTOCOLS for s in seeds}
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if rec["rc"] == 0:
                done[(rec["protocol"], rec["seed"])] = rec["epoch"]
                last[rec["protocol"]] = rec["wall"]
    for epoch in range(1, args.epochs + 1):
        for seed in seeds:
            for protocol in PROTOCOLS:
                if done[(protocol, seed)] >= epoch:
                    continue
                estimate = 1.2 * last.get(protocol, 0.0)
                if time.time() + estimate > deadline:
                    print(f"stop: {protocol} s{seed} epoch {epoch} would end after --stop-at")
                    return
                cmd = _command(out, protocol, seed, epoch, args.limit)
                load0 = os.getloadavg()[0]
                cpu0, t0 = _children_cpu(), time.perf_counter()
                start = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                with open(out / f"{protocol}-s{seed}.log", "a") as fh:
                    rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
                wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
                rec = {
                    "protocol": protocol,
                    "seed": seed,
                    "epoch": epoch,
                    "rc": rc,
                    "wall": wall,
                    "cpu": cpu,
                    "load_start": load0,
                    "load_end": os.getloadavg()[0],
                    "start": start,
                    "command": " ".join(cmd[1:]),
                }
                with open(log, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(json.dumps(rec), flush=True)
                if rc != 0:
                    raise SystemExit(f"chunk failed (rc {rc}): {' '.join(cmd)}")
                last[protocol] = wall


def _history(run_dir: Path) -> dict[str, list[float]]:
    import xarray as xr

    with xr.open_dataset(run_dir / "history.nc") as ds:
        names = ("test_error", "train_error", "train_time", "eval_time", "samples_per_second")
        rows = {k: [float(v) for v in ds[k].values] for k in names}
        rows["free_iterations"] = [float(v) for v in ds["free_iterations"].values]
    return rows


def _first_at_or_below(rows: list[tuple[float, ...]], threshold: float):
    """``(epoch, *times)`` of the first row ``(test error %, *cumulative times)`` whose
    test error is <= ``threshold``; None if no row is."""
    return next(((i + 1, *r[1:]) for i, r in enumerate(rows) if r[0] <= threshold), None)


def _trailing_means(errors: list[float], window: int) -> list[float]:
    """Mean of each epoch's test error and the ``window - 1`` before it (fewer at the
    start: epoch ``e`` < ``window`` averages epochs 1..e)."""
    return [
        sum(errors[max(0, e + 1 - window) : e + 1]) / (e + 1 - max(0, e + 1 - window))
        for e in range(len(errors))
    ]


def _windows(spec: str) -> list[tuple[int, int]]:
    """``"15-24,40-49"`` -> ``[(15, 24), (40, 49)]`` (epochs, 1-based, inclusive)."""
    out = []
    for part in filter(None, spec.split(",")):
        try:
            lo, hi = (int(x) for x in part.split("-"))
        except ValueError:
            lo, hi = 0, 0
        if not 1 <= lo <= hi:
            raise ValueError(f"--windows: {part!r} is not FIRST-LAST with 1 <= FIRST <= LAST")
        out.append((lo, hi))
    return out


def _summary(
    name: str,
    errors: list[float],
    epoch_s: list[float],
    samples_s: list[float],
    windows: list[tuple[int, int]],
) -> str:
    """One row of the per-run summary: epochs, last and best test error %, the mean test
    error over each window (``-`` where the run has not trained all of it), mean seconds
    and samples/s per epoch from epoch 2 (epoch 1 is the paper's path in both protocols),
    total seconds."""
    best = min(range(len(errors)), key=errors.__getitem__)
    means = [
        f"{sum(errors[lo - 1 : hi]) / (hi - lo + 1):.2f}" if len(errors) >= hi else "-"
        for lo, hi in windows
    ]
    later = slice(1, None) if len(errors) > 1 else slice(None)
    per_epoch = sum(epoch_s[later]) / len(epoch_s[later])
    rate = sum(samples_s[later]) / len(samples_s[later])
    return (
        f"{name:9s} {len(errors):6d}  {errors[-1]:6.2f}  {errors[best]:5.2f} (ep {best + 1:2d})  "
        f"{' / '.join(means) or '-':>15s}  {per_epoch:9.1f}  {rate:9.0f}  {sum(epoch_s):8.0f}"
    )


def report_histories(args: argparse.Namespace) -> None:
    """Report runs trained in one process each (``eqprop train ... --epochs 60 -o
    OUT/P-sS``, no ``chunks.jsonl``): the times are the histories' training plus
    evaluation wall seconds per epoch. A threshold the fixed-T run has not reached in
    the epochs it trained gives a lower bound on the ratio (its time so far)."""
    out = Path(args.out)
    runs = sorted(
        (
            (d.name.rsplit("-s", 1)[0], int(d.name.rsplit("-s", 1)[1]))
            for d in out.iterdir()
            if (d / "history.nc").exists() and d.name.rsplit("-s", 1)[0] in PROTOCOLS
        ),
        key=lambda r: (r[1], r[0]),
    )
    if not runs:
        raise SystemExit(f"no OUT/fast-sS or OUT/fixed-sS with a history.nc in {out}")
    cum: dict[tuple[str, int], list[tuple[float, float]]] = {}
    smooth: dict[tuple[str, int], list[tuple[float, float]]] = {}
    windows = _windows(args.windows)
    summaries = []
    print("run        ep  test%  train%  train_s  eval_s  samples/s  free_sw  cum_wall_s")
    for run in runs:
        hist = _history(out / f"{run[0]}-s{run[1]}")
        errors = [100 * err for err in hist["test_error"]]
        epoch_s = [t + v for t, v in zip(hist["train_time"], hist["eval_time"])]
        total = 0.0
        cum[run] = []
        for e, err in enumerate(errors):
            total += epoch_s[e]
            cum[run].append((err, total))
            print(
                f"{run[0]:5s} s{run[1]}  {e + 1:2d}  {err:5.2f}  "
                f"{100 * hist['train_error'][e]:6.2f}  {hist['train_time'][e]:7.1f}  "
                f"{hist['eval_time'][e]:6.1f}  {hist['samples_per_second'][e]:9.0f}  "
                f"{hist['free_iterations'][e]:7.1f}  {total:10.0f}"
            )
        means = _trailing_means(errors, args.smooth)
        smooth[run] = [(m, t) for m, (_, t) in zip(means, cum[run])]
        summaries.append(
            _summary(f"{run[0]} s{run[1]}", errors, epoch_s, hist["samples_per_second"], windows)
        )
    print(
        "\nrun        epochs  last %  best % (epoch)  mean % "
        + ("/".join(f"{lo}-{hi}" for lo, hi in windows) or "")
        + "  s/epoch 2-  samples/s   total s"
    )
    print("\n".join(summaries))
    print("\nwall time (training + evaluation) to the first epoch at or below a test error")
    _print_crossings(runs, cum, args.thresholds)
    if args.plot:
        figure(args.plot, cum, float(args.thresholds.split(",")[-1]))
        print(f"\nfigure: {args.plot}")
    if args.smooth > 1:
        print(
            f"\nthe same for the mean test error of the last {args.smooth} epochs "
            "(an epoch's error and the ones before it)"
        )
        _print_crossings(runs, smooth, args.thresholds)


def figure(path: str, cum: dict[tuple[str, int], list[tuple[float, float]]], mark: float):
    """Test error per epoch of every run against the epoch (left) and the cumulative
    wall hours (right), a dashed line at the test error ``mark`` (%); PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.6), sharey=True, constrained_layout=True)
    colours = {"fast": "tab:blue", "fixed": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    for (protocol, seed), pts in sorted(cum.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        err = [e for e, _ in pts]
        hours = [t / 3600 for _, t in pts]
        style = dict(color=colours.get(protocol, "k"), ls=styles[seed % len(styles)], lw=1.2)
        label = f"{'--fast' if protocol == 'fast' else 'fixed T'}, seed {seed}"
        a1.plot(range(1, len(err) + 1), err, label=label, **style)
        a2.plot(hours, err, **style)
    for ax in (a1, a2):
        ax.axhline(mark, color="0.5", lw=0.8, ls="--")
        ax.set_ylim(1.8, 4.0)
        ax.grid(alpha=0.3)
    a1.set_xlabel("epoch")
    a1.set_ylabel("test error (%)")
    a1.legend(frameon=False, fontsize=8)
    a2.set_xlabel("wall time, training + evaluation (hours)")
    a2.set_xscale("log")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _print_crossings(runs, cum, thresholds: str) -> None:
    """Per seed and threshold: the first epoch at or below it in each protocol, its
    cumulative wall seconds and the ratio fixed / fast (a lower bound where the fixed
    run has not got there in the epochs it trained)."""
    for seed in sorted({r[1] for r in runs}):
        for thr in (float(t) for t in thresholds.split(",")):
            fast, fixed = cum.get(("fast", seed), []), cum.get(("fixed", seed), [])
            hf, hx = _first_at_or_below(fast, thr), _first_at_or_below(fixed, thr)
            cells = [
                "fast " + (f"ep {hf[0]}, {hf[1]:.0f} s" if hf else f"not in {len(fast)} ep"),
                "fixed " + (f"ep {hx[0]}, {hx[1]:.0f} s" if hx else f"not in {len(fixed)} ep"),
            ]
            ratio = ""
            if hf and hx:
                ratio = f"  fixed/fast {hx[1] / hf[1]:.2f}x (epochs {hx[0]}/{hf[0]})"
            elif hf and fixed:
                ratio = f"  fixed/fast > {fixed[-1][1] / hf[1]:.2f}x (fixed not there yet)"
            print(f"s{seed} <= {thr:5.2f} %: " + "; ".join(cells) + ratio)


def report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if not (out / "chunks.jsonl").exists():
        report_histories(args)
        return
    if args.windows or args.smooth > 1 or args.plot:
        raise ValueError(
            "--windows, --smooth and --plot report runs trained in one process each (a "
            f"folder without chunks.jsonl); {out} holds a chunk log"
        )
    chunks = [json.loads(x) for x in (out / "chunks.jsonl").read_text().splitlines()]
    chunks = [c for c in chunks if c["rc"] == 0]
    runs = sorted({(c["protocol"], c["seed"]) for c in chunks}, key=lambda r: (r[1], r[0]))
    cum: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    print(
        "run        ep  test%  train%  train_s  eval_s  samples/s  free_sw  "
        "chunk_wall  chunk_cpu  load"
    )
    for run in runs:
        hist = _history(out / f"{run[0]}-s{run[1]}")
        own = sorted(
            (c for c in chunks if (c["protocol"], c["seed"]) == run), key=lambda c: c["epoch"]
        )
        wall = cpu = 0.0
        cum[run] = []
        for c in own:
            e = c["epoch"] - 1
            if e >= len(hist["test_error"]):
                continue
            wall += c["wall"]
            cpu += c["cpu"]
            cum[run].append((100 * hist["test_error"][e], cpu, wall))
            print(
                f"{run[0]:5s} s{run[1]}  {c['epoch']:2d}  {100 * hist['test_error'][e]:5.2f}  "
                f"{100 * hist['train_error'][e]:6.2f}  {hist['train_time'][e]:7.1f}  "
                f"{hist['eval_time'][e]:6.1f}  {hist['samples_per_second'][e]:9.0f}  "
                f"{hist['free_iterations'][e]:7.1f}  {c['wall']:10.1f}  {c['cpu']:9.1f}  "
                f"{c['load_start']:.1f}-{c['load_end']:.1f}"
            )
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print("\ntime to the first epoch at or below a test error (cumulative chunk CPU / wall s)")
    for seed in sorted({r[1] for r in runs}):
        for thr in thresholds:
            cells = []
            hit = {}
            for protocol in PROTOCOLS:
                rows = cum.get((protocol, seed), [])
                first = _first_at_or_below(rows, thr)
                hit[protocol] = first
                cells.append(
                    f"{protocol} "
                    + (
                        "not reached"
                        if first is None
                        else f"ep {first[0]}, {first[1]:.0f} / {first[2]:.0f}"
                    )
                )
            ratio = ""
            if hit["fast"] and hit["fixed"]:
                ratio = (
                    f"  fixed/fast: CPU {hit['fixed'][1] / hit['fast'][1]:.2f}x, "
                    f"wall {hit['fixed'][2] / hit['fast'][2]:.2f}x, "
                    f"epochs {hit['fixed'][0]}/{hit['fast'][0]}"
                )
            print(f"s{seed} <= {thr:5.2f} %: " + "; ".join(cells) + ratio)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder of the runs (and of chunks.jsonl)")
    p.add_argument("--seeds", default="0,1", help="seeds to train, comma-separated (default: 0,1)")
    p.add_argument("--epochs", type=int, default=60, help="epochs per run (default: 60)")
    p.add_argument(
        "--stop-at",
        dest="stop_at",
        help="HH:MM UTC after which no chunk that would end later starts (default: no limit)",
    )
    p.add_argument(
        "--limit", type=int, help="train on the first N images only (default: all of them)"
    )
    p.add_argument(
        "--report", action="store_true", help="report the runs in --out (default: train them)"
    )
    p.add_argument(
        "--thresholds",
        default="10,8,6,5,4,3",
        help="test errors in %% to report the first crossing of (default: 10,8,6,5,4,3)",
    )
    p.add_argument(
        "--windows",
        default="",
        help="with --report on one-process runs: epoch windows FIRST-LAST,... whose mean "
        "test error the summary prints, e.g. 15-24,40-49,51-60 (default: none)",
    )
    p.add_argument(
        "--smooth",
        type=int,
        default=1,
        help="with --report on one-process runs: also report the first epoch at which the "
        "mean test error of the last N epochs is at or below each threshold (default: 1, "
        "single epochs only)",
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="with --report on one-process runs: write test error against epoch and wall "
        "time for every run to this PNG, with a line at the last --thresholds value "
        "(default: no figure)",
    )
    args = p.parse_args(argv)
    if args.smooth < 1:
        p.error(f"--smooth takes a number of epochs >= 1, not {args.smooth}")
    if not args.report and (args.windows or args.smooth > 1 or args.plot):
        p.error("--windows, --smooth and --plot go with --report")
    if not args.report:
        run_chunks(args)
        return
    try:  # the report's refusals of its options, as usage errors
        _windows(args.windows)
        report(args)
    except ValueError as err:
        p.error(str(err))


if __name__ == "__main__":
    main()
