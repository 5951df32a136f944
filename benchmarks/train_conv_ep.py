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
untrained network (``--probe-end``: also of the trained one), the free phase's fast
methods against ``--T`` fixed steps (:func:`probe`: iterations, CPU time, residual,
distance to the T-step state, predictions kept). The same
run from the command line is ``eqprop train --sizes 1x28x28-c32k5-p2-c64k5-p2-10 ...``
(``--preset ernoult2019-pconv``).

``--curve-every N`` adds, within each epoch, a row every N training samples to
``--curve-out`` (test error on the first ``--curve-test`` test images, training error and
mean free iterations since the previous row, wall and CPU seconds), for runs whose
epoch does not fit the session; ``--output DIR`` keeps the Trainer's checkpoint and
history after every epoch (``eqprop train --resume DIR/checkpoint.npz`` continues a run
on every image: ``--train-on-valid --train 60000 --test 10000`` is the preset's data).
``--probe-checkpoint FILE`` only probes a stored network.

Ernoult et al. 2019's P-conv (their Table 1 command: ``--C_tab 64 32 1 --size_tab 10
--lr_tab 0.015 0.035 0.15 --epochs 40 --T 200 --Kmax 10 --beta 0.4``, hard sigmoid)::

    python benchmarks/train_conv_ep.py --net pconv --train 4000 --epochs 3
    # the preset's protocol on all 60,000 images, free phase to 1e-4, a curve every 5,000
    python benchmarks/train_conv_ep.py --net pconv --train 60000 --train-on-valid \\
        --test 10000 --epochs 1 --atol 1e-4 --curve-every 5000 --curve-test 1000 \\
        --curve-out runs/pconv60k_curve.csv --output runs/pconv60k --out runs/pconv60k.csv

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
        "--free-method",
        default="picard",
        help="solver of a free phase run to --atol: picard | gauss-seidel-parity (red-black)",
    )
    p.add_argument(
        "--train-on-valid",
        action="store_true",
        help="train on the training and validation splits together (MNIST: 60,000 images)",
    )
    p.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        default=[0.15, 0.035, 0.015],
        help="one rate per coupling, input side first",
    )
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--probe",
        type=int,
        default=0,
        help="measure the free phase's fast methods against T steps on N batches first",
    )
    p.add_argument(
        "--probe-checkpoint",
        default=None,
        help="only probe (--probe N batches, default 3) the network of this checkpoint "
        "(a run folder's checkpoint.npz or within_epoch.npz) on test images 2000 on, and exit",
    )
    p.add_argument(
        "--probe-end",
        action="store_true",
        help="also probe after the last epoch (the trained network)",
    )
    p.add_argument("--out", default=None)
    p.add_argument(
        "--curve-every",
        type=int,
        default=0,
        help="every N training samples within an epoch: test error on --curve-test images, "
        "running train error and mean free iterations, a row of --curve-out",
    )
    p.add_argument("--curve-test", type=int, default=2000, help="first N test images")
    p.add_argument("--curve-out", default=None, help="CSV of the --curve-every rows")
    p.add_argument(
        "--heartbeat",
        type=int,
        default=0,
        help="print a line every N minibatches (samples done, wall and CPU seconds)",
    )
    p.add_argument(
        "--output",
        default=None,
        help="run folder: the Trainer writes checkpoint.npz and history.nc after every epoch",
    )
    return p.parse_args()


def config(a) -> TrainConfig:
    """The TrainConfig of the flags (a prototypical net ignores --eps)."""
    free = {}
    if a.atol is not None:
        free = dict(free_method=a.free_method, atol=a.atol, max_iter=a.T)
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
        output=a.output,
        train_on_valid=a.train_on_valid,
        **free,
    ).validate()


