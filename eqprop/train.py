"""Training loop: minibatches, persistent particles, history, exact checkpoints.

One epoch (see ``docs/training.rst``)::

    perm = rng.permutation(n_train)                     # seeded numpy Generator
    for each minibatch B = perm[i : i + batch_size]:
        s0   = particles[B] if persistent else None      # stored free states
        step = rule.estimate(net, x[B], d[B], dyn, rng=rng, s0=s0)
        particles[B] = step.free.state                   # Scellier & Bengio (2017)
        optimizer.step(net, step.gradient)               # W -= lr * dW (per layer)
    evaluate valid and test with the free phase only, in large batches

The training error and loss of an epoch are measured on the free phase of each
minibatch *during* the epoch (the weights change as it runs), as in Scellier & Bengio
(2017); validation and test errors use the weights at the end of the epoch.

Everything needed to continue a run exactly is in the checkpoint (``.npz``, read with
``allow_pickle=False``): weights, biases, optimizer buffers, the state of the random
generator, the persistent particles, the epoch reached and the history so far. A run
resumed from the checkpoint of epoch ``k`` gives bit-identical weights and history values
(apart from wall times) to a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eqprop._files import atomic_path
from eqprop.config import TrainConfig, parse_architecture
from eqprop.optim import SGD

__all__ = [
    "CHECKPOINT_FORMAT",
    "GRAPH_CHECKPOINT_FORMAT",
    "HISTORY_VARIABLES",
    "RUN_FILES",
    "CheckpointError",
    "OutputExists",
    "PhaseDiverged",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "check_output_folder",
    "choose_threads",
    "failed_samples",
    "graph_description",
    "load_checkpoint",
    "parse_architecture",
    "thread_limits",
    "train",
    "training_generator",
]

#: Version tag stored in every checkpoint; bumped when the layout changes.
CHECKPOINT_FORMAT = "eqprop-checkpoint-1"

#: Format tag of a graph network's checkpoint (any network option of TrainConfig set):
#: parameters by name (``param_names`` + ``param{i}``), fixed random feedback matrices
#: (``fixed_names`` + ``fixed{i}``) and a ``graph`` description of layers and couplings.
GRAPH_CHECKPOINT_FORMAT = "eqprop-graph-checkpoint-1"

_CHECKPOINT_FORMATS = (CHECKPOINT_FORMAT, GRAPH_CHECKPOINT_FORMAT)


def _conv_description(c: Any) -> dict[str, Any]:
    spec = c.conv
    return {
        "stride": spec.stride,
        "padding": spec.padding,
        "pool": spec.pool,
        "pool_size": spec.pool_size,
        "pool_stride": spec.pool_stride,
    }


def graph_description(net: Any) -> dict[str, Any]:
    """The structure of a graph network (no arrays) as plain JSON-able data: its kind,
    cost, dtype, layers (name, size, role, activation, box, bias or not) and couplings
    (name, source, target, feedback, gamma, weight shape; an image layer's shape and a
    conv coupling's type and geometry). Two networks with equal descriptions take each
    other's parameters."""
    return {
        "kind": net.kind,
        "cost": net.cost,
        "dtype": str(np.dtype(net.dtype)),
        "layers": [
            {
                "name": layer.name,
                "size": int(layer.size),
                "role": layer.role,
                "activation": layer.activation,
                "box": None if layer.box is None else [float(v) for v in layer.box],
                "bias": layer.bias is not None,
                **({} if layer.shape is None else {"shape": list(layer.shape)}),
            }
            for layer in net.layers
        ],
        "couplings": [
            {
                "name": c.name,
                "source": c.source,
                "target": c.target,
                "feedback": c.feedback,
                "gamma": float(c.gamma),
                "W": list(c.W.shape),
                **({} if c.type == "dense" else {"type": c.type, "conv": _conv_description(c)}),
            }
            for c in net.couplings
        ],
    }


def _fixed_arrays(net: Any) -> dict[str, np.ndarray]:
    """The fixed (not learned) arrays of a graph network: random feedback ``B``."""
    return {f"{c.name}.B": c.B for c in net.couplings if c.feedback == "random"}


#: History variable -> (long_name, units). Dimension ``epoch`` for all.
HISTORY_VARIABLES: dict[str, tuple[str, str]] = {
    "train_error": ("training error rate (free phase of each minibatch during the epoch)", "1"),
    "train_loss": ("mean training cost at the free state during the epoch", "1"),
    "valid_error": ("validation error rate at the end of the epoch", "1"),
    "valid_loss": ("mean validation cost at the end of the epoch", "1"),
    "test_error": ("test error rate at the end of the epoch", "1"),
    "test_loss": ("mean test cost at the end of the epoch", "1"),
    "free_converged": (
        "fraction of training samples whose free phase met the solver tolerance",
        "1",
    ),
    "nudged_converged": (
        "fraction of the training nudged phases (samples x phases) that met the solver tolerance",
        "1",
    ),
    "free_iterations": ("mean solver iterations of the training free phase", "1"),
    "stuck_outputs": (
        "output units whose net input keeps them at 0 on every test sample of their class "
        "(or at 1 on every other) in both phases (hard-sigmoid Hopfield, squared cost)",
        "1",
    ),
    "train_time": ("wall time of the training part of the epoch", "s"),
    "eval_time": ("wall time of validation and test evaluation", "s"),
    "samples_per_second": ("training samples processed per second of training time", "s-1"),
    "compile_time": (
        "wall time of Numba compilation (or loading compiled code from its cache) within "
        "the epoch's training and evaluation",
        "s",
    ),
}

# History values that are wall-clock measurements (excluded from exactness checks).
TIMING_VARIABLES = ("train_time", "eval_time", "samples_per_second", "compile_time")


def training_generator(seed: int) -> np.random.Generator:
    """The generator of a run's shuffling and random signs: PCG64 seeded with
    ``SeedSequence(seed, spawn_key=(1,))``, a stream independent of the weight
    initialisation (``default_rng(seed)``) although both derive from ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1,))))


class TrainingDiverged(RuntimeError):
    """The cost or the parameters became non-finite during training (the learning rates
    moved the weights too far); the CLI exits with status 1."""


class PhaseDiverged(TrainingDiverged, ValueError):
    """A phase's dynamics diverged (non-finite state, or a residual past the solvers'
    divergence bound) with the weights the run started from: the phase settings
    (``eps``, ``damping``, ``method``, the activation) do not give a stable iteration.

    A ``ValueError`` as well (the CLI exits with status 2). The message names the phase,
    the epoch and minibatch, how many samples failed, what blew up, and the settings that
    control it.
    """


#: Residual above which a sample's phase counts as diverged: the ``divergence_bound``
#: default of :func:`solvers.solve_fixed_point`, applied to the fused path as well
#: (which runs without the solvers' bookkeeping).
def _divergence_bound() -> float:
    import inspect

    import solvers

    bound = inspect.signature(solvers.solve_fixed_point).parameters["divergence_bound"].default
    return float(bound)


def epoch_measurements(
    n: int,
    wrong: int,
    loss_sum: float,
    converged: int,
    iterations: int,
    nudged_converged: int,
    nudged_total: int,
    seconds: float,
) -> dict[str, float]:
    """The training measurements of an epoch of ``n`` samples from its counts (wrong
    predictions, summed cost, free phases that met the tolerance, free iterations, nudged
    phases that met it out of ``nudged_total``) and its training seconds; one place for the
    CPU and the CUDA trainers."""
    return {
        "train_error": wrong / n,
        "train_loss": loss_sum / n,
        "free_converged": converged / n,
        "nudged_converged": nudged_converged / nudged_total if nudged_total else float("nan"),
        "free_iterations": iterations / n,
        "train_time": seconds,
        "samples_per_second": n / seconds if seconds > 0 else float("nan"),
    }


def failed_samples(phase: Any) -> np.ndarray:
    """Boolean mask ``(batch,)`` of the samples whose phase diverged.

    A sample failed when the solver says so (``result.failed``: non-finite state or
    residual, or a residual above the solvers' ``divergence_bound``), when its final state
    holds inf or NaN, or, on the fused path (whose result records only the residual of
    the last update), when that residual is non-finite or above the same bound.
    """
    res = phase.result
    bad = np.asarray(res.failed, dtype=bool) | ~np.isfinite(phase.state).all(axis=1)
    if str(getattr(res, "method", "")).startswith("fused"):
        last = np.asarray(res.residual)[np.asarray(res.n_iter) - 1, np.arange(bad.shape[0])]
        bad |= ~(last <= _divergence_bound())
    return bad


# ------------------------------------------------------------------------------------
# configuration: eqprop.config (TrainConfig and its parts), re-exported here


# ------------------------------------------------------------------------------------
# result


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    config : TrainConfig
    net : Network or GraphNetwork
        Trained network (the trainer's own object).
    history : xarray.Dataset
        Per-epoch history (dim ``epoch``), as written to ``history.nc``.
    output : pathlib.Path or None
        Folder written to, if any.
    """

    config: TrainConfig
    net: Any
    history: Any
    output: Path | None = None

    @property
    def test_error(self) -> float:
        """Test error rate of the last epoch (NaN before the first epoch)."""
        values = np.asarray(self.history["test_error"].values)
        return float(values[-1]) if values.size else float("nan")

    @property
    def valid_error(self) -> float:
        """Validation error rate of the last epoch (NaN before the first epoch)."""
        values = np.asarray(self.history["valid_error"].values)
        return float(values[-1]) if values.size else float("nan")


# ------------------------------------------------------------------------------------
# progress reporting


class _Progress:
    """A tqdm bar over minibatches on a terminal, one plain line per epoch otherwise."""

    def __init__(self, quiet: bool, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) and not quiet
        self._bar: Any = None

    def start_epoch(self, epoch: int, epochs: int, n_batches: int) -> None:
        if self.tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=n_batches,
                desc=f"epoch {epoch}/{epochs}",
                unit="batch",
                leave=False,
                file=self.stream,
                mininterval=0.2,
            )

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def end_epoch(self, line: str) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.line(line)

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


