"""Resumable parameter sweeps whose points run through any ``concurrent.futures.Executor``.

A sweep evaluates ``func(**point, **fixed)`` at every point of a grid (the Cartesian
product of ``grid``'s value lists). Each point is an independent task: a pure function of
its parameters returning an :class:`xarray.Dataset` (or a dict of scalars/arrays) for that
point. Points run

* in-process, one after the other (default, :class:`SerialExecutor`);
* on a local process pool (``processes=N``);
* on a Dask cluster through :mod:`dask.distributed` (``workers=N`` starts a local cluster of
  N single-threaded worker processes, ``scheduler="tcp://host:8786"`` uses a running one);
* or on any executor passed as ``executor=`` (e.g. ``Client.get_executor()``).

Worker processes started here get ``NUMBA_NUM_THREADS=1`` and ``OMP/OPENBLAS/MKL`` thread
counts of 1 in their environment before they import numpy or numba (see
:data:`WORKER_ENV`), so N workers use N cores. Workers of an existing Dask cluster must be
started with that environment by whoever starts them.

A process-pool worker exits when the process that started it dies, however it dies
(``kill -9`` included): :func:`_exit_with_parent` asks Linux for a signal on the parent's
death (``prctl(PR_SET_PDEATHSIG)``) and, on every platform, starts a thread that polls
the parent's process id. Nothing then keeps the pool's resource tracker alive either.

With ``out_dir``, each finished point is written atomically
(:func:`eqprop.provenance.write_netcdf`) to ``out_dir/point-<hash>.nc``, where the hash is a
stable function of the function's name, the point's parameters and ``fixed``. Running the
same sweep again loads those files instead of recomputing; points whose task failed or
whose worker was killed have no file and are computed again. The combined dataset is built
only from complete point files, so it never holds a half-written point.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from eqprop.provenance import dataset_attrs, open_netcdf, to_json, write_netcdf

from .schema import coord_attrs

__all__ = [
    "DASK_WORKER_CONFIG",
    "WORKER_ENV",
    "Point",
    "SerialExecutor",
    "SweepError",
    "as_dataset",
    "grid_points",
    "open_executor",
    "point_key",
    "sweep",
]

#: Environment of worker processes: one thread each for numba and the BLAS libraries.
WORKER_ENV: dict[str, str] = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}

#: Dask configuration of local clusters: no statistical profiler in the workers (it samples
#: each worker's stack every 10 ms under the GIL). Set in this process when the cluster
#: starts; the nanny hands this process's configuration to its workers (an environment
#: variable in the workers would be overridden by it).
DASK_WORKER_CONFIG: dict[str, object] = {"distributed.worker.profile.enabled": False}

_POINT_ATTR = "sweep_point"  # JSON of the point's parameters, stored in each point file


class SweepError(RuntimeError):
    """Some points of a sweep failed; the others are saved and a rerun retries only these.

    Attributes
    ----------
    failures : dict
        ``{point key: (params, exception)}``.
    """

    def __init__(self, failures: dict[str, tuple[dict[str, Any], BaseException]]):
        self.failures = failures
        lines = [f"{to_json(p)}: {type(e).__name__}: {e}" for p, e in failures.values()]
        super().__init__(
            f"{len(failures)} sweep point(s) failed (finished points are saved; "
            "rerun to retry these):\n  " + "\n  ".join(lines)
        )


class SerialExecutor(Executor):
    """An executor that runs each task in the calling process when it is submitted.

    Exceptions of the task are stored in the returned future (``KeyboardInterrupt`` and
    other non-``Exception`` errors propagate at once).
    """

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        """Run ``fn(*args, **kwargs)`` now; return a finished future with its outcome."""
        future: Future[Any] = Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future


@dataclass(frozen=True)
class Point:
    """One grid point: its position in the grid, parameters and file key."""

    index: tuple[int, ...]
    params: dict[str, Any]
    key: str


def _plain(value: Any) -> Any:
    """Grid values as plain Python numbers/strings/bools (stable hashing and coords)."""
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError(
            f"grid value {value!r} ({type(value).__name__}) is not a number, string or bool; "
            "sweep over a name or index and look the object up inside the function"
        )
    return value


def fixed_record(fixed: Mapping[str, Any]) -> dict[str, Any]:
    """``fixed`` as it is hashed and recorded: a dataclass value (a study's setup record)
    as its fields, nested records included (:func:`dataclasses.asdict`)."""
    return {
        k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
        for k, v in fixed.items()
    }


def _func_name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def point_key(
    func: Callable[..., Any] | str, params: Mapping[str, Any], fixed: Mapping[str, Any]
) -> str:
    """Stable 16-hex-digit hash of (function name, point parameters, fixed arguments).

    The same sweep run again (any process, any machine) gives the same keys; changing a
    fixed argument or the function changes them, so stale results are never reused.
    """
    name = func if isinstance(func, str) else _func_name(func)
    text = to_json({"func": name, "params": dict(params), "fixed": fixed_record(fixed)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def grid_points(
    func: Callable[..., Any] | str, grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any]
) -> list[Point]:
    """All points of ``grid`` in C order (last name varies fastest)."""
    names = list(grid)
    values = [[_plain(v) for v in grid[n]] for n in names]
    for name, vals in zip(names, values):
        if len(vals) == 0:
            raise ValueError(f"grid[{name!r}] is empty; give at least one value")
        if len(set(vals)) != len(vals):
            raise ValueError(f"grid[{name!r}] has repeated values {vals}")
    points = []
    for index in itertools.product(*(range(len(v)) for v in values)):
        params = {n: values[i][j] for i, (n, j) in enumerate(zip(names, index))}
        points.append(Point(tuple(index), params, point_key(func, params, fixed)))
    return points


def as_dataset(out: xr.Dataset | Mapping[str, Any]) -> xr.Dataset:
    """Normalise a point function's return value to a Dataset following the schema.

    A Dataset is kept; coordinates without ``long_name``/``units`` get them from
    :func:`studies.schema.coord_attrs`; data variables must have them already.
    A dict maps names to scalars, arrays (dims ``<name>_0``, ``<name>_1``, ...),
    ``(dims, data)`` or ``(dims, data, attrs)`` tuples, or DataArrays; variables without
    ``long_name``/``units`` get ``long_name=name`` and ``units="1"``.
    """
    if isinstance(out, xr.Dataset):
        ds = out.copy()
        for name in ds.data_vars:
            for key in ("long_name", "units"):
                if not isinstance(ds[name].attrs.get(key), str):
                    raise ValueError(
                        f"the sweep function returned data variable {name!r} without "
                        f"{key!r}; set it (units='1' when dimensionless) or return a dict"
                    )
    elif isinstance(out, Mapping):
        data_vars: dict[str, xr.Variable | xr.DataArray] = {}
        for name, value in out.items():
            if isinstance(value, xr.DataArray):
                var: Any = value.copy()
            elif isinstance(value, tuple):
                var = xr.Variable(*value)
            else:
                arr = np.asarray(value)
                var = xr.Variable(tuple(f"{name}_{i}" for i in range(arr.ndim)), arr)
            var.attrs.setdefault("long_name", str(name))
            var.attrs.setdefault("units", "1")
            data_vars[str(name)] = var
        ds = xr.Dataset(data_vars)
    else:
        raise TypeError(
            f"the sweep function returned {type(out).__name__}; return an xarray.Dataset or "
            "a dict of scalars/arrays"
        )
    for name in ds.coords:
        for key, value in coord_attrs(str(name)).items():
            if not isinstance(ds[name].attrs.get(key), str):
                ds[name].attrs[key] = value
    return ds


def _compute_point(
    func: Callable[..., Any],
    params: dict[str, Any],
    fixed: dict[str, Any],
    coord_info: dict[str, dict[str, str]],
) -> xr.Dataset:
    """Task run by the executor: evaluate one point and label it with its parameters."""
    start = time.perf_counter()
    ds = as_dataset(func(**params, **fixed))
    clash = [n for n in params if n in ds.dims or n in ds.variables]
    if clash:
        raise ValueError(f"the sweep function's result already uses the grid names {clash}")
    coords = {n: xr.Variable((), v, attrs=dict(coord_info[n])) for n, v in params.items()}
    ds = ds.assign_coords(coords)
    ds.attrs = {
        _POINT_ATTR: to_json(params),
        "point_wall_time": time.perf_counter() - start,
        "point_pid": os.getpid(),
    }
    return ds


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for child processes started inside the block."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: Seconds between two looks of a worker's watchdog thread at its parent's process id.
PARENT_POLL_INTERVAL = 0.5

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _watch_parent(parent_pid: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:  # re-parented: the parent is gone
            os._exit(1)


def _exit_with_parent(parent_pid: int, interval: float = PARENT_POLL_INTERVAL) -> None:
    """Make this (worker) process exit when ``parent_pid``, its parent, dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so the kernel signals this process when
    the parent thread that started it ends (the sweep's thread; the pool lives inside the
    sweep call), even while this process runs compiled code without the GIL. Everywhere:
    a daemon thread that calls ``os._exit(1)`` once ``os.getppid()`` is no longer
    ``parent_pid``. A parent that died before this ran is caught by the first check.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid, interval), daemon=True, name="parent-watch"
    ).start()