def probe(cfg: TrainConfig, net, x, n: int, tols=(1e-3, 1e-4), steps=(60, 80, 100, 120, 150)):
    """The free phase's fast methods against the papers' ``T`` fixed steps, on ``n``
    batches of ``x``.

    Reference: ``T`` steps of the map on :class:`eqprop.graph.conv_kernels.FastMap`
    (the state :math:`s_T` and its residual :math:`\\max|g(s_T) - s_T|`). Rows: fewer
    fixed steps on the fast map; the fast map stopped when the batch's largest residual
    meets each tolerance (:meth:`~eqprop.graph.conv_kernels.FastMap.relax` with
    ``atol``); Picard and red-black parity sweeps (``gauss-seidel-parity``) through
    :mod:`solvers` on the general graph kernels, stopped per sample at each tolerance (at
    most ``T`` iterations), and the same through ``path="auto"`` (what ``--atol`` /
    ``--free-method`` train with: the conv fast map where the library runs these solvers
    on it, else the general kernels); ``T`` fixed steps on the general kernels. Columns:
    iterations (mean over samples; red-black: sweeps), the largest per-batch mean, CPU
    milliseconds per sample (``time.process_time``, one thread), the largest residual of
    the returned states (the fast map's :meth:`map`), the largest :math:`|s - s_T|` and
    the fraction of predictions (argmax of the output layer) equal to :math:`s_T`'s.
    Compilation is excluded (one warm-up call each).
    """
    from eqprop import Dynamics, clamp, free_phase

    B = cfg.run.batch_size
    phases = cfg.dynamics.phases
    T = phases.T
    fm = FK.FastMap(net, B)
    kw = dict(eps=phases.eps, nudge=phases.nudge)
    lo, hi = net.offsets[net.output_layer.name]
    rows: dict[str, dict[str, list[float]]] = {}

    def add(label, it, cpu, s, ref, res):
        r = rows.setdefault(label, {k: [] for k in ("it", "cpu", "res", "gap", "same")})
        r["it"].append(float(it))
        r["cpu"].append(cpu)
        r["res"].append(res)
        r["gap"].append(float(np.max(np.abs(s - ref))))
        same = np.argmax(s[:, lo:hi], axis=1) == np.argmax(ref[:, lo:hi], axis=1)
        r["same"].append(float(np.mean(same)))

    def resid(s):
        return float(np.max(np.abs(fm.map(np.ascontiguousarray(s, dtype=fm.dtype), **kw) - s)))

    general = [
        (
            f"{path} {m} atol={t:g}",
            path,
            Dynamics(method=m, atol=t, max_iter=T, fixed_steps=False, **kw),
        )
        for path in ("general", "auto")
        for m in ("picard", "gauss-seidel-parity")
        for t in tols
    ]
    general.append((f"general fixed T={T}", "general", Dynamics(method="fixed", T=T, **kw)))
    for k in range(n):
        xb = np.ascontiguousarray(x[k * B : (k + 1) * B])
        fm.set_input(xb)
        fm.relax(None, 2, **kw)  # warm
        c0 = time.process_time()
        ref = fm.relax(None, T, **kw)[0].copy()
        add(f"fast fixed T={T}", T, time.process_time() - c0, ref, ref, resid(ref))
        for t in steps:
            c0 = time.process_time()
            st = fm.relax(None, t, **kw)[0]
            add(f"fast fixed T={t}", t, time.process_time() - c0, st, ref, resid(st))
        for tol in tols:
            c0 = time.process_time()
            st, it, _ = fm.relax(None, T, atol=tol, **kw)
            add(f"fast atol={tol:g} (batch max)", it, time.process_time() - c0, st, ref, resid(st))
        for label, path, dyn in general:
            free_phase(net, clamp(net, xb, path=path), dyn)  # warm: compilation
            cx = clamp(net, xb, path=path)
            c0 = time.process_time()
            ph = free_phase(net, cx, dyn)
            cpu = time.process_time() - c0
            st = np.asarray(ph.state)
            add(label, np.mean(ph.result.n_iter), cpu, st, ref, resid(st))
    print(f"# probe: free phase against T={T} fixed steps, {n} batches of {B}")
    print(
        "| method | iterations | max | CPU ms/sample | residual | max abs(s - s_T) "
        "| same prediction |"
    )
    for label, r in rows.items():
        print(
            f"| {label} | {np.mean(r['it']):.1f} | {np.max(r['it']):.0f} | "
            f"{1e3 * np.mean(r['cpu']) / B:.1f} | {np.max(r['res']):.1e} | "
            f"{np.max(r['gap']):.1e} | {100 * np.mean(r['same']):.0f} % |",
            flush=True,
        )


class _Counting:
    """The Trainer's rule, counting what the minibatch loop sees: samples, wrong
    predictions at the free state, free-phase iterations (a proxy; the rule is unchanged)."""

    def __init__(self, rule):
        self._rule = rule
        self.samples = self.wrong = self.iterations = 0

    def __getattr__(self, name):
        return getattr(self._rule, name)

    def estimate(self, net, x, d, *args, **kwargs):
        step = self._rule.estimate(net, x, d, *args, **kwargs)
        self.samples += x.shape[0]
        self.wrong += int(np.count_nonzero(step.prediction.argmax(1) != np.asarray(d).argmax(1)))
        self.iterations += int(np.sum(step.free.result.n_iter))
        return step


