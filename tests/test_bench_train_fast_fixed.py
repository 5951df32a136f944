"""``benchmarks/bench_train_fast_fixed.py --report`` (#16): the numbers docs/solvers.rst
quotes for the 60-epoch comparison (first epoch at or below a test error, the mean over
trailing epochs and epoch windows, seconds per epoch) against a naive recomputation from
made-up histories."""

from __future__ import annotations

from pathlib import Path

import benchmark_script
import numpy as np
import pytest
import xarray as xr


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_script.loaded("bench_train_fast_fixed")


def _write_history(folder: Path, test_error, epoch_s, eval_s=1.0):
    n = len(test_error)
    folder.mkdir(parents=True)
    xr.Dataset(
        {
            "test_error": ("epoch", np.asarray(test_error) / 100),
            "train_error": ("epoch", np.zeros(n)),
            "train_time": ("epoch", np.asarray(epoch_s, float) - eval_s),
            "eval_time": ("epoch", np.full(n, eval_s)),
            "samples_per_second": ("epoch", 60000 / (np.asarray(epoch_s, float) - eval_s)),
            "free_iterations": ("epoch", np.full(n, 10.0)),
        },
        coords={"epoch": np.arange(1, n + 1)},
    ).to_netcdf(folder / "history.nc")


def test_first_crossing_and_trailing_means(bench):
    rows = [(3.0, 10.0), (2.4, 20.0), (2.6, 30.0), (2.2, 40.0)]
    assert bench._first_at_or_below(rows, 2.5) == (2, 20.0)
    assert bench._first_at_or_below(rows, 2.2) == (4, 40.0)
    assert bench._first_at_or_below(rows, 2.0) is None
    # rows with two times (the chunk report's CPU and wall seconds)
    assert bench._first_at_or_below([(3, 1, 2), (1, 5, 9)], 1.5) == (2, 5, 9)
    errors = [4.0, 2.0, 3.0, 1.0]
    assert bench._trailing_means(errors, 1) == errors
    assert bench._trailing_means(errors, 2) == [4.0, 3.0, 2.5, 2.0]
    assert bench._trailing_means(errors, 3) == [4.0, 3.0, 3.0, 2.0]
    assert bench._windows("15-24,40-49") == [(15, 24), (40, 49)]
    for bad in ("9-3", "0-4", "7", "1-2-3"):
        with pytest.raises(ValueError, match="FIRST-LAST"):
            bench._windows(bad)


def test_report_of_one_process_runs(bench, tmp_path, capsys):
    rng = np.random.default_rng(0)
    fast_err = np.round(3.5 - 0.05 * np.arange(30) + 0.3 * rng.random(30), 2)
    fixed_err = np.round(3.4 - 0.06 * np.arange(20) + 0.3 * rng.random(20), 2)
    fast_s = np.r_[150.0, np.full(29, 25.0)]
    fixed_s = np.full(20, 156.0)
    _write_history(tmp_path / "fast-s0", fast_err, fast_s)
    _write_history(tmp_path / "fixed-s0", fixed_err, fixed_s)
    thr = 2.75
    bench.main(
        ["--out", str(tmp_path), "--report", "--thresholds", str(thr), "--windows", "5-9,21-30",
         "--smooth", "3"]
    )  # fmt: skip
    out = capsys.readouterr().out

    def naive_first(errors, seconds, window):
        for e in range(len(errors)):
            lo = max(0, e + 1 - window)
            if np.mean(errors[lo : e + 1]) <= thr:
                return e + 1, np.sum(seconds[: e + 1])
        return None

    lines = [ln for ln in out.splitlines() if ln.startswith("s0 <=")]
    assert len(lines) == 2, out
    for line, window in zip(lines, (1, 3)):
        hf, hx = naive_first(fast_err, fast_s, window), naive_first(fixed_err, fixed_s, window)
        assert f"fast ep {hf[0]}, {hf[1]:.0f} s" in line, line
        if hx is None:
            assert "not in 20 ep" in line and f"> {fixed_s.sum() / hf[1]:.2f}x" in line, line
        else:
            assert f"fixed ep {hx[0]}, {hx[1]:.0f} s" in line, line
            assert f"fixed/fast {hx[1] / hf[1]:.2f}x" in line, line
    lines = out.splitlines()
    summary = lines[
        next(i for i, ln in enumerate(lines) if ln.startswith("run  ") and "epochs" in ln) :
    ]
    fast_row = next(ln for ln in summary if ln.startswith("fast s0 "))
    cells = fast_row.split()
    assert cells[2:4] == ["30", f"{fast_err[-1]:.2f}"]
    assert f"{fast_err[4:9].mean():.2f} / {fast_err[20:30].mean():.2f}" in fast_row
    assert f"{fast_s[1:].mean():.1f}" in fast_row and f"{fast_s.sum():.0f}" in fast_row
    fixed_row = next(ln for ln in summary if ln.startswith("fixed s0 "))
    # the fixed run has not trained epochs 21-30: that window's mean is "-"
    assert f"{fixed_err[4:9].mean():.2f} / -" in fixed_row


def test_report_refuses_a_bad_smoothing_window(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path), "--report", "--smooth", "0"])


def test_chunk_log_report_refuses_the_one_process_options(bench, tmp_path, capsys):
    (tmp_path / "chunks.jsonl").write_text("")
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path), "--report", "--smooth", "5"])
    assert "one process" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path), "--windows", "1-3"])  # not a report
    assert "go with --report" in capsys.readouterr().err


def test_report_plot_draws_every_run(bench, tmp_path, capsys, monkeypatch):
    """--plot: one line per run in each panel, at the runs' errors and cumulative hours."""
    rng = np.random.default_rng(3)
    errs = {p: 2 + rng.random(6) for p in ("fast", "fixed")}
    secs = {"fast": np.full(6, 30.0), "fixed": np.full(6, 180.0)}
    for p in errs:
        _write_history(tmp_path / "runs" / f"{p}-s1", errs[p], secs[p], eval_s=0.0)
    drawn = {}

    import matplotlib.pyplot as plt

    real = plt.Figure.savefig

    def spy(fig, path, **kw):
        drawn["lines"] = [
            [
                (
                    np.asarray(ln.get_xdata(), float).tolist(),
                    np.asarray(ln.get_ydata(), float).tolist(),
                )
                for ln in ax.get_lines()
            ]
            for ax in fig.axes
        ]
        return real(fig, path, **kw)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    png = tmp_path / "curves.png"
    bench.main(["--out", str(tmp_path / "runs"), "--report", "--plot", str(png)])
    assert png.read_bytes()[:4] == b"\x89PNG"
    by_epoch, by_time = drawn["lines"]
    curves = [c for c in by_epoch if len(c[0]) == 6]  # the runs, not the threshold line
    assert sorted(np.round(c[1], 6).tolist() for c in curves) == sorted(
        np.round(errs[p], 6).tolist() for p in errs
    )
    hours = sorted(c[0][-1] for c in by_time if len(c[0]) == 6)
    assert np.allclose(hours, sorted(secs[p].sum() / 3600 for p in secs))
    assert "figure:" in capsys.readouterr().out
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "chunks.jsonl").write_text("")
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path / "log"), "--report", "--plot", str(png)])
