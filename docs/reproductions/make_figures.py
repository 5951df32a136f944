"""Training curves of the reproduction pages, from recorded runs (issue 15).

Two steps, run from the project root::

    # 1. train (or reuse) every run below and record its history under
    #    docs/reproductions/data/ (a few KB of netCDF each)
    python docs/reproductions/make_figures.py run --data-dir DATA_DIR
    # 2. draw docs/figures/repro_<page>.png from the recorded histories and print the
    #    numbers the pages quote (last-epoch errors, wall time, commit); and
    #    docs/figures/repro_conv.png from the conv runs' CSV files (CONV_CURVES)
    python docs/reproductions/make_figures.py plot

``run`` calls ``eqprop train ARGS --seed S --data-dir DATA_DIR --output
runs/repro/NAME-seedS`` for each run and seed of :data:`RUNS` (``DATA_DIR``: a folder
with the four MNIST IDX files; default ``$EQPROP_DATA_DIR/mnist``). A run folder that
already holds a complete history (all epochs) is not trained again unless ``--retrain``
is given; ``run NAME ...`` restricts it to some runs. The copy recorded under
``docs/reproductions/data/NAME-seedS.nc`` names the data folder ``DATA_DIR`` instead of
the machine's path (in its ``history`` and ``config`` attributes); everything else is
the file ``eqprop train`` wrote, including the commit it ran at and the wall time of
every epoch.

Set the environment of the runs as the pages say (one thread:
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from eqprop.config import TrainConfig  # reads every format of a history's config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "reproductions" / "data"
FIGURES = ROOT / "docs" / "figures"


@dataclass(frozen=True)
class Run:
    """One setting: ``eqprop train`` options, the seeds run, and its label in figures."""

    name: str
    args: tuple[str, ...]
    seeds: tuple[int, ...]
    label: str


RUNS = (
    Run(
        "scellier2017-1h",
        ("--preset", "scellier2017-1h"),
        (0, 1, 2),
        "scellier2017-1h preset (784-500-10, random-sign EP, squared cost)",
    ),
    Run(
        "ernoult2019-p1h",
        ("--preset", "ernoult2019-p1h"),
        (0,),
        "ernoult2019-p1h preset (one-sided EP, squared cost, nudge outside)",
    ),
    Run(
        "ernoult2019-p1h-ce-inside",
        ("--preset", "ernoult2019-p1h", "--cost", "cross-entropy", "--nudge", "inside"),
        (0,),
        "ernoult2019-p1h --cost cross-entropy --nudge inside",
    ),
)

#: Test error the pages compare with (%), drawn as a dotted line.
TARGET = 2.5

#: The figure of each page and the runs it draws.
PAGES = {
    "scellier2017": ("scellier2017-1h",),
    "ernoult2019": ("ernoult2019-p1h",),
    "laborieux2021": ("ernoult2019-p1h", "ernoult2019-p1h-ce-inside"),
}


def _runs(names: list[str]) -> list[Run]:
    known = {r.name: r for r in RUNS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown run(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names] if names else list(RUNS)


def _complete(history: Path) -> bool:
    if not history.is_file():
        return False
    with xr.open_dataset(history) as ds:
        epochs = TrainConfig.from_json(ds.attrs["config"]).run.epochs
        return ds.sizes["epoch"] == epochs and bool(np.isfinite(ds["test_error"]).all())


def record(history: Path, out: Path) -> None:
    """Copy a run's ``history.nc`` to ``out``, its data folder renamed ``DATA_DIR``."""
    with xr.open_dataset(history) as ds:
        ds = ds.load()
    data_dir = TrainConfig.from_json(ds.attrs["config"]).data.data_dir
    if data_dir:
        for key in ("history", "config"):
            ds.attrs[key] = ds.attrs[key].replace(data_dir, "DATA_DIR")
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out)