def monitor(trainer: Trainer, batch: int, heartbeat: int, every: int, n_test: int, out):
    """A progress callback for the Trainer's minibatch loop.

    Every ``heartbeat`` minibatches a line (epoch, samples, wall and CPU seconds since the
    epoch's first minibatch ended); every ``every`` training samples within an epoch
    (``every`` a multiple of the batch), the test error on the first ``n_test`` test
    images (:meth:`Trainer.evaluate`, the evaluation's free phase, from zero) and, over
    the samples since the previous row, the training error at the free states and the
    mean free iterations: a row appended to the CSV ``out``; with a run folder, the
    Trainer's checkpoint is also written there as ``within_epoch.npz`` (the weights after
    those samples, its epoch counter still the last finished epoch: load it for a probe,
    do not ``--resume`` it, which would repeat the epoch's first samples). The weights are
    not touched, the training generator is not drawn from: the run is the same as without.
    """
    counting = _Counting(trainer.rule) if every else None
    if counting is not None:
        trainer.rule = counting
    test = trainer.data.test.head(n_test)
    state = {"epoch": -1, "k": 0, "t0": 0.0, "c0": 0.0, "seen": 0}
    t_run, c_run = time.perf_counter(), time.process_time()

    def update(n: int = 1) -> None:
        if state["epoch"] != trainer.epoch:  # a new epoch: restart the clocks
            state.update(epoch=trainer.epoch, k=0, t0=time.perf_counter(), c0=time.process_time())
        state["k"] += n
        if heartbeat and state["k"] % heartbeat == 0:
            print(
                f"#   epoch {trainer.epoch + 1}: {state['k'] * batch} samples, "
                f"{time.perf_counter() - state['t0']:.0f} s wall, "
                f"{time.process_time() - state['c0']:.0f} CPU s",
                flush=True,
            )
        if counting is not None and (state["k"] * batch) % every == 0:
            state["seen"] += counting.samples
            c0 = time.process_time()
            err, _ = trainer.evaluate(test, track_outputs=False, name="test")
            row = dict(
                epoch=trainer.epoch + 1,
                samples_seen=state["seen"],
                train_error=counting.wrong / counting.samples,
                test_error=err,
                test_images=n_test,
                mean_free_iterations=round(counting.iterations / counting.samples, 1),
                wall_seconds=round(time.perf_counter() - t_run, 1),
                cpu_seconds=round(time.process_time() - c_run, 1),
                test_cpu_seconds=round(time.process_time() - c0, 1),
            )
            counting.samples = counting.wrong = counting.iterations = 0
            if trainer.config.run.output:  # the weights so far (a probe's, not --resume's)
                trainer.save_checkpoint(Path(trainer.config.run.output) / "within_epoch.npz")
            print(
                f"# curve: {row['samples_seen']} samples seen, test error "
                f"{100 * err:.2f} % ({n_test} images), train error "
                f"{100 * row['train_error']:.2f} %, free iterations "
                f"{row['mean_free_iterations']}, {row['wall_seconds']:.0f} s wall, "
                f"{row['cpu_seconds']:.0f} CPU s",
                flush=True,
            )
            if out:
                new = not Path(out).exists()
                with open(out, "a", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(row))
                    if new:
                        w.writeheader()
                    w.writerow(row)

    return update


def probe_checkpoint(a) -> None:
    """:func:`probe` on the network stored in ``a.probe_checkpoint``, on the test images
    from 2000 on (past those the runs evaluate on)."""
    from eqprop.train import load_checkpoint

    cfg, _ = load_checkpoint(a.probe_checkpoint)
    data = load_dataset(cfg.data.dataset)
    n = a.probe or 3
    B = cfg.run.batch_size
    small = type(data)(
        data.train.head(B),
        data.valid.head(1),
        data.test.head(1),
        *[getattr(data, f.name) for f in dataclasses.fields(data)][3:],
    )
    trainer = Trainer.from_checkpoint(
        a.probe_checkpoint, data=small, overrides={"output": None}, quiet=True
    )
    x = np.ascontiguousarray(data.test.x[2000 : 2000 + n * B], dtype=trainer.dtype)
    print(
        f"# {a.probe_checkpoint}: {cfg.network.architecture}, after epoch {trainer.epoch} "
        f"and {trainer.optimizer.n_steps} minibatch steps; test images 2000-{1999 + n * B}"
    )
    probe(cfg, trainer.net, x, n)