def _init_worker(parent_pid: int) -> None:
    """Process-pool initializer: exit with the parent, single-threaded BLAS."""
    _exit_with_parent(parent_pid)
    _limit_threads()


def _limit_threads() -> None:
    """Single-threaded BLAS in this process even if it was imported already."""
    os.environ.update(WORKER_ENV)
    try:
        from threadpoolctl import threadpool_limits  # optional
    except ImportError:
        return
    threadpool_limits(1)


@dataclass
class _ExecutorHandle:
    executor: Executor
    max_pending: int
    restart: Callable[[], Executor] | None = None


@contextlib.contextmanager
def open_executor(
    executor: Executor | None = None,
    *,
    processes: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> Iterator[_ExecutorHandle]:
    """Context manager giving the executor a sweep runs on (at most one option set).

    Parameters
    ----------
    executor : concurrent.futures.Executor, optional
        Used as is (not shut down at the end).
    processes : int, optional
        Local ``ProcessPoolExecutor`` with this many single-threaded ``spawn`` workers.
    workers : int, optional
        Local Dask cluster with this many single-threaded worker processes.
    scheduler : str, optional
        Address of a running Dask scheduler (``"tcp://host:8786"``).
    """
    chosen = [o for o in (executor, processes, workers, scheduler) if o is not None]
    if len(chosen) > 1:
        raise ValueError("give at most one of executor, processes, workers, scheduler")
    if executor is not None:
        n = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
        yield _ExecutorHandle(executor, 2 * int(n))
    elif processes is not None:
        if processes < 1:
            raise ValueError(f"processes={processes}; give at least 1")
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")

        def make() -> Executor:
            return ProcessPoolExecutor(
                processes, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),)
            )

        with _environ(WORKER_ENV):
            handle = _ExecutorHandle(make(), 2 * processes, make)
            try:
                yield handle
            finally:
                handle.executor.shutdown(wait=True, cancel_futures=True)
    elif workers is not None or scheduler is not None:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - dask is an optional extra
            raise ImportError(
                "workers=/scheduler= need dask.distributed: pip install 'eqprop[dask]'"
            ) from exc
        with contextlib.ExitStack() as stack:
            if scheduler is not None:
                client = stack.enter_context(Client(scheduler))
            else:
                assert workers is not None
                if workers < 1:
                    raise ValueError(f"workers={workers}; give at least 1")
                stack.enter_context(_environ(WORKER_ENV))
                import logging

                import dask

                stack.enter_context(dask.config.set(DASK_WORKER_CONFIG))

                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        env=dict(WORKER_ENV),
                        silence_logs=logging.WARNING,
                    )
                )
                client = stack.enter_context(Client(cluster))
            n_threads = sum(client.nthreads().values()) or 1
            yield _ExecutorHandle(client.get_executor(pure=False), 2 * n_threads)
    else:
        yield _ExecutorHandle(SerialExecutor(), 1)