# ------------------------------------------------------------------------------------
# helpers


# settings (flat names, eqprop.config.flat_names()) that may change when resuming from a
# checkpoint (others break exact continuation)
_RESUME_CHANGEABLE = ("epochs", "output", "data_dir", "eval_batch_size", "threads")
# solver settings that may also change on resume: the run then continues with the new
# solver (e.g. a faster free phase), which is no longer an exact continuation
_RESUME_SOLVER = ("free_method", "free_eps", "free_damping", "atol", "rtol", "max_iter")


#: Largest minibatch for which :func:`choose_threads` picks one BLAS thread by default.
SMALL_BATCH = 256


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def choose_threads(config: TrainConfig) -> tuple[int, str]:
    """BLAS thread count for a training run and why.

    ``config.run.threads`` when given; otherwise 1 for minibatches of at most
    :data:`SMALL_BATCH` samples: a step's products (``(20, 784) @ (784, 500)`` for
    MNIST) take microseconds, so threads only add synchronisation, and with numpy's and
    scipy's OpenBLAS both loaded, each spinning one thread per core, two cores ran
    ``scellier2017-1h`` 11-40 times slower than with one thread (issue #10). Larger
    minibatches get one thread per available core.

    Returns
    -------
    threads : int
    reason : str
        Where the number came from, for the progress line.
    """
    run = config.run
    if run.threads is not None:
        return int(run.threads), "threads setting (--threads)"
    if run.batch_size <= SMALL_BATCH:
        return 1, f"auto: minibatches of {run.batch_size} are too small to split"
    n = _available_cores()
    return n, f"auto: minibatches of {run.batch_size}, one thread per core"


