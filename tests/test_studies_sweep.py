"""Tests of the generic sweep runner: combine, schema, resume, executors, Dask."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from eqprop.provenance import open_netcdf, variable
from studies.schema import SchemaError, check_schema
from studies.sweep import SweepError, as_dataset, grid_points, point_key, sweep

GRID = {"beta": [0.5, 0.25, 0.125], "estimator": ["one-sided", "symmetric"]}


def toy_point(beta, estimator, seed=0, marker=None, fail_once=None):
    """Deterministic toy result; records each call as a file in ``marker`` (any process)."""
    if marker is not None:
        Path(marker, f"{beta}-{estimator}-{uuid.uuid4().hex}").touch()
        flag = Path(marker, "failed-once")
        if fail_once is not None and [beta, estimator] == list(fail_once) and not flag.exists():
            flag.touch()
            raise RuntimeError("this point fails the first time")
    rng = np.random.default_rng(seed)
    order = 1 if estimator == "one-sided" else 2
    err = beta**order * (1 + 0.1 * rng.random(2))
    return xr.Dataset(
        {
            "error": variable("layer", err, "gradient error", "1"),
            "converged": variable((), beta < 0.3, "all samples converged", "1"),
            "n_iter": variable("sample", np.array([3, 4, 5], dtype=np.int64), "iterations", "1"),
        },
        coords={"layer": ["W1", "W2"], "sample": np.arange(3)},
    )


def env_point(i):
    """Thread settings seen inside a worker process."""
    import numba

    return {
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "omp": int(os.environ.get("OMP_NUM_THREADS", "-1")),
        "pid": os.getpid(),
    }


def calls(marker: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[0] for p in marker.iterdir() if p.name != "failed-once")


def strip(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_attrs(deep=False)


def test_combined_dataset_matches_direct_evaluation_and_schema():
    ds = sweep(toy_point, GRID, fixed={"seed": 3}, study="beta-sweep", progress=False)
    assert ds["error"].dims == ("beta", "estimator", "layer")
    assert list(ds["beta"].values) == GRID["beta"]
    assert list(ds["estimator"].values) == GRID["estimator"]
    for b in GRID["beta"]:
        for e in GRID["estimator"]:
            direct = toy_point(b, e, seed=3)
            got = ds.sel(beta=b, estimator=e)
            np.testing.assert_array_equal(got["error"].values, direct["error"].values)
            assert bool(got["converged"]) == bool(direct["converged"])
    assert ds["converged"].dtype == bool
    assert ds["beta"].attrs["long_name"] and ds["beta"].attrs["units"] == "1"
    assert ds.attrs["study"] == "beta-sweep"
    # seed is not a grid dim here, so the study-kind check must complain
    with pytest.raises(SchemaError, match="seed"):
        check_schema(ds)
    ds2 = ds.copy()
    ds2.attrs.pop("study")
    check_schema(ds2)


def test_check_schema_reports_missing_pieces():
    ds = sweep(toy_point, GRID, progress=False)
    check_schema(ds)
    bad = ds.copy()
    del bad["error"].attrs["units"]
    bad.attrs.pop("created_at")
    with pytest.raises(SchemaError) as info:
        check_schema(bad)
    assert "'error'" in str(info.value) and "created_at" in str(info.value)


def test_netcdf_file_round_trip_is_identical(tmp_path):
    ds = sweep(toy_point, GRID, path=tmp_path / "s.nc", progress=False)
    back = open_netcdf(tmp_path / "s.nc")
    xr.testing.assert_identical(ds, back)
    check_schema(back)


def test_resume_after_a_failure_recomputes_nothing_finished(tmp_path):
    marker = tmp_path / "calls"
    marker.mkdir()
    fixed = {"marker": str(marker), "fail_once": [0.25, "symmetric"]}
    with pytest.raises(SweepError, match=r"0\.25"):
        sweep(toy_point, GRID, fixed=fixed, out_dir=tmp_path / "pts", progress=False)
    assert len(calls(marker)) == 6  # every point ran once (one failed)
    assert len(list((tmp_path / "pts").glob("point-*.nc"))) == 5
    ds = sweep(toy_point, GRID, fixed=fixed, out_dir=tmp_path / "pts", progress=False)
    # the rerun computed only the failed point
    assert calls(marker).count("0.25-symmetric") == 2
    assert len(calls(marker)) == 7
    reference = sweep(toy_point, GRID, fixed=fixed, progress=False)
    xr.testing.assert_identical(strip(ds), strip(reference))
    # a third run computes nothing at all
    n_calls = len(calls(marker))
    again = sweep(toy_point, GRID, fixed=fixed, out_dir=tmp_path / "pts", progress=False)
    assert len(calls(marker)) == n_calls
    xr.testing.assert_identical(strip(again), strip(reference))
    assert not list((tmp_path / "pts").glob(".*tmp"))


def test_changed_fixed_arguments_do_not_reuse_points(tmp_path):
    a = sweep(toy_point, GRID, fixed={"seed": 1}, out_dir=tmp_path, progress=False)
    b = sweep(toy_point, GRID, fixed={"seed": 2}, out_dir=tmp_path, progress=False)
    assert not np.array_equal(a["error"].values, b["error"].values)
    assert len(list(tmp_path.glob("point-*.nc"))) == 12


def test_point_keys_are_stable_and_distinct():
    pts = grid_points(toy_point, GRID, {})
    assert len({p.key for p in pts}) == 6
    assert pts[0].key == point_key(toy_point, {"beta": 0.5, "estimator": "one-sided"}, {})
    assert point_key("m.f", {"beta": np.float64(0.5)}, {}) == point_key("m.f", {"beta": 0.5}, {})


def test_thread_executor_gives_the_serial_result():
    serial = sweep(toy_point, GRID, progress=False)
    with ThreadPoolExecutor(2) as ex:
        threaded = sweep(toy_point, GRID, executor=ex, progress=False)
    xr.testing.assert_identical(strip(serial), strip(threaded))


def test_dict_results_and_bad_grids():
    ds = sweep(env_point, {"i": [0, 1]}, progress=False)
    assert ds["numba_threads"].attrs["units"] == "1"
    with pytest.raises(ValueError, match="repeated"):
        sweep(toy_point, {"beta": [1, 1], "estimator": ["x"]}, progress=False)
    with pytest.raises(ValueError, match="not a number"):
        sweep(toy_point, {"beta": [None], "estimator": ["x"]}, progress=False)
    with pytest.raises(ValueError, match="long_name"):
        as_dataset(xr.Dataset({"a": ("x", [1.0])}))


def toy_env_point(beta, estimator):
    ds = toy_point(beta, estimator)
    for name, value in env_point(0).items():
        ds[name] = variable((), value, name, "1")
    return ds


def test_process_pool_matches_serial_and_limits_threads():
    serial = sweep(toy_point, GRID, progress=False)
    pooled = sweep(toy_env_point, GRID, processes=2, progress=False)
    env = pooled[["numba_threads", "omp", "pid"]]
    xr.testing.assert_identical(strip(serial), strip(pooled.drop_vars(list(env))))
    assert set(env["numba_threads"].values.ravel().tolist()) == {1}
    assert set(env["omp"].values.ravel().tolist()) == {1}
    assert os.getpid() not in env["pid"].values


def toy_env_marker_point(beta, estimator, seed=0, marker=None):
    ds = toy_point(beta, estimator, seed=seed, marker=marker)
    for name, value in env_point(0).items():
        ds[name] = variable((), value, name, "1")
    return ds


def test_dask_local_cluster_matches_serial_and_resumes(tmp_path):
    pytest.importorskip("dask.distributed")
    marker = tmp_path / "calls"
    marker.mkdir()
    fixed = {"marker": str(marker), "seed": 5}
    env = ["numba_threads", "omp", "pid"]
    serial = sweep(toy_env_marker_point, GRID, fixed=fixed, progress=False)
    n_serial = len(calls(marker))
    # half the points are already done: the Dask run must only compute the other half
    half = {"beta": GRID["beta"][:1], "estimator": GRID["estimator"]}
    sweep(toy_env_marker_point, half, fixed=fixed, out_dir=tmp_path / "pts", progress=False)
    n_before = len(calls(marker))
    distributed = sweep(
        toy_env_marker_point,
        GRID,
        fixed=fixed,
        workers=2,
        out_dir=tmp_path / "pts",
        progress=False,
    )
    xr.testing.assert_identical(strip(serial.drop_vars(env)), strip(distributed.drop_vars(env)))
    assert n_before - n_serial == 2 and len(calls(marker)) - n_before == 4
    # the points computed on the cluster ran in single-threaded worker processes
    fresh = distributed.isel(beta=slice(1, None))
    assert set(fresh["numba_threads"].values.ravel().tolist()) == {1}
    assert set(fresh["omp"].values.ravel().tolist()) == {1}
    assert os.getpid() not in fresh["pid"].values


def crash_once_point(beta, estimator, marker):
    """Kills its own worker process the first time it runs on (0.25, "symmetric")."""
    flag = Path(marker, "crashed")
    if (beta, estimator) == (0.25, "symmetric") and not flag.exists():
        flag.touch()
        os._exit(3)  # a worker dying abruptly, as when killed
    return toy_point(beta, estimator, marker=marker)


@pytest.mark.slow  # ~10 s each: worker start-up, a crash and a restart
@pytest.mark.parametrize("backend", ["processes", "workers"])
def test_killed_worker_points_are_recomputed(tmp_path, backend):
    if backend == "workers":
        pytest.importorskip("dask.distributed")
    marker = tmp_path / "calls"
    marker.mkdir()
    ds = sweep(
        crash_once_point,
        GRID,
        fixed={"marker": str(marker)},
        out_dir=tmp_path / "pts",
        progress=False,
        **{backend: 2},
    )
    assert (marker / "crashed").exists()
    reference = sweep(toy_point, GRID, progress=False)
    xr.testing.assert_identical(strip(ds), strip(reference))
    assert len(list((tmp_path / "pts").glob("point-*.nc"))) == 6


@pytest.mark.slow  # starts its own cluster (~5-10 s)
def test_existing_dask_scheduler_by_address():
    distributed = pytest.importorskip("dask.distributed")
    from studies.sweep import WORKER_ENV

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, env=dict(WORKER_ENV)
    ) as cluster:
        ds = sweep(toy_point, GRID, scheduler=cluster.scheduler_address, progress=False)
    xr.testing.assert_identical(strip(ds), strip(sweep(toy_point, GRID, progress=False)))


_SLOW_POINT = """
import time


def point(x):
    time.sleep(300)
    return {"y": float(x)}
"""

_KILLED_SWEEP = """
import slow_point_mod
from studies.sweep import sweep

sweep(slow_point_mod.point, {"x": [1, 2, 3, 4]}, processes=2, progress=False)
"""


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_workers_exit_when_the_sweep_is_killed(tmp_path):
    """kill -9 of a --processes 2 sweep: its workers (and so the pool's resource tracker)
    are gone within seconds instead of running on, re-parented to PID 1."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "slow_point_mod.py").write_text(_SLOW_POINT)
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(tmp_path)]))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SWEEP], env=env, cwd=tmp_path)
    started: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(started) < 3:  # 2 workers + tracker
            time.sleep(0.5)
            started = _children(proc.pid)
            assert proc.poll() is None, "the sweep ended before it was killed"
        assert len(started) >= 3, started
        time.sleep(2.0)  # let the workers finish their initializer and start a point
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in started):
            time.sleep(0.2)
        assert not [p for p in started if _alive(p)], "workers outlived the killed sweep"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in started:  # only the processes this test started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