class _Progress:
    """tqdm bar on a terminal, one plain line per point otherwise, or nothing."""

    def __init__(self, total: int, done: int, mode: bool | None, desc: str):
        self.total, self.done = total, done
        self.bar = None
        self.lines = False
        if mode is False:
            return
        if mode is True or sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=desc, unit="point")
        else:
            self.lines = True
            print(f"{desc}: {done}/{total} points already done", file=sys.stderr, flush=True)

    def update(self, params: dict[str, Any], status: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.lines:
            print(
                f"[{self.done}/{self.total}] {to_json(params)} {status}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _load_point(path: Path, point: Point) -> xr.Dataset | None:
    if not path.exists():
        return None
    try:
        ds = open_netcdf(path)
    except Exception:
        return None  # unreadable (should not happen: writes are atomic); recompute
    if ds.attrs.get(_POINT_ATTR) != to_json(point.params):
        return None
    return ds


def _run(
    func: Callable[..., Any],
    points: list[Point],
    fixed: dict[str, Any],
    coord_info: dict[str, dict[str, str]],
    handle: _ExecutorHandle,
    out_dir: Path | None,
    progress: bool | None,
    desc: str,
    max_restarts: int = 3,
) -> dict[str, xr.Dataset]:
    results: dict[str, xr.Dataset] = {}
    todo: list[Point] = []
    for p in points:
        loaded = _load_point(out_dir / f"point-{p.key}.nc", p) if out_dir else None
        if loaded is None:
            todo.append(p)
        else:
            results[p.key] = loaded
    bar = _Progress(len(points), len(results), progress, desc)
    failures: dict[str, tuple[dict[str, Any], BaseException]] = {}
    queue = list(reversed(todo))
    pending: dict[Future[Any], Point] = {}
    restarts = 0
    last_broken: BaseException | None = None

    def finish(fut: Future[Any], p: Point) -> bool:
        """Record a finished task; False when its pool broke (the point must rerun)."""
        nonlocal last_broken
        try:
            ds = fut.result()
        except BrokenProcessPool as exc:
            last_broken = exc
            return False
        except Exception as exc:
            failures[p.key] = (p.params, exc)
            bar.update(p.params, f"FAILED: {type(exc).__name__}: {exc}")
            return True
        if out_dir is not None:
            write_netcdf(ds, out_dir / f"point-{p.key}.nc")
        results[p.key] = ds
        bar.update(p.params, f"done in {ds.attrs['point_wall_time']:.3g} s")
        return True

    try:
        while queue or pending:
            broken: list[Point] = []
            while queue and len(pending) < handle.max_pending:
                p = queue.pop()
                try:
                    fut = handle.executor.submit(_compute_point, func, p.params, fixed, coord_info)
                except BrokenProcessPool as exc:
                    broken.append(p)
                    last_broken = exc
                    break
                pending[fut] = p
            if broken:
                done = {f for f in pending if f.done()}
            else:
                done = wait(list(pending), return_when=FIRST_COMPLETED)[0]
            for fut in done:
                p = pending.pop(fut)
                if not finish(fut, p):
                    broken.append(p)
            if broken:
                # a worker died (killed, out of memory): the whole pool is unusable. Keep
                # what finished meanwhile, start a new pool, resubmit every other point.
                for fut in [f for f in pending if f.done()]:
                    p = pending.pop(fut)
                    if not finish(fut, p):
                        broken.append(p)
                broken += list(pending.values())
                pending.clear()
                if handle.restart is None or restarts >= max_restarts:
                    broken += reversed(queue)
                    queue.clear()
                    for p in broken:
                        failures[p.key] = (p.params, last_broken or RuntimeError("broken"))
                        bar.update(p.params, "FAILED: worker process died")
                else:
                    restarts += 1
                    handle.executor.shutdown(wait=False, cancel_futures=True)
                    handle.executor = handle.restart()
                    queue.extend(reversed(broken))
    finally:
        bar.close()
        for fut in pending:
            fut.cancel()
    if failures:
        raise SweepError(failures)
    return results


def _nest(names: list[str], sizes: list[int], by_index: dict[tuple[int, ...], xr.Dataset]) -> Any:
    def build(prefix: tuple[int, ...]) -> Any:
        if len(prefix) == len(sizes):
            return by_index[prefix]
        return [build((*prefix, i)) for i in range(sizes[len(prefix)])]

    return build(())


def sweep(
    func: Callable[..., Any],
    grid: Mapping[str, Sequence[Any]],
    *,
    fixed: Mapping[str, Any] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    processes: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    title: str | None = None,
    study: str | None = None,
    config: Mapping[str, Any] | None = None,
    command: str | Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    coords: Mapping[str, Mapping[str, str]] | None = None,
    progress: bool | None = None,
) -> xr.Dataset:
    """Evaluate ``func(**point, **fixed)`` over a grid and combine the results.

    Parameters
    ----------
    func : callable
        Pure function of keyword arguments returning an :class:`xarray.Dataset` (every
        data variable with ``long_name`` and ``units``) or a dict of scalars/arrays (see
        :func:`as_dataset`). It must be importable by name (a module-level function) when
        points run in other processes. Its result must not use the grid names.
    grid : dict of str -> list
        Sweep dimensions and their values (numbers, strings or bools); every combination
        is a point. The dimension order of the result follows the dict order.
    fixed : dict, optional
        Further keyword arguments, the same for every point (part of the point hash; a
        dataclass value, such as a study's setup record, is hashed and recorded as its
        fields, see :func:`fixed_record`).
    out_dir : path-like, optional
        Folder for one netCDF file per finished point (created if needed); a rerun with
        the same arguments loads finished points from it instead of computing them.
    path : path-like, optional
        Also write the combined dataset there (atomically).
    executor, processes, workers, scheduler
        Where the points run (at most one; default in-process); see :func:`open_executor`.
    title, study : str, optional
        Global attributes ``title`` and ``study`` (the study kind, used by the figures).
    config : dict, optional
        Extra settings recorded in the ``config`` attribute (grid and fixed are always).
    command : str or list of str, optional
        Recorded in ``history``; default ``sys.argv``.
    seeds : list of int, optional
        Recorded in the ``seeds`` attribute.
    coords : dict, optional
        ``{grid name: {"long_name": ..., "units": ...}}`` for grid coordinates whose names
        are not in :data:`studies.schema.DIMENSIONS` (default long_name=name, units="1").
    progress : bool, optional
        True: tqdm bar; False: silent; None (default): bar on a terminal, else one plain
        line per point on stderr.

    Returns
    -------
    xarray.Dataset
        The grid names as leading dimensions with coordinates, followed by the
        dimensions of each point's result (padded with NaN where points differ in length),
        and the provenance attributes of :func:`eqprop.provenance.dataset_attrs`.

    Raises
    ------
    SweepError
        After all other points finished (and were saved), when some points failed.
    """
    fixed = dict(fixed or {})
    names = list(grid)
    points = grid_points(func, grid, fixed)
    coord_info = {n: coord_attrs(n) for n in names}
    for name, attrs in (coords or {}).items():
        if name not in coord_info:
            raise ValueError(f"coords names {name!r}, which is not a grid name {names}")
        coord_info[name].update(attrs)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    desc = str(study or getattr(func, "__name__", "sweep"))
    with open_executor(
        executor, processes=processes, workers=workers, scheduler=scheduler
    ) as handle:
        results = _run(func, points, fixed, coord_info, handle, out, progress, desc)
    by_index = {p.index: results[p.key].drop_attrs(deep=False) for p in points}
    sizes = [len(grid[n]) for n in names]
    combined = xr.combine_nested(
        _nest(names, sizes, by_index),
        concat_dim=names,
        data_vars="all",
        coords="different",
        compat="equals",
        join="outer",
        combine_attrs="override",
    )
    combined = combined.transpose(*names, ...)
    # coordinates in grid order first, so that ds.sizes lists the sweep dims first
    order = names + [c for c in combined.coords if c not in names]
    combined = combined.drop_vars(list(combined.coords)).assign_coords(
        {c: combined.coords[c].variable for c in order}
    )
    full_config = {
        "func": _func_name(func),
        "grid": {n: [_plain(v) for v in grid[n]] for n in names},
        "fixed": fixed_record(fixed),
        **dict(config or {}),
    }
    attrs = dataset_attrs(title or f"sweep of {desc}", full_config, command, seeds)
    if study is not None:
        attrs["study"] = study
    attrs["sweep_dims"] = to_json(names)
    combined.attrs = attrs
    if path is not None:
        write_netcdf(combined, path)
    return combined