def run(names: list[str], data_dir: str, runs_dir: Path, retrain: bool) -> None:
    for r in _runs(names):
        for seed in r.seeds:
            folder = runs_dir / f"{r.name}-seed{seed}"
            if retrain or not _complete(folder / "history.nc"):
                cmd = [sys.executable, "-m", "eqprop", "train", *r.args, "--seed", str(seed)]
                cmd += ["--data-dir", data_dir, "--output", str(folder), "--overwrite"]
                print("+", " ".join(cmd[1:]), flush=True)
                subprocess.run(cmd, check=True, cwd=ROOT)
            record(folder / "history.nc", DATA / f"{r.name}-seed{seed}.nc")


def _histories(name: str) -> list[xr.Dataset]:
    files = sorted(DATA.glob(f"{name}-seed*.nc"))
    if not files:
        raise SystemExit(
            f"no recorded history for {name!r} under {DATA.relative_to(ROOT)}; "
            f"run: python docs/reproductions/make_figures.py run {name}"
        )
    return [xr.load_dataset(f) for f in files]


def summary(name: str) -> list[dict]:
    """Per recorded seed: last-epoch errors (%), epochs, wall time (min), commit."""
    rows = []
    for ds in _histories(name):
        cfg = TrainConfig.from_json(ds.attrs["config"])
        rows.append(
            {
                "run": name,
                "seed": cfg.run.seed,
                "epochs": int(ds.sizes["epoch"]),
                "test": 100 * float(ds["test_error"][-1]),
                "valid": 100 * float(ds["valid_error"][-1]),
                "train": 100 * float(ds["train_error"][-1]),
                "minutes": float((ds["train_time"] + ds["eval_time"]).sum()) / 60,
                "commit": ds.attrs["git_commit"][:7],
                "command": ds.attrs["history"],
            }
        )
    return rows


def plot_page(page: str, dpi: int = 100) -> Path:
    """Draw ``docs/figures/repro_<page>.png``: test error (solid) and training error
    (dashed) per epoch of each run of the page, one line per seed, log scale (a training
    error of 0 is not drawn), the target as a dotted line."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    known = {r.name: r for r in RUNS}
    top = 0.0
    for i, name in enumerate(PAGES[page]):
        colour = f"C{i}"
        for k, ds in enumerate(_histories(name)):
            epoch = ds["epoch"].values
            test, train = 100 * ds["test_error"].values, 100 * ds["train_error"].values
            label = known[name].label if k == 0 else None
            ax.plot(epoch, test, "-", color=colour, marker="o", markersize=2.5, label=label)
            ax.plot(epoch, train, "--", color=colour, linewidth=1)
            top = max(top, float(np.nanmax(test[1:] if len(test) > 1 else test)))
    ax.axhline(TARGET, color="0.3", linestyle=":", linewidth=1)
    ax.annotate(
        f"target {TARGET:g} %",
        (0.99, TARGET),
        xycoords=("axes fraction", "data"),
        xytext=(0, -3),
        textcoords="offset points",
        ha="right",
        va="top",
        fontsize="x-small",
        color="0.3",
    )
    ax.set_yscale("log")
    ax.set_ylim(None, 1.6 * top)
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("epoch")
    ax.set_ylabel("error rate [%] (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small", loc="lower left")
    ax.set_title(
        "MNIST test error (solid) and training error (dashed), one line per seed", fontsize="medium"
    )
    FIGURES.mkdir(parents=True, exist_ok=True)
    out = FIGURES / f"repro_{page}.png"
    fig.savefig(out, dpi=dpi)
    return out


#: The conv runs' curves (CSV files beside this script, written by
#: ``benchmarks/train_conv_ep.py``): panel, file, label, the training images of one of
#: its epochs (for the per-epoch files, whose samples seen are ``epoch * images``; None:
#: a ``--curve-out`` file with a ``samples_seen`` column).
CONV_CURVES = (
    ("MNIST, P-conv", "ernoult2019_pconv.csv", "10k images x 3 epochs, 2k test", 10000),
    (
        "MNIST, P-conv",
        "ernoult2019_pconv_60k_curve.csv",
        "60k, epoch 1 (2nd run, partial), 1k test",
        None,
    ),
    (
        "MNIST, P-conv",
        "ernoult2019_pconv_60k_epoch1_curve.csv",
        "60k, epoch 1 (3rd run), 1k test",
        None,
    ),
    (
        "MNIST, P-conv",
        "ernoult2019_pconv_60k.csv",
        "60k, end of each epoch, 10k test",
        60000,
    ),
    (
        "Fashion-MNIST, conv Hopfield",
        "conv_hopfield_fmnist.csv",
        "5,000 images x 3 epochs, 2,000 test",
        5000,
    ),
    (
        "Fashion-MNIST, conv Hopfield",
        "conv_hopfield_fmnist_10k.csv",
        "10,000 images per epoch, 10,000 test",
        10000,
    ),
)


def conv_curves() -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Per panel of :data:`CONV_CURVES`: (label, samples seen, test error %) of each
    recorded file (a file not recorded is left out)."""
    import csv

    panels: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for panel, name, label, images in CONV_CURVES:
        path = ROOT / "docs" / "reproductions" / name
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        if images is None:
            seen = np.array([float(r["samples_seen"]) for r in rows])
        else:
            seen = np.array([float(r["epoch"]) * images for r in rows])
        test = np.array([100 * float(r["test_error"]) for r in rows])
        panels.setdefault(panel, []).append((label, seen, test))
    return panels


