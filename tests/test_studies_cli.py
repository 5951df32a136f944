"""`eqprop study` / `eqprop plot` entry points and the figures."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import xarray as xr

from eqprop.provenance import open_netcdf
from studies.cli import plot_main, study_main
from studies.schema import check_schema


def _png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_study_main_writes_resumes_and_plots(tmp_path, capsys):
    pytest.importorskip("eqprop.kernels")
    pytest.importorskip("matplotlib")
    out = tmp_path / "conv.nc"
    argv = [
        "convergence",
        "--methods",
        "picard,gauss-seidel",
        "--depths",
        "1,2",
        "--hidden",
        "4",
        "--n-in",
        "3",
        "--n-out",
        "2",
        "--batch-size",
        "2",
        "--max-iter",
        "60",
        "--output",
        str(out),
        "--quiet",
        "--plot",
        str(tmp_path / "c.png"),
    ]
    assert study_main(argv) == 0
    ds = open_netcdf(out)
    check_schema(ds)
    assert ds.attrs["history"].startswith("eqprop study convergence")
    points = sorted((tmp_path / "conv.nc.points").glob("point-*.nc"))
    assert len(points) == 4
    assert _png(tmp_path / "c.png")
    stamps = [p.stat().st_mtime_ns for p in points]
    # same command again: every point is loaded, none rewritten, same numbers
    assert study_main(argv) == 0
    assert [p.stat().st_mtime_ns for p in points] == stamps
    again = open_netcdf(out)
    xr.testing.assert_identical(ds.drop_attrs(deep=False), again.drop_attrs(deep=False))
    assert plot_main([str(out), "-o", str(tmp_path / "d.png")]) == 0
    assert _png(tmp_path / "d.png")


def test_bad_arguments(tmp_path):
    from eqprop._cli_options import UsageError

    with pytest.raises(UsageError, match="no-such-study"):
        study_main(["no-such-study", "-o", str(tmp_path / "x.nc")])
    with pytest.raises(UsageError, match="a,b"):
        study_main(["beta-sweep", "--betas", "a,b", "-o", str(tmp_path / "x.nc")])
    with pytest.raises(FileNotFoundError):
        plot_main([str(tmp_path / "missing.nc")])
    # bad names are caught before any point runs (eqprop turns ValueError into exit 2)
    with pytest.raises(ValueError, match="unknown method"):
        study_main(["convergence", "--methods", "foo", "-o", str(tmp_path / "x.nc")])
    with pytest.raises(ValueError, match="unknown estimator"):
        study_main(["beta-sweep", "--estimators", "two-sided", "-o", str(tmp_path / "x.nc")])
    assert not (tmp_path / "x.nc.points").exists() or not any((tmp_path / "x.nc.points").iterdir())


def _fake(kind: str) -> xr.Dataset:
    """Small synthetic datasets with each study's variables (figures only)."""
    from eqprop.provenance import dataset_attrs, variable

    rng = np.random.default_rng(0)
    if kind == "solver-convergence":
        data = {
            "residual": variable(
                ("method", "depth", "iteration", "sample"),
                rng.random((2, 2, 5, 3)),
                "residual",
                "1",
            ),
        }
        coords = {
            "method": ["picard", "anderson"],
            "depth": [1, 2],
            "iteration": np.arange(5),
            "sample": np.arange(3),
            "tol": [1e-2],
        }
    elif kind == "beta-sweep":
        data = {
            "bias": variable(("beta", "estimator", "layer"), rng.random((3, 2, 2)), "b", "1"),
            "variance": variable(("beta", "estimator", "layer"), rng.random((3, 2, 2)), "v", "1"),
        }
        coords = {
            "beta": [1e-3, 1e-2, 1e-1],
            "estimator": ["one-sided", "symmetric"],
            "layer": ["W1", "W2"],
        }
    elif kind == "gdu":
        dims = ("beta", "seed", "t", "layer", "quantity")
        data = {
            "rel_rmse": variable(dims, rng.random((2, 1, 4, 2, 3)), "r", "1"),
            "ep": variable((*dims, "element"), rng.random((2, 1, 4, 2, 3, 2)), "e", "1"),
            "bptt": variable((*dims, "element"), rng.random((2, 1, 4, 2, 3, 2)), "g", "1"),
        }
        coords = {
            "beta": [1e-3, 1e-2],
            "seed": [0],
            "t": np.arange(4),
            "layer": ["W1", "W2"],
            "quantity": ["neurons", "weights", "biases"],
        }
    else:
        dims = ("estimator", "cost", "seed", "epoch")
        data = {
            "test_error": variable(dims, rng.random((2, 1, 2, 3)), "test", "1"),
            "train_error": variable(dims, rng.random((2, 1, 2, 3)), "train", "1"),
        }
        coords = {
            "estimator": ["one-sided", "symmetric"],
            "cost": ["squared"],
            "seed": [0, 1],
            "epoch": [1, 2, 3],
        }
    ds = xr.Dataset(data, coords=coords, attrs=dataset_attrs(kind, {}, command="test"))
    ds.attrs["study"] = kind
    return ds