def main():
    a = parse()
    if a.curve_every and a.curve_every % a.batch:
        raise ValueError(f"--curve-every {a.curve_every} is not a multiple of --batch {a.batch}")
    if a.probe_checkpoint:
        probe_checkpoint(a)
        return
    cfg = config(a)
    data = load_dataset(a.dataset)
    n_train, n_valid = data.train.x.shape[0], data.valid.x.shape[0]
    most = n_train + (n_valid if a.train_on_valid else 0)
    if a.train > most:
        raise ValueError(
            f"--train {a.train}: the training split has {n_train} images"
            + (" (and the validation split" if a.train_on_valid else " (--train-on-valid adds")
            + f" {n_valid})"
        )
    # with --train-on-valid the Trainer appends the validation split given here (the
    # images past the training split's) to the training images, as the presets do, so
    # that `eqprop train --resume` of a run on every image (--train 60000 --test 10000)
    # loads the same data from the config
    k = max(a.train - n_train, 0) if a.train_on_valid else 1
    valid = type(data.valid)(data.valid.x[:k], data.valid.labels[:k], data.valid.n_classes)
    data = type(data)(
        data.train.head(a.train),
        valid,
        data.test.head(a.test),
        *[getattr(data, f.name) for f in dataclasses.fields(data)][3:],
    )
    print(
        f"# {a.dataset} {a.net} ({cfg.network.architecture}) {a.kind} {a.activation} {a.estimator} "
        f"T={a.T} K={a.K} beta={a.beta} lrs={a.lrs} atol={a.atol} train={a.train} "
        f"test={a.test} batch={a.batch} {a.dtype} seed={a.seed}"
        + (f" free_method={a.free_method}" if a.atol is not None else "")
    )
    trainer = Trainer(cfg, data=data, quiet=True)
    if a.heartbeat or a.curve_every:
        if a.curve_out:
            Path(a.curve_out).unlink(missing_ok=True)
        trainer.progress.update = monitor(
            trainer, a.batch, a.heartbeat, a.curve_every, a.curve_test, a.curve_out
        )
    if a.probe:
        t0 = time.perf_counter()
        print("# untrained network, first training images")
        probe(cfg, trainer.net, trainer.x_train, a.probe)
        print(f"# probe took {time.perf_counter() - t0:.1f} s")
    rows = []
    n = (a.train // a.batch) * a.batch
    for epoch in range(1, a.epochs + 1):
        c0 = time.process_time()
        trainer.run(epochs=epoch)
        cpu = time.process_time() - c0
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
            cpu_seconds=round(cpu, 1),
        )
        rows.append(row)
        print(
            f"epoch {epoch}: train error {100 * row['train_error']:.2f} %, test error "
            f"{100 * row['test_error']:.2f} %, {train_s:.0f} s train "
            f"({1e3 * train_s / n:.1f} ms/sample), {row['test_seconds']:.0f} s test, "
            f"free iterations {row['mean_free_iterations']}, {cpu:.0f} CPU s (train + test)",
            flush=True,
        )
        if a.out:
            with open(a.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                w.writeheader()
                w.writerows(rows)
    if a.probe and a.probe_end:
        print(f"# after {a.epochs} epoch(s), first training images")
        probe(cfg, trainer.net, trainer.x_train, a.probe)
    per = rows[-1]["seconds_per_sample"]
    last = rows[-1]
    # CPU seconds of the training phases: the epoch's CPU split as its wall time
    wall = last["train_seconds"] + last["test_seconds"]
    cpu_per = last["cpu_seconds"] * last["train_seconds"] / wall / n if wall > 0 else float("nan")
    print(
        f"# projected: {per * 60000 / 3600:.2f} h per 60,000-image epoch; 40 epochs "
        f"{40 * per * 60000 / 3600:.1f} h (train phases only, this machine and load); "
        f"CPU {1e3 * cpu_per:.1f} ms/sample: {cpu_per * 60000 / 3600:.2f} CPU h per epoch, "
        f"{40 * cpu_per * 60000 / 3600:.1f} CPU h for 40"
    )


if __name__ == "__main__":
    main()