def plot_conv(dpi: int = 100) -> Path:
    """Draw ``docs/figures/repro_conv.png``: test error against training samples seen of
    the recorded conv runs (:data:`CONV_CURVES`), one panel per data set, from 0."""
    from matplotlib.figure import Figure

    panels = conv_curves()
    if not panels:
        raise SystemExit("no conv curve recorded under docs/reproductions/")
    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel, curves) in zip(axes, panels.items(), strict=True):
        for i, (label, seen, test) in enumerate(curves):
            style = "s" if len(seen) == 1 else "-o"
            ax.plot(seen / 1000, test, style, color=f"C{i}", markersize=3, label=label)
        ax.set_ylim(0, None)
        ax.set_xlim(0, None)
        ax.set_xlabel("training samples seen [thousands]")
        ax.set_title(panel, fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
        # the first curves fall from the upper left; the corner opposite stays free
        ax.legend(fontsize="x-small", loc="upper right" if ax is axes[0] else "lower left")
    axes[0].set_ylabel("test error [%]")
    FIGURES.mkdir(parents=True, exist_ok=True)
    out = FIGURES / "repro_conv.png"
    fig.savefig(out, dpi=dpi)
    return out


def plot() -> None:
    for page in PAGES:
        print(f"wrote {plot_page(page).relative_to(ROOT)}")
    print(f"wrote {plot_conv().relative_to(ROOT)}")
    print(f"\n{'run':28s} seed epochs  test %  valid %  train %  minutes  commit")
    for r in RUNS:
        for row in summary(r.name):
            print(
                f"{row['run']:28s} {row['seed']:4d} {row['epochs']:6d} {row['test']:7.2f} "
                f"{row['valid']:8.2f} {row['train']:8.2f} {row['minutes']:8.1f}  {row['commit']}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p_run = sub.add_parser("run", help="train (or reuse) the runs and record their histories")
    p_run.add_argument("names", nargs="*", help="runs to make (default: all)")
    default_data = os.path.join(os.environ.get("EQPROP_DATA_DIR", "DATA_DIR"), "mnist")
    p_run.add_argument("--data-dir", default=default_data, help="folder of the MNIST files")
    p_run.add_argument("--runs", type=Path, default=ROOT / "runs" / "repro")
    p_run.add_argument("--retrain", action="store_true", help="train even if complete")
    sub.add_parser("plot", help="draw docs/figures/repro_*.png and print the numbers")
    a = parser.parse_args(argv)
    if a.step == "run":
        run(a.names, a.data_dir, a.runs, a.retrain)
    else:
        plot()


if __name__ == "__main__":
    main()