@pytest.mark.parametrize("kind", ["solver-convergence", "beta-sweep", "gdu", "training-curves"])
def test_every_study_kind_has_a_figure(tmp_path, kind):
    pytest.importorskip("matplotlib")
    from studies.plot import plot_study

    fig = plot_study(_fake(kind), tmp_path / "f.png")
    assert _png(tmp_path / "f.png")
    assert len(fig.axes) >= 1


def test_plot_errors(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from studies.plot import plot_study

    ds = _fake("gdu")
    ds.attrs["study"] = "unknown"
    with pytest.raises(ValueError, match="unknown"):
        plot_study(ds, tmp_path / "f.png")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"eqprop\[plot\]"):
        plot_study(_fake("gdu"), tmp_path / "f.png")


def test_list_options_are_shared_with_eqprop_compare():
    """Both commands parse comma lists with the same types (one place: eqprop._cli_options)."""
    import argparse

    from eqprop import _cli_options as O
    from eqprop.compare import _parser as compare_parser
    from studies.cli import _parser as study_parser

    assert O.float_list("1e-3, 0.5,") == [1e-3, 0.5]
    assert O.int_list("0,1,,2") == [0, 1, 2]
    assert O.name_list(" rbp , bptt,") == ["rbp", "bptt"]
    for f, bad, what in ((O.float_list, "1,x", "numbers"), (O.int_list, "1.5", "integers")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"comma-separated {what}"):
            f(bad)
    a = study_parser().parse_args(
        ["beta-sweep", "--betas", "0.1,1", "--seeds", "3,4", "--estimators", "symmetric", "-o", "x"]
    )
    assert (a.betas, a.seeds, a.estimators) == ([0.1, 1.0], [3, 4], ["symmetric"])
    c = compare_parser().parse_args(["--betas", "0.1,1", "--sizes", "4,6,3", "--estimators", "a"])
    assert (c.betas, c.sizes, c.estimators) == ([0.1, 1.0], [4, 6, 3], ["a"])


@pytest.mark.parametrize(
    "point, study",
    [("studies.convergence:convergence_point", "studies.convergence:solver_convergence")],
)
def test_point_and_study_defaults_agree(point, study):
    """A study's keyword defaults are its point function's: one grid, one meaning."""
    import importlib
    import inspect

    def params(spec):
        mod, name = spec.split(":")
        return inspect.signature(getattr(importlib.import_module(mod), name)).parameters

    p, s = params(point), params(study)
    shared = [k for k in p if k in s and p[k].kind is inspect.Parameter.KEYWORD_ONLY]
    assert len(shared) >= 8
    for k in shared:
        assert p[k].default == s[k].default, k


@pytest.mark.parametrize(
    "module, point, study, record",
    [
        ("studies.beta", "beta_point", "beta_sweep", "BetaSetup"),
        ("studies.rules", "rules_point", "rules_study", "RulesSetup"),
        ("studies.alignment", "alignment_point", "alignment_study", "AlignmentSetup"),
    ],
)
def test_point_and_study_take_one_setup_record(module, point, study, record):
    """What a study's points share is one record that the point and the study both take
    (default: the record's defaults), so their defaults cannot disagree."""
    import importlib
    import inspect

    mod = importlib.import_module(module)
    for name in (point, study):
        setup = inspect.signature(getattr(mod, name)).parameters["setup"]
        assert setup.default is None
        assert setup.annotation in (f"{record} | None", getattr(mod, record) | None)
    cls = getattr(mod, record)
    assert cls() == cls() and dataclasses.is_dataclass(cls)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls().__setattr__(dataclasses.fields(cls)[0].name, None)