@contextlib.contextmanager
def thread_limits(n: int) -> Iterator[str]:
    """Limit every loaded BLAS library to ``n`` threads (threadpoolctl) and Numba's
    parallel regions to ``min(n, NUMBA_NUM_THREADS)``; restore both on exit.

    Yields a short description of the libraries limited. eqprop's own kernels are serial,
    so the Numba setting only matters to user code called inside the block.
    """
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    import eqprop.optim  # noqa: F401  scipy's BLAS must be loaded to be limited

    before = numba.get_num_threads()
    with threadpool_limits(limits=n, user_api="blas"):
        libs = [lib["internal_api"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        numba.set_num_threads(max(1, min(n, getattr(numba.config, "NUMBA_NUM_THREADS", n))))
        try:
            yield f"{len(libs)} BLAS librar{'y' if len(libs) == 1 else 'ies'} ({', '.join(libs)})"
        finally:
            numba.set_num_threads(before)


@contextlib.contextmanager
def _numba_compile_timer() -> Iterator[Any]:
    """Time Numba's compilation inside the block: a ``numba.core.event.TimingListener``
    on ``"numba:compiler_lock"``, held while Numba compiles a function or loads it from
    its on-disk cache (nested acquisitions counted once). Read ``.duration`` when
    ``.done`` after the block."""
    from numba.core import event

    listener = event.TimingListener()
    with event.install_listener("numba:compiler_lock", listener):
        yield listener


#: The files a run writes into its output folder.
RUN_FILES = ("checkpoint.npz", "history.nc", "config.json")


class OutputExists(ValueError):
    """The output folder already holds a run (neither resumed nor to be overwritten)."""


def check_output_folder(
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    resume: str | os.PathLike[str] | None = None,
) -> Path:
    """Check that a run may write into the folder ``output``; return it as a Path.

    Raises
    ------
    ValueError
        ``output`` (or a folder above it) is a file.
    OutputExists
        ``output`` holds a run's files (:data:`RUN_FILES`), ``overwrite`` is false and
        ``resume`` is not that folder's own checkpoint.
    """
    folder = Path(output)
    for p in (folder, *folder.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == folder else f"is inside {p}, which is a file"
            raise ValueError(
                f"output {str(folder)!r} {what}; give a folder for config.json, history.nc "
                "and checkpoint.npz (-o/--output)"
            )
    existing = [name for name in RUN_FILES if (folder / name).exists()]
    if not existing or overwrite:
        return folder
    own = folder / "checkpoint.npz"
    if resume is not None and own.exists() and Path(resume).resolve() == own.resolve():
        return folder
    raise OutputExists(
        f"output folder {str(folder)!r} already holds a run ({', '.join(existing)}); "
        f"continue it with --resume {own} (train(resume=...)), replace it with --overwrite "
        "(overwrite=True), or choose another -o/--output"
    )


def _atomic_write(path: Path, mode: str, write: Callable[[Any], None]) -> None:
    """Call ``write`` on a file object that atomically becomes ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        write(fh)


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` into ``path`` atomically."""
    _atomic_write(path, "wb", lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, "w", lambda fh: fh.write(text))


def _one_hot(labels: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray:
    out = np.zeros((labels.shape[0], n), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def _cost_per_sample(cost: str, out: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Cost of each sample at the prediction ``out`` (float64), target one-hot ``d``.

    ``squared``: ``C = 1/2 ||out - d||^2``. ``cross-entropy``: ``C = -sum_k d_k log p_k``
    with ``p = out`` when ``out`` rows are probabilities, else ``p = softmax(out)``.
    """
    o = out.astype(np.float64, copy=False)
    if cost == "cross-entropy":
        rowsum = o.sum(axis=1)
        if np.all(o >= 0) and np.allclose(rowsum, 1.0, atol=1e-4):
            logp = np.log(np.clip(o, 1e-300, None))
        else:
            z = o - o.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -(d * logp).sum(axis=1)
    return 0.5 * ((o - d) ** 2).sum(axis=1)


# ------------------------------------------------------------------------------------
# trainer


def _stuck_warning(dead: list[int], full: list[int]) -> str:
    """One warning line naming the stuck output units (see Trainer.stuck_output_units)."""
    parts = []
    if dead:
        parts.append(
            f"output unit(s) {', '.join(map(str, dead))} at 0 on every test sample of their "
            "class (never predicted)"
        )
    if full:
        parts.append(
            f"output unit(s) {', '.join(map(str, full))} at 1 on every test sample of the "
            "other classes (always predicted)"
        )
    return (
        f"warning: {'; '.join(parts)}, in both phases: they get no EP update (and no "
        "gradient), so training cannot repair them; restart with lower learning rates or "
        "another seed (docs/training.rst)"
    )


def _phase_settings(config: TrainConfig, phase: str, T: int | None = None) -> str:
    """The settings that control the dynamics of ``phase`` (``"free"`` or a nudged one),
    as ``name=value`` pairs in the flat names of :class:`TrainConfig` (``T`` overrides the
    free phase's step count, e.g. ``eval_T``)."""
    c = config.to_flat()
    free = phase == "free"
    pairs: list[tuple[str, Any]] = []
    for name in ("method", "eps", "damping"):
        own = c[f"free_{name}"] if free else None
        pairs.append((f"free_{name}", own) if own is not None else (name, c[name]))
    pairs.append(("T", c["T"] if T is None else T) if free else ("K", c["K"]))
    pairs.append(("max_iter", c["max_iter"]))
    if not free:
        pairs.append(("rule", c["rule"]))
        pairs += [(k, c[k]) for k in ("beta", "eta") if k in c]
    pairs += [("kind", c["kind"]), ("activation", c["activation"])]
    return ", ".join(f"{k}={v!r}" for k, v in pairs)


def _rule_settings(config: TrainConfig) -> str:
    """``", beta=B"`` for a rule with a nudging strength, else empty (error messages)."""
    beta = config.rule.params.get("beta")
    return "" if beta is None else f", beta={beta!r}"


def _describe_failure(phase: Any, bad: np.ndarray) -> str:
    """What blew up in the failed samples ``bad`` of ``phase`` and at which iteration."""
    res = phase.result
    state = phase.state[bad]
    n_bad, batch = int(bad.sum()), bad.shape[0]
    iters = np.asarray(res.failure_iter)[bad]
    iters = iters[iters >= 0]
    at = f" at iteration {int(iters.min())}" if iters.size else ""
    if str(getattr(res, "method", "")).startswith("fused"):
        at = f" within its {int(np.asarray(res.n_iter).max())} steps"
    if not np.isfinite(state).all():
        what = "the state became inf or NaN"
    else:
        what = (
            f"the residual max|g(s) - s| passed the divergence bound {_divergence_bound():.0e} "
            f"(largest |s| {float(np.abs(state).max()):.3g})"
        )
    return f"{n_bad} of {batch} samples failed{at}: {what}"


def loss_diverged(c: TrainConfig, epoch: int, start: int, n: int, loss: float):
    """The :class:`TrainingDiverged` of a non-finite minibatch cost in epoch ``epoch + 1``
    (the minibatch starting at sample ``start`` of ``n``), with the settings that control
    it (the CPU and the CUDA trainer raise this one)."""
    bs = c.run.batch_size
    return TrainingDiverged(
        f"training diverged in epoch {epoch + 1}, minibatch "
        f"{start // bs + 1} (after {start} of {n} samples): the mean cost at "
        f"the free state is {loss} although every phase stayed finite, so the "
        f"output or the cost overflowed; settings that control it: "
        f"lrs={list(c.optimizer.lrs)}{_rule_settings(c)}, "
        f"cost={c.network.cost!r}, "
        f"{_phase_settings(c, 'free')}"
    )


def non_finite_parameter_error(c: TrainConfig, epoch: int, n: int, bad_params: list[str]):
    """The :class:`TrainingDiverged` of parameters ``bad_params`` that became non-finite
    in epoch ``epoch + 1`` (of ``n`` samples; the CPU and the CUDA trainer raise it)."""
    return TrainingDiverged(
        f"training diverged in epoch {epoch + 1}: {', '.join(bad_params)} became "
        f"NaN or infinite during the update of the epoch's {n} samples; settings that "
        f"control it: lrs={list(c.optimizer.lrs)}, momentum={c.optimizer.momentum!r}"
        f"{_rule_settings(c)}; lower the learning rates"
    )


def _merge_valid_into_train(data: Any) -> Any:
    """``data`` with the validation samples appended to the training split and an empty
    validation split (same feature count and classes)."""
    from eqprop.data import Split

    tr, va = data.train, data.valid
    train = Split(
        np.ascontiguousarray(np.concatenate([tr.x, va.x])),
        np.concatenate([tr.labels, va.labels]),
        tr.n_classes,
    )
    empty = Split(np.zeros((0, va.x.shape[1]), np.float32), np.zeros(0, np.int64), va.n_classes)
    return dataclasses.replace(data, train=train, valid=empty)


class Trainer:
    """Runs epochs of EP training on one network; see the module docstring.

    Parameters
    ----------
    config : TrainConfig
        Validated on construction (ValueError with a clear message).
    data : DatasetSplits, optional
        Data to use instead of ``load_dataset(config.dataset, ...)`` (tests, studies);
        ``config.limit`` still applies.
    command : str or sequence of str, optional
        Command line recorded in the history (default ``sys.argv``).
    quiet : bool
        No progress output.
    stream : file, optional
        Where progress goes (default ``sys.stderr``).
    overwrite : bool
        Replace a run already in ``config.output`` (its ``checkpoint.npz``,
        ``history.nc`` and ``config.json`` are deleted when the run starts); without it
        such a folder is refused (:class:`OutputExists`), unless this trainer resumes
        that folder's own checkpoint.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: Any = None,
        *,
        command: str | Sequence[str] | None = None,
        quiet: bool = False,
        stream: Any = None,
        overwrite: bool = False,
        _restore: Mapping[str, np.ndarray] | None = None,
        _resumed_from: str | os.PathLike[str] | None = None,
    ) -> None:
        from eqprop import network as _network
        from eqprop import phases as _phases
        from eqprop import rules as _rules

        self.config = config.validate()
        if config.rule.name == "recirculation":
            raise ValueError(
                "rule 'recirculation' trains an unsupervised loop, not a network of phases: use "
                "eqprop.recirculation.LoopTrainer (eqprop train --rule recirculation does)"
            )
        if config.run.device != "cpu":  # one clear error, never a silent CPU run (#17)
            from eqprop.gpu import check_device, check_trainable

            check_device(config.run.device)
            check_trainable(config)
        self._overwrite = bool(overwrite)
        self._resumed_from = _resumed_from
        run, data_config = config.run, config.data
        if run.output:  # before the data loads: a wrong folder fails at once
            check_output_folder(run.output, overwrite=overwrite, resume=_resumed_from)
        self.command = command
        self.progress = _Progress(quiet, stream)
        sizes = config.sizes
        self.dtype = np.dtype(config.network.dtype)

        # ---- data
        limit = data_config.limit
        if data is None:
            from eqprop.data import load_dataset

            data = load_dataset(data_config.dataset, data_dir=data_config.data_dir, limit=limit)
        elif limit is not None:
            data = type(data)(
                data.train.head(limit),
                data.valid.head(limit),
                data.test.head(limit),
                *[getattr(data, f.name) for f in dataclasses.fields(data)][3:],
            )
        if data_config.train_on_valid:
            data = _merge_valid_into_train(data)
        self.data = data
        self._check_data(sizes)
        self.x_train = np.ascontiguousarray(data.train.x, dtype=self.dtype)
        self.y_train = np.asarray(data.train.labels, dtype=np.int64)
        self.d_train = _one_hot(self.y_train, sizes[-1], self.dtype)
        n_train = self.x_train.shape[0]
        if config.dynamics.free_from_sample >= n_train:
            raise ValueError(
                f"free_from_sample={config.dynamics.free_from_sample} but the run has "
                f"{n_train} training samples: the switch would never happen in epoch "
                f"{config.dynamics.free_from_epoch}; give a smaller value, or 0 and "
                f"free_from_epoch={config.dynamics.free_from_epoch + 1}"
            )

        # ---- model, dynamics, rule, optimizer
        self.net = config.make_network()
        self.is_graph = not isinstance(self.net, _network.Network)
        dynamics = config.dynamics
        self.dyn = dynamics.phases
        self.free_dyn = dynamics.free_dynamics()
        self.eval_dyn = dynamics.free_dynamics(T=self._eval_T())
        self.rule: _rules.LearningRule = config.make_rule()
        self._free_phase = _phases.free_phase
        self._output = _network.output
        self.optimizer: SGD = config.make_optimizer()
        self.optimizer.check(self.net)
        # independent of the weight initialisation's stream (same seed, other spawn key)
        self.rng = training_generator(run.seed)
        self.particles: np.ndarray | None = None
        if run.persistent:
            self.particles = np.zeros((self.x_train.shape[0], self.net.n_state), self.dtype)
        # per-split evaluation particles (eval_persistent): the state of each sample at the
        # end of its last evaluation
        self.eval_particles: dict[str, np.ndarray] = {}
        if run.eval_persistent:
            for name in ("valid", "test"):
                n_split = getattr(data, name).x.shape[0]
                self.eval_particles[name] = np.zeros((n_split, self.net.n_state), self.dtype)
        self.epoch = 0
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_VARIABLES}
        self._steps_at_start = 0  # optimizer steps of the checkpoint this run resumed
        self._attrs: dict[str, Any] | None = None
        if _restore is not None:
            self._restore(_restore)
            self._steps_at_start = self.optimizer.n_steps
        self._device: Any = None  # eqprop.gpu.train.DeviceRun with device="cuda" (#17)
        if config.run.device == "cuda":
            from eqprop.gpu import device_run

            self._device = device_run(self)
            self._free_phase = self._device.eval_free_phase

    # ------------------------------------------------------------------ setup helpers
    def _eval_T(self) -> int:
        """Free-phase steps of evaluation: ``eval_T``, else the free phases' ``T``."""
        dynamics = self.config.dynamics
        return dynamics.eval_T if dynamics.eval_T is not None else dynamics.free_dynamics().T

    def _epoch_free_dynamics(self, evaluation: bool = False, epoch: int | None = None) -> Any:
        """The free-phase Dynamics of ``epoch`` (1-based; default the current one,
        ``self.epoch + 1``): the free settings from ``free_from_epoch`` on; before, the
        nudged phases' Dynamics changed by ``early_free`` (default: none), with ``T``
        (or ``eval_T``) steps. (With ``free_from_sample``, :meth:`train_epoch` runs the
        first samples of epoch ``free_from_epoch`` with the earlier epochs' phase; the
        epoch's later samples, its evaluation and its tolerance warning have these.)"""
        dynamics = self.config.dynamics
        if (self.epoch + 1 if epoch is None else epoch) >= dynamics.free_from_epoch:
            return self.eval_dyn if evaluation else self.free_dyn
        early = dynamics.early_free_dynamics()
        if not evaluation:
            return early
        T = dynamics.eval_T if dynamics.eval_T is not None else early.T
        return dataclasses.replace(early, T=T)

    def _check_data(self, sizes: tuple[int, ...]) -> None:
        data = self.data
        name = self.config.data.dataset
        architecture = self.config.network.architecture
        for split_name in ("train", "valid", "test"):
            split = getattr(data, split_name)
            x = split.x
            if x.ndim != 2 or x.shape[1] != sizes[0]:
                raise ValueError(
                    f"dataset {name!r} has {x.shape[1] if x.ndim == 2 else x.shape} input "
                    f"features per sample but the architecture {architecture!r} "
                    f"has an input layer of {sizes[0]}; start the architecture with "
                    f"{x.shape[1] if x.ndim == 2 else '?'}"
                )
            if not np.all(np.isfinite(x)):
                bad = int(np.count_nonzero(~np.isfinite(x).all(axis=1)))
                raise ValueError(
                    f"dataset {name!r}: {bad} {split_name} sample(s) contain NaN or inf "
                    "inputs; clean the data"
                )
            n_classes = int(getattr(split, "n_classes", sizes[-1]))
            if n_classes != sizes[-1]:
                raise ValueError(
                    f"dataset {name!r} has {n_classes} classes but the architecture's output "
                    f"layer has {sizes[-1]} units; end the architecture with {n_classes}"
                )
        if data.train.x.shape[0] < 1:
            raise ValueError(f"dataset {name!r} has no training samples")

    # ------------------------------------------------------------------ one epoch
    def train_epoch(self) -> dict[str, float]:
        """Run one epoch of minibatch training; returns the training measurements.

        Raises
        ------
        TrainingDiverged
            The cost of a minibatch or the parameters at the end became non-finite.
        """
        if self._device is not None:  # the same epoch on the CUDA backend (#17)
            return self._device.train_epoch(self)
        from eqprop.rules.base import FreePhaseFailed

        c = self.config
        n = self.x_train.shape[0]
        bs = c.run.batch_size
        n_batches = (n + bs - 1) // bs
        perm = self.rng.permutation(n) if c.run.shuffle else np.arange(n)
        wrong = 0
        loss_sum = 0.0
        conv = 0
        iters = 0
        nudged_conv = nudged_total = 0
        solved_free = missed_free = 0  # free phases run to a tolerance, and those that missed
        net, dyn, rule, rng, opt = self.net, self.dyn, self.rule, self.rng, self.optimizer
        free_dyn = self._epoch_free_dynamics()
        # free_from_sample: the first samples of epoch free_from_epoch keep the earlier
        # epochs' free phase, the switch is at the minibatch starting at that sample
        switch_at = -1
        if self.epoch + 1 == c.dynamics.free_from_epoch and c.dynamics.free_from_sample:
            switch_at = c.dynamics.free_from_sample
            free_dyn = self._epoch_free_dynamics(epoch=self.epoch)  # the earlier epochs'
        x_all, d_all, y_all, particles = self.x_train, self.d_train, self.y_train, self.particles
        update = self.progress.update
        self.progress.start_epoch(self.epoch + 1, self._target_epochs, n_batches)
        t0 = time.perf_counter()
        # overflow in a diverging run is reported once, as TrainingDiverged, not as warnings
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, n, bs):
                if start == switch_at:
                    free_dyn = self.free_dyn
                idx = perm[start : start + bs]
                x = x_all[idx]
                d = d_all[idx]
                s0 = particles[idx] if particles is not None else None
                try:
                    if rule.applies_updates:  # continual EP: one optimizer step per nudged step
                        own: Any = rule  # its estimate takes the optimizer step
                        step = own.estimate(
                            net, x, d, dyn, rng=rng, s0=s0, free_dyn=free_dyn, apply=opt.step
                        )
                    else:
                        step = rule.estimate(net, x, d, dyn, rng=rng, s0=s0, free_dyn=free_dyn)
                except FreePhaseFailed as err:  # the rule stopped before nudging from NaN
                    raise self._phase_failure(
                        "free", err.phase, failed_samples(err.phase), start
                    ) from None
                free = step.free
                for name, phase in step.phases.items():
                    bad = failed_samples(phase)
                    if bad.any():
                        raise self._phase_failure(name, phase, bad, start)
                if particles is not None:
                    particles[idx] = free.state
                loss = float(step.loss)
                if not math.isfinite(loss):
                    raise loss_diverged(c, self.epoch, start, n, loss)
                if not rule.applies_updates:
                    opt.step(net, step.gradient)
                wrong += int(np.count_nonzero(step.prediction.argmax(axis=1) != y_all[idx]))
                loss_sum += loss * idx.shape[0]
                res = free.result
                conv += int(np.count_nonzero(res.converged))
                if not free_dyn.is_fixed_steps:  # the samples the tolerance warning counts
                    solved_free += res.converged.shape[0]
                    missed_free += int(np.count_nonzero(~res.converged))
                iters += int(res.n_iter.sum())
                for name, phase in step.phases.items():
                    if name != "free":
                        nudged_conv += int(np.count_nonzero(phase.result.converged))
                        nudged_total += int(phase.state.shape[0])
                update()
        t_train = time.perf_counter() - t0
        bad_params = self._non_finite_parameters()
        if bad_params:
            raise non_finite_parameter_error(c, self.epoch, n, bad_params)
        row = epoch_measurements(
            n, wrong, loss_sum, conv, iters, nudged_conv, nudged_total, t_train
        )
        # not history variables: what the tolerance warning counts in an epoch whose
        # first samples ran fixed steps (free_from_sample), where the misses of the
        # fixed steps are only reported
        row.update(free_solved_to_tolerance=solved_free, free_missed_tolerance=missed_free)
        return row

    def _non_finite_parameters(self) -> list[str]:
        """Names (``W1``, ``b2``, ...; a graph network's parameter names, ``h1->y.W``)
        of the parameter arrays holding inf or NaN."""
        if self.is_graph:
            return [k for k, a in self.net.parameters().items() if not np.isfinite(a).all()]
        names = []
        for l, (W, b) in enumerate(zip(self.net.weights, self.net.biases)):
            names += [f"{p}{l + 1}" for p, a in (("W", W), ("b", b)) if not np.isfinite(a).all()]
        return names

    def _phase_failure(
        self, name: str, phase: Any, bad: np.ndarray, start: int, split: str | None = None
    ) -> TrainingDiverged:
        """The error of a failed phase: where, what blew up, the settings that control it.

        ``start`` is the index of the minibatch's first sample in the epoch (training) or
        in ``split`` (evaluation). :class:`PhaseDiverged` when the phase fails with the
        weights the run started from (the dynamics settings are the cause),
        :class:`TrainingDiverged` when it fails only after this run's updates or the
        parameters are no longer finite (the learning rates are).
        """
        c = self.config
        n_batch = bad.shape[0]
        if split is None:
            n = self.x_train.shape[0]
            where = (
                f"the {name} phase of epoch {self.epoch + 1}, minibatch "
                f"{start // c.run.batch_size + 1} (training samples {start + 1}-{start + n_batch} "
                f"of {n} in this epoch's order)"
            )
            T = None
        else:
            where = (
                f"the free phase evaluating the {split} split after epoch {self.epoch + 1} "
                f"(samples {start + 1}-{start + n_batch})"
            )
            T = self._eval_T()
        bad_params = self._non_finite_parameters()
        updates = self.optimizer.n_steps - self._steps_at_start
        settings = _phase_settings(c, "free" if split else name, T)
        if bad_params:
            cause = (
                f"; the parameters {', '.join(bad_params)} were already NaN or infinite, so "
                f"lower the learning rates (lrs={list(c.optimizer.lrs)}, "
                f"momentum={c.optimizer.momentum!r})"
            )
        elif updates:
            cause = (
                f"; the phase ran with the run's starting weights, and fails after {updates} "
                f"update(s) at lrs={list(c.optimizer.lrs)}: lower the learning rates, or make the "
                f"dynamics more stable (settings that control it: {settings})"
            )
        else:
            cause = (
                f"; it fails with the run's starting weights, so the dynamics settings are "
                f"the cause: {settings} (lower eps or damping, or choose a bounded "
                "activation such as hardsigmoid)"
            )
        message = f"{where} diverged: {_describe_failure(phase, bad)}{cause}"
        return TrainingDiverged(message) if bad_params or updates else PhaseDiverged(message)

    def evaluate(
        self,
        split: Any,
        particles: np.ndarray | None = None,
        *,
        track_outputs: bool = True,
        name: str = "evaluated",
    ) -> tuple[float, float]:
        """Error rate and mean cost of the free phase on a split, in large batches.

        With ``particles`` (``(n, n_state)``, updated in place) each free phase starts
        from the sample's stored state and stores where it ended; otherwise from zero.
        ``track_outputs`` records the output units' net inputs for
        :meth:`stuck_output_units` (hard-sigmoid Hopfield, squared cost). ``name`` names
        the split in the error raised when a free phase diverges (:class:`TrainingDiverged`).
        Returns NaN, NaN for an empty split.
        """
        n = split.x.shape[0]
        if n == 0:
            return float("nan"), float("nan")
        bs = self.config.run.eval_batch_size
        sizes = self.config.sizes
        wrong = 0
        loss = 0.0
        track = track_outputs and self._tracks_stuck_outputs()
        eval_dyn = self._epoch_free_dynamics(evaluation=True)
        own_max = np.full(sizes[-1], -np.inf)
        other_min = np.full(sizes[-1], np.inf)
        for start in range(0, n, bs):
            x = np.ascontiguousarray(split.x[start : start + bs], dtype=self.dtype)
            y = np.asarray(split.labels[start : start + bs])
            s0 = None if particles is None else particles[start : start + bs]
            with np.errstate(over="ignore", invalid="ignore"):
                phase = self._free_phase(self.net, x, eval_dyn, s0=s0)
            bad = failed_samples(phase)
            if bad.any():
                raise self._phase_failure("free", phase, bad, start, name)
            state = phase.state
            if particles is not None:
                particles[start : start + bs] = state
            if self.is_graph:
                from eqprop.phases import clamp, network_output

                out = np.asarray(network_output(self.net, clamp(self.net, x), state))
            else:
                out = np.asarray(self._output(self.net, state))
            if track:  # own class: the largest net input; other classes: the smallest
                drive = self._output_drive(x, state)
                rows = np.arange(drive.shape[0])
                np.maximum.at(own_max, y, drive[rows, y])
                drive[rows, y] = np.inf
                np.minimum(other_min, drive.min(axis=0), out=other_min)
            wrong += int(np.count_nonzero(out.argmax(axis=1) != y))
            d = _one_hot(y, sizes[-1], np.dtype(np.float64))
            loss += float(_cost_per_sample(self.config.network.cost, out, d).sum())
        self.last_drive_range = (own_max, other_min) if track else None
        return wrong / n, loss / n

    def _tolerance_warning(self, row: Mapping[str, float]) -> str:
        """One warning line when phases solved to a tolerance missed it on some samples.

        Only phases whose method runs to ``atol`` (not the fixed ``T``/``K`` steps of
        ``"fixed"``/``"fused"``, where the tolerance is only reported) are counted; the
        fractions are the history's ``free_converged`` and ``nudged_converged``, given
        as the share that missed (the free phase's also as a count: a met percentage
        rounded 59,990 of 60,000 up to "100.0%"), each with its phase's own ``atol``,
        ``rtol`` and ``max_iter`` (the free phases may change them,
        ``DynamicsConfig.free``). Where :meth:`train_epoch` counted them
        (``free_solved_to_tolerance``, ``free_missed_tolerance``), the free phase's
        misses are those of its samples solved to the tolerance only: in an epoch that
        switches at ``free_from_sample`` the fixed steps before are not counted. Empty
        when every such phase met its tolerance.
        """
        n = self.x_train.shape[0]
        parts = []
        for label, key, dyn in (
            ("free", "free_converged", self._epoch_free_dynamics(epoch=self.epoch)),
            ("nudged", "nudged_converged", self.dyn),
        ):
            frac = row[key]
            if dyn.is_fixed_steps or frac >= 1.0:
                continue
            if label == "free":  # one free phase per sample: a count (CUDA rows: from frac)
                solved = int(row.get("free_solved_to_tolerance", n))
                missed = int(row.get("free_missed_tolerance", round((1.0 - frac) * n)))
                if not missed:  # the misses were all in fixed steps (free_from_sample)
                    continue
                share = f"{missed:,} of {solved:,} training samples ({100 * missed / solved:.3g}%)"
            else:  # the fraction is over every nudged phase (two per sample when symmetric)
                share = f"{100 * (1.0 - frac):.3g}% of the nudged phases' samples"  # never 0/100
            parts.append(
                f"the {label} phase ({dyn.method_name}, atol={dyn.atol:g}, rtol={dyn.rtol:g}, "
                f"max_iter={dyn.max_iter}) missed its tolerance on {share}"
            )
        if not parts:
            return ""
        return (
            f"warning: epoch {self.epoch}: {' and '.join(parts)} "
            "(history: free_converged, nudged_converged); raise max_iter or loosen atol"
        )

    def _tracks_stuck_outputs(self) -> bool:
        c = self.config
        if self.is_graph:  # the same test on the graph's output layer (its box: [0, 1])
            out = self.net.output_layer
            graph = (self.net.kind, out.role, out.activation, out.box, self.net.cost, c.rule.name)
            return graph == ("hopfield", "output", "hardsigmoid", (0.0, 1.0), "squared", "ep")
        # the clamping rules hold the output at (or near) the targets: no unit is stuck
        net = c.network
        return (net.kind, net.activation, net.cost, c.rule.name) == (
            "hopfield",
            "hardsigmoid",
            "squared",
            "ep",
        )

    def _output_drive(self, x: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Net input of the output units, ``rho(s_{L-1}) W_L + b_L`` (batch, n_out); on a
        graph network the output layer's drive (its bias plus every coupling into it,
        skips included: :func:`eqprop.graph.reference.drives`)."""
        if self.is_graph:
            from eqprop.graph import reference as GR

            u = GR.drives(self.net, GR.activities(self.net, x, state))
            return np.asarray(u[self.net.output_layer.name], np.float64)
        off = [int(v) for v in self.net.offsets]
        below = x if len(off) < 3 else np.clip(state[:, off[-3] : off[-2]], 0.0, 1.0)
        return np.asarray(below @ self.net.weights[-1] + self.net.biases[-1], np.float64)

    def stuck_output_units(self) -> tuple[list[int], list[int]]:
        """Output units stuck at 0 / at 1 over the samples of the last :meth:`evaluate`.

        Hard-sigmoid Hopfield nets with the squared cost (a graph network: its output
        layer hard-sigmoid in the box [0, 1], any feedback, skips). At ``s = 0`` the nudge
        ``beta (d - s)`` lifts output unit ``k`` only for samples of class ``k``
        (``d_k = 1``) and only if its net input ``u_k`` exceeds ``-|beta|``; at ``s = 1``
        it lowers the unit only for other classes and only if ``u_k < 1 + |beta|``. A
        unit with ``u_k < -|beta|`` on every sample of its class (or ``u_k > 1 + |beta|``
        on every other sample) keeps its state in both phases where it matters, so it gets
        no EP update (and no gradient: a clipped unit passes none): its class is never
        (always) predicted and training cannot repair it. Empty lists for other networks
        or before any evaluation.
        """
        if self.last_drive_range is None:
            return [], []
        own_max, other_min = self.last_drive_range
        b = abs(self.config.rule.params["beta"])
        # a class absent from the split leaves -inf / inf: no evidence, not flagged
        dead = [int(i) for i in np.flatnonzero(np.isfinite(own_max) & (own_max < -b))]
        full = [int(i) for i in np.flatnonzero(np.isfinite(other_min) & (other_min > 1.0 + b))]
        return dead, full

    # ------------------------------------------------------------------ full run
    _target_epochs: int = 0
    last_drive_range: tuple[np.ndarray, np.ndarray] | None = None
    _reported_stuck: tuple[list[int], list[int]] = ([], [])
    _has_run: bool = False
    _cleared_output: bool = False

    def run(self, epochs: int | None = None) -> TrainResult:
        """Train until ``epochs`` epochs in total are done (default ``config.epochs``).

        After every epoch: append to the history, print a line (or update the bar), and,
        when ``config.output`` is set, write ``history.nc`` and ``checkpoint.npz``
        (atomically).
        """
        target = self.config.run.epochs if epochs is None else int(epochs)
        if target < self.epoch or (target == self.epoch and self._resume_pending()):
            where = (
                f"the checkpoint {str(self._resumed_from)!r} is"
                if self._resumed_from is not None
                else "this trainer is"
            )
            raise ValueError(
                f"epochs = {target} counts the epochs in total and {where} already at epoch "
                f"{self.epoch}: nothing to train; give --epochs (epochs=) greater than "
                f"{self.epoch} to continue"
            )
        self._target_epochs = target
        if self._attrs is None:
            self.history_dataset()  # fixes the provenance attributes at the start of the run
        out = Path(self.config.run.output) if self.config.run.output else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if self._overwrite and self.epoch == 0 and not self._cleared_output:
                for name in RUN_FILES:
                    (out / name).unlink(missing_ok=True)
            self._cleared_output = True
            _atomic_write_text(out / "config.json", self.config.to_json() + "\n")
        n_threads, reason = choose_threads(self.config)
        with thread_limits(n_threads) as limited:
            if not self._has_run:
                self.progress.line(
                    f"threads: {n_threads} BLAS thread(s) in {limited}; {reason}"
                    + ("" if self.config.run.threads is not None else "; --threads N to change")
                )
                self._has_run = True
            self._run_epochs(target, out)
        return TrainResult(self.config, self.net, self.history_dataset(), out)

    def _resume_pending(self) -> bool:
        """Resumed from a checkpoint and not run since (a resume is meant to train)."""
        return self._resumed_from is not None and not self._has_run

    def _run_epochs(self, target: int, out: Path | None) -> None:
        """The epoch loop of :meth:`run` (inside its thread limits)."""
        while self.epoch < target:
            with _numba_compile_timer() as compiling:
                tr = self.train_epoch()
                t0 = time.perf_counter()
                # the stuck-unit check reads the test split only: no tracking on valid
                ve, vl = self.evaluate(
                    self.data.valid,
                    self.eval_particles.get("valid"),
                    track_outputs=False,
                    name="valid",
                )
                te, tl = self.evaluate(self.data.test, self.eval_particles.get("test"), name="test")
                t_eval = time.perf_counter() - t0
            t_compile = compiling.duration if compiling.done else 0.0
            self.epoch += 1
            dead, full = self.stuck_output_units()
            row = dict(tr)
            row.update(valid_error=ve, valid_loss=vl, test_error=te, test_loss=tl, eval_time=t_eval)
            row["stuck_outputs"] = len(dead) + len(full)
            row["compile_time"] = t_compile
            for k in HISTORY_VARIABLES:
                self.history[k].append(float(row[k]))
            compiled = (
                f" (of which {t_compile:.1f} s Numba compilation)" if t_compile >= 0.05 else ""
            )
            # no validation split (--train-on-valid): say so instead of printing "nan%"
            valid = "n/a" if np.isnan(ve) else f"{100 * ve:.2f}%"
            self.progress.end_epoch(
                f"epoch {self.epoch}/{target}  train {100 * row['train_error']:.2f}%  "
                f"valid {valid}  test {100 * te:.2f}%  loss {row['train_loss']:.4f}  "
                f"{row['samples_per_second']:.0f} samples/s  "
                f"{row['train_time']:.1f}+{t_eval:.1f} s{compiled}"
            )
            warning = self._tolerance_warning(row)
            if warning:
                self.progress.line(warning)
            if (dead or full) and (dead, full) != self._reported_stuck:
                self.progress.line(_stuck_warning(dead, full))
            self._reported_stuck = (dead, full)
            if out is not None:
                self.save_checkpoint(out / "checkpoint.npz")
                self.write_history(out / "history.nc")

    # ------------------------------------------------------------------ history
    def history_dataset(self) -> Any:
        """The history as an :class:`xarray.Dataset` (dim ``epoch``, provenance attrs)."""
        import xarray as xr

        from eqprop.provenance import dataset_attrs, variable

        n = self.epoch
        data_vars = {
            k: variable("epoch", np.asarray(self.history[k], dtype=np.float64), ln, u)
            for k, (ln, u) in HISTORY_VARIABLES.items()
        }
        coords = {
            "epoch": variable("epoch", np.arange(1, n + 1, dtype=np.int64), "epoch", "1"),
        }
        ds = xr.Dataset(data_vars, coords=coords)
        title = (
            f"eqprop training history: {self.config.data.dataset} {self.config.network.kind} "
            f"{self.config.network.architecture}"
        )
        if self._attrs is None:
            # taken once, when the first history is made: the git commit is that of the
            # code this process loaded, not of whatever HEAD is when a later epoch ends
            self._attrs = dataset_attrs(
                title, self.config.to_dict(), command=self.command, seeds=[self.config.run.seed]
            )
        attrs = dict(self._attrs)
        attrs["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ds.attrs.update(attrs)
        ds.attrs["n_train"] = int(self.x_train.shape[0])
        ds.attrs["n_valid"] = int(self.data.valid.x.shape[0])
        ds.attrs["n_test"] = int(self.data.test.x.shape[0])
        return ds

    def write_history(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`history_dataset` as netCDF (atomic, via provenance.write_netcdf)."""
        from eqprop.provenance import write_netcdf

        return write_netcdf(self.history_dataset(), path)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        """Everything :func:`load_checkpoint` needs, as plain (non-object) arrays."""
        arrays: dict[str, np.ndarray] = {
            "format": np.asarray(GRAPH_CHECKPOINT_FORMAT if self.is_graph else CHECKPOINT_FORMAT),
            "config": np.asarray(self.config.to_json()),
            "epoch": np.asarray(self.epoch, dtype=np.int64),
            "rng_state": np.asarray(json.dumps(self.rng.bit_generator.state)),
        }
        if self.is_graph:
            from eqprop import __version__

            arrays["eqprop_version"] = np.asarray(__version__)
            arrays["n_layers"] = np.asarray(len(self.net.layers) - 1, dtype=np.int64)
            arrays["graph"] = np.asarray(json.dumps(graph_description(self.net)))
            for prefix, named in (
                ("param", self.net.parameters()),
                ("fixed", _fixed_arrays(self.net)),
            ):
                arrays[f"{prefix}_names"] = np.asarray(json.dumps(list(named)))
                for i, a in enumerate(named.values()):
                    arrays[f"{prefix}{i}"] = a
        else:
            arrays["n_layers"] = np.asarray(len(self.net.weights), dtype=np.int64)
            for l, (W, b) in enumerate(zip(self.net.weights, self.net.biases)):
                arrays[f"W{l}"] = W
                arrays[f"b{l}"] = b
        for k, v in self.optimizer.state_dict().items():
            arrays[f"opt_{k}"] = np.asarray(v)
        if self.particles is not None:
            arrays["particles"] = self.particles
        for name, p in self.eval_particles.items():
            arrays[f"{name}_particles"] = p
        for k, values in self.history.items():
            arrays[f"history_{k}"] = np.asarray(values, dtype=np.float64)
        return arrays

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write the checkpoint ``.npz`` atomically (temp file + rename)."""
        path = Path(path)
        _atomic_savez(path, self.checkpoint_arrays())
        return path

    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        if self.is_graph:
            self._restore_graph(arrays)
        else:
            self._restore_chain(arrays)
        self._restore_run(arrays)

    def _restore_graph(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Copy a graph checkpoint's parameters and fixed feedback into ``self.net``
        (:func:`load_checkpoint` checked names and shapes against this network)."""
        for prefix, named in (("param", self.net.parameters()), ("fixed", _fixed_arrays(self.net))):
            names = json.loads(str(arrays[f"{prefix}_names"]))
            if names != list(named):
                raise ValueError(
                    f"checkpoint {prefix}_names {names} differ from the network's {list(named)}"
                )
            for i, a in enumerate(named.values()):
                a[...] = arrays[f"{prefix}{i}"]

    def _restore_chain(self, arrays: Mapping[str, np.ndarray]) -> None:
        n_layers = int(arrays["n_layers"])
        if n_layers != len(self.net.weights):
            raise ValueError(
                f"checkpoint has {n_layers} weight layers, the configured network "
                f"{len(self.net.weights)}"
            )
        for l in range(n_layers):
            W, b = arrays[f"W{l}"], arrays[f"b{l}"]
            if W.shape != self.net.weights[l].shape or b.shape != self.net.biases[l].shape:
                raise ValueError(f"checkpoint layer {l + 1} has shapes {W.shape}, {b.shape}")
            self.net.weights[l][...] = W
            self.net.biases[l][...] = b

    def _restore_run(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.optimizer.load_state_dict({k[4:]: arrays[k] for k in arrays if k.startswith("opt_")})
        self.rng.bit_generator.state = json.loads(str(arrays["rng_state"]))
        if self.particles is not None:
            if "particles" not in arrays or arrays["particles"].shape != self.particles.shape:
                raise ValueError(
                    "checkpoint has no persistent particles of the right shape "
                    f"{self.particles.shape}; was it written with the same data and limit?"
                )
            self.particles[...] = arrays["particles"]
        for name, p in self.eval_particles.items():
            key = f"{name}_particles"
            if key not in arrays or arrays[key].shape != p.shape:
                raise ValueError(
                    f"checkpoint has no {name} evaluation particles of shape {p.shape}"
                )
            p[...] = arrays[key]
        self.epoch = int(arrays["epoch"])
        for k in HISTORY_VARIABLES:
            key = f"history_{k}"
            if key in arrays:
                self.history[k] = [float(v) for v in arrays[key]]
            else:  # a variable added after the checkpoint was written
                self.history[k] = [float("nan")] * self.epoch

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        data: Any = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        command: str | Sequence[str] | None = None,
        quiet: bool = False,
        stream: Any = None,
        overwrite: bool = False,
    ) -> Trainer:
        """A trainer in exactly the state saved at ``path``.

        Parameters
        ----------
        overrides : mapping, optional
            Settings to change on resume, by flat name (:func:`eqprop.config.flat_names`).
            ``epochs``, ``output``, ``data_dir`` and
            ``eval_batch_size`` keep the continuation exact. The solver settings
            ``free_method``, ``free_eps``, ``free_damping``, ``atol``, ``rtol`` and
            ``max_iter`` may change too (e.g. to continue with a faster free phase); the
            run then differs from an uninterrupted one, and a progress line says so.
            Any other change raises ValueError, among them the ``early_free_<field>``
            settings of the epochs before ``free_from_epoch``.
        """
        config, arrays = load_checkpoint(path)
        allowed = set(_RESUME_CHANGEABLE) | set(_RESUME_SOLVER)
        changes = dict(overrides or {})
        stored = config.to_flat()

        def changed(key: str) -> bool:
            """Whether the override ``key`` differs from the stored value (normalised)."""
            if key not in stored:  # e.g. an option of another rule
                return True
            try:
                return config.replace(**{key: changes[key]}).to_flat()[key] != stored[key]
            except ValueError:
                return True

        bad = sorted(k for k in changes if k not in allowed and changed(k))
        if bad:
            raise ValueError(
                f"cannot change {', '.join(bad)} when resuming from {path}; only "
                f"{', '.join(sorted(allowed))} may change"
            )
        solver = {k: v for k, v in changes.items() if k in _RESUME_SOLVER and changed(k)}
        config = config.replace(**{k: v for k, v in changes.items() if k in allowed})
        trainer = cls(
            config,
            data,
            command=command,
            quiet=quiet,
            stream=stream,
            overwrite=overwrite,
            _restore=arrays,
            _resumed_from=path,
        )
        if solver:
            listed = ", ".join(f"{k}={v!r}" for k, v in sorted(solver.items()))
            trainer.progress.line(
                f"resuming epoch {trainer.epoch} with changed solver settings ({listed}): "
                "not an exact continuation"
            )
        return trainer


class CheckpointError(ValueError):
    """A checkpoint file that cannot be resumed: unreadable, not an eqprop checkpoint, or
    with missing or inconsistent contents. The message names the file and the entry."""


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` at ``path`` (``allow_pickle=False``) or CheckpointError."""
    import zipfile
    import zlib

    def bad(why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {str(path)!r} is not a readable eqprop checkpoint: {why}; give the "
            "checkpoint.npz a run wrote (an interrupted copy or another file will not do)"
        )

    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError:  # numpy's advice to unpickle: neither an .npz nor an .npy
        raise bad("not an .npz archive (neither a zip archive nor a .npy array)") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise bad(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise bad(f"a single .npy array of shape {np.shape(loaded)}, not an .npz archive")
    try:
        with loaded as npz:
            return {k: np.array(npz[k]) for k in npz.files}
    except ValueError as exc:  # an object array (needs pickle)
        raise bad(f"an entry needs pickle ({exc})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise bad(f"damaged archive ({type(exc).__name__}: {exc})") from None


def _check_checkpoint(path: Path, arrays: Mapping[str, np.ndarray]) -> TrainConfig:
    """Validate the contents of a checkpoint; return its configuration.

    Checks the format tag, that every entry :meth:`Trainer.checkpoint_arrays` writes is
    there with the right type and shape for the stored configuration, that parameters,
    optimizer buffers and particles are finite, the random generator state is one
    PCG64 accepts, and every history has one value per epoch.
    """

    def bad(entry: str, why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {str(path)!r}: {entry} {why}; the file is damaged or was not "
            "written by this version of eqprop (resume from another checkpoint or start again)"
        )

    fmt = str(arrays["format"]) if "format" in arrays else ""
    if fmt not in _CHECKPOINT_FORMATS:
        from eqprop import __version__

        writer = (
            f"written by eqprop {arrays['eqprop_version']!s}"
            if "eqprop_version" in arrays
            else "written by no eqprop version that records one"
        )
        raise CheckpointError(
            f"checkpoint {str(path)!r} has the format tag {fmt!r} ({writer}); eqprop "
            f"{__version__} reads {' and '.join(_CHECKPOINT_FORMATS)}: resume it with the "
            "eqprop version that wrote it, or give the checkpoint.npz a run of this version wrote"
        )
    graph = fmt == GRAPH_CHECKPOINT_FORMAT
    for key in ("config", "epoch", "rng_state", "n_layers"):
        if key not in arrays:
            raise bad(key, "is missing")
    try:
        config = TrainConfig.from_json(str(arrays["config"])).validate()
    except (ValueError, TypeError) as exc:
        raise bad("config", f"is not a valid training configuration ({exc})") from None

    def integer(key: str, low: int) -> int:
        a = arrays[key]
        if a.shape != () or a.dtype.kind not in "iu" or int(a) < low:
            raise bad(key, f"is {a.tolist()!r} ({a.dtype}); expected an integer >= {low}")
        return int(a)

    epoch = integer("epoch", 0)
    n_layers = integer("n_layers", 1)
    sizes = config.sizes
    if n_layers != len(sizes) - 1:
        raise bad(
            "n_layers",
            f"is {n_layers} but the architecture {config.network.architecture!r} has "
            f"{len(sizes) - 1} weight layers",
        )
    try:
        rng_state = json.loads(str(arrays["rng_state"]))
        np.random.PCG64().state = rng_state
    except (ValueError, TypeError, KeyError) as exc:
        raise bad(
            "rng_state", f"is not a PCG64 generator state ({type(exc).__name__}: {exc})"
        ) from None

    def finite_float(key: str, shape: tuple[int, ...] | None) -> None:
        if key not in arrays:
            raise bad(key, "is missing")
        a = arrays[key]
        if a.dtype.kind != "f" or (shape is not None and a.shape != shape):
            raise bad(key, f"has dtype {a.dtype} and shape {a.shape}; expected float {shape}")
        n_bad = int(np.count_nonzero(~np.isfinite(a)))
        if n_bad:
            raise bad(
                key,
                f"holds {n_bad} NaN or infinite value(s): the run had diverged "
                "before this checkpoint was written",
            )

    if graph:
        shapes = _check_graph_entries(config, arrays, bad, finite_float)
    else:
        for l in range(n_layers):
            finite_float(f"W{l}", (sizes[l], sizes[l + 1]))
            finite_float(f"b{l}", (sizes[l + 1],))
    opt_keys = [k for k in arrays if k.startswith("opt_")]
    for key in ("opt_lrs", "opt_momentum", "opt_weight_decay", "opt_n_steps"):
        if key not in arrays:
            raise bad(key, "is missing")
    integer("opt_n_steps", 0)
    finite_float("opt_lrs", (n_layers,))
    try:
        SGD(
            arrays["opt_lrs"].tolist(),
            float(arrays["opt_momentum"]),
            float(arrays["opt_weight_decay"]),
        )
    except (ValueError, TypeError) as exc:
        raise bad(
            "the optimizer settings (opt_lrs, opt_momentum, opt_weight_decay)",
            f"are invalid ({exc})",
        ) from None
    for key in sorted(k for k in opt_keys if k[4:6] in ("vW", "vb")):
        l = int(key[6:]) if key[6:].isdigit() else -1
        if not 0 <= l < n_layers:
            raise bad(key, f"names a layer outside 0..{n_layers - 1}")
        finite_float(key, (sizes[l], sizes[l + 1]) if key[4:6] == "vW" else (sizes[l + 1],))
    for key in sorted(k for k in opt_keys if k[4:6] == "vP"):
        i = int(key[6:]) if key[6:].isdigit() else -1
        if not graph or not 0 <= i < len(shapes):
            raise bad(key, "names a parameter the network does not have")
        finite_float(key, shapes[i])
    for key in ("particles", "valid_particles", "test_particles"):
        if key in arrays:
            finite_float(key, None)
            if arrays[key].ndim != 2:
                raise bad(key, f"has shape {arrays[key].shape}; expected (samples, state)")
    for key in (k for k in arrays if k.startswith("history_")):
        a = arrays[key]
        if a.shape != (epoch,) or a.dtype.kind != "f":
            raise bad(
                key,
                f"has shape {a.shape} ({a.dtype}) but the checkpoint is at epoch "
                f"{epoch}; expected {epoch} float value(s)",
            )
    return config


def _check_graph_entries(
    config: TrainConfig,
    arrays: Mapping[str, np.ndarray],
    bad: Callable[[str, str], CheckpointError],
    finite_float: Callable[[str, tuple[int, ...] | None], None],
) -> list[tuple[int, ...]]:
    """Check a graph checkpoint's description, names and arrays against the network its
    configuration builds; return the parameters' shapes in order."""
    net = config.make_network()
    if "graph" not in arrays:
        raise bad("graph", "is missing")
    try:
        stored = json.loads(str(arrays["graph"]))
    except ValueError:
        raise bad("graph", "is not a JSON description of layers and couplings") from None
    if stored != graph_description(net):
        raise bad("graph", "describes another network than the stored configuration builds")
    for prefix, named in (("param", net.parameters()), ("fixed", _fixed_arrays(net))):
        key = f"{prefix}_names"
        if key not in arrays:
            raise bad(key, "is missing")
        try:
            names = json.loads(str(arrays[key]))
        except ValueError:
            names = None
        if names != list(named):
            raise bad(key, f"is {str(arrays[key])!r}; expected {list(named)}")
        for i, a in enumerate(named.values()):
            finite_float(f"{prefix}{i}", a.shape)
    return [a.shape for a in net.parameters().values()]


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[TrainConfig, dict[str, np.ndarray]]:
    """Read and validate a checkpoint written by :meth:`Trainer.save_checkpoint`.

    Returns
    -------
    config : TrainConfig
    arrays : dict of str -> ndarray
        All stored arrays (loaded into memory, ``allow_pickle=False``).

    Raises
    ------
    CheckpointError
        A ``ValueError`` naming the file and what is wrong: not a readable ``.npz``
        (truncated, bad CRC, a ``.npy`` or text file), another format tag, a missing or
        malformed entry (configuration, generator state, epoch, layer count, shapes),
        non-finite parameters, optimizer buffers or particles, or a history whose
        length differs from the epoch.
    FileNotFoundError
        No such file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder; give its checkpoint.npz")
    arrays = _read_npz(path)
    return _check_checkpoint(path, arrays), arrays


def train(
    config: TrainConfig,
    data: Any = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    command: str | Sequence[str] | None = None,
    quiet: bool = False,
    stream: Any = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a network as ``config`` says (or continue the checkpoint ``resume``).

    Parameters
    ----------
    config : TrainConfig
        With ``resume``, only ``epochs``/``output``/``data_dir``/``eval_batch_size`` are
        taken from it; the rest comes from the checkpoint.
    data : DatasetSplits, optional
        Use these splits instead of loading ``config.dataset``.
    resume : path, optional
        Checkpoint ``.npz`` to continue from.
    overwrite : bool
        Replace a run already in ``config.output`` instead of refusing it
        (:class:`OutputExists`).

    Returns
    -------
    TrainResult
    """
    if resume is not None:
        trainer = Trainer.from_checkpoint(
            resume,
            data,
            overrides={k: config.to_flat()[k] for k in _RESUME_CHANGEABLE},
            command=command,
            quiet=quiet,
            stream=stream,
            overwrite=overwrite,
        )
    else:
        trainer = Trainer(
            config, data, command=command, quiet=quiet, stream=stream, overwrite=overwrite
        )
    return trainer.run()
