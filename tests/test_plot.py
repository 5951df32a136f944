"""What a reader sees in the figures of `eqprop plot`, and its bad input (issues 10, 15).

The figures are checked through the matplotlib objects they are made of (legend texts,
line styles, z-order, axis labels), on small synthetic study datasets that carry each
study's variables, dims and attributes.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from eqprop.provenance import dataset_attrs, variable, write_netcdf

pytest.importorskip("matplotlib")

from studies.plot import StudyFileError, plot_study


def _study(kind: str, solver_dim: str = "solver") -> xr.Dataset:
    """A small study dataset of ``kind`` with the variables its figure draws."""
    rng = np.random.default_rng(0)
    if kind == "solver-convergence":
        dims = (solver_dim, "depth", "iteration", "sample")
        shape = (2, 2, 30, 3)
        decay = np.exp(-0.3 * np.arange(30))[None, None, :, None]
        data = {
            "residual": variable(dims, decay * (1 + rng.random(shape)), "residual", "1"),
            "energy": variable(dims, -1 + decay * rng.random(shape), "energy F", "1"),
        }
        coords = {
            solver_dim: ["picard", "anderson"],
            "depth": [1, 2],
            "iteration": np.arange(30),
            "sample": np.arange(3),
            "tol": [1e-2, 1e-4],
        }
    elif kind == "beta-sweep":
        dims = ("beta", "estimator", "layer")
        variance = rng.random((3, 3, 2))
        variance[:, [0, 2], :] = 0.0  # one-sided, symmetric: deterministic
        data = {
            "bias": variable(dims, rng.random((3, 3, 2)), "bias", "1"),
            "variance": variable(dims, variance, "variance", "1"),
        }
        coords = {
            "beta": [1e-3, 1e-2, 1e-1],
            "estimator": ["one-sided", "random-sign", "symmetric"],
            "layer": ["W1", "W2"],
            "seed": [0, 1, 2],
        }
    elif kind == "gdu":
        dims = ("beta", "seed", "t", "layer", "quantity")
        ep = rng.random((2, 1, 4, 2, 3, 2))
        data = {
            "rel_rmse": variable(dims, rng.random((2, 1, 4, 2, 3)), "r", "1"),
            "ep": variable((*dims, "element"), ep, "EP update", "1"),
            "bptt": variable((*dims, "element"), ep, "-BPTT gradient", "1"),
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
    for name in ds.coords:
        ds[name].attrs.update(long_name=str(name), units="1")
    ds.attrs["study"] = kind
    return ds


def _legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


# --------------------------------------------------------------------------- figures


@pytest.mark.parametrize("solver_dim", ["solver", "method"])
def test_convergence_figure_draws_the_energy_it_promises_and_labels_tolerances(
    tmp_path, solver_dim
):
    fig = plot_study(_study("solver-convergence", solver_dim), tmp_path / "c.png")
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert any("energy" in y for y in ylabels), ylabels
    assert any("residual" in y for y in ylabels), ylabels
    energy_axes = [ax for ax in fig.axes if ax.get_position().y0 < 0.4]
    assert len(energy_axes) == 2 and all(len(ax.get_lines()) == 2 for ax in energy_axes)
    texts = _legend_texts(fig)
    assert "tolerances (atol)" in texts
    assert {"picard", "anderson"} <= set(texts)
    # each tolerance is written next to its line
    annotations = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {"0.01", "0.0001"} <= annotations


def test_convergence_energy_gap_is_measured_from_the_lowest_energy_reached(tmp_path):
    ds = _study("solver-convergence")
    fig = plot_study(ds, tmp_path / "c.png")
    ax = min(fig.axes[:4], key=lambda a: (a.get_position().y0, a.get_position().x0))
    e = ds["energy"].sel(depth=1)
    floor = e.min(["solver", "iteration"])
    expected = (e.sel(solver="picard") - floor).max("sample").values
    line = ax.get_lines()[0]
    y = np.asarray(line.get_ydata())
    np.testing.assert_allclose(y, expected[expected > 0])


def test_gdu_upper_panels_have_a_legend_and_bptt_is_drawn_over_ep(tmp_path):
    fig = plot_study(_study("gdu"), tmp_path / "g.png")
    upper = [ax for ax in fig.axes if ax.get_position().y0 > 0.4]
    assert len(upper) == 2
    for ax in upper:
        legend = ax.get_legend()
        assert legend is not None
        assert {"EP update", "-BPTT"} <= {t.get_text() for t in legend.get_texts()}
        lines = ax.get_lines()
        ep = [ln for ln in lines if ln.get_linestyle() == "-"]
        bptt = [ln for ln in lines if ln.get_linestyle() != "-"]
        assert ep and len(ep) == len(bptt)
        # identical data (EP == -BPTT here): the dashed line must stay visible on top
        assert min(b.get_zorder() for b in bptt) > max(e.get_zorder() for e in ep)
        assert min(e.get_linewidth() for e in ep) > max(b.get_linewidth() for b in bptt)


def test_beta_sweep_says_why_a_std_curve_is_missing(tmp_path):
    ds = _study("beta-sweep")
    fig = plot_study(ds, tmp_path / "b.png")
    texts = " ".join(_legend_texts(fig))
    assert "random-sign std over seeds" in texts
    assert "one-sided, symmetric" in texts and "deterministic" in texts
    assert "same" not in texts
    # round-off spread of a deterministic estimator (std 1e-16 of its bias) is no curve
    ds["variance"].loc[{"estimator": "symmetric"}] = 1e-32 * ds["bias"].sel(estimator="symmetric")
    texts = " ".join(_legend_texts(plot_study(ds, tmp_path / "b.png")))
    assert "symmetric std over seeds" not in texts and "one-sided, symmetric" in texts
    ds["variance"].loc[{"estimator": "random-sign"}] = 0.0  # every seed drew one sign
    fig = plot_study(ds, tmp_path / "b.png")
    texts = " ".join(_legend_texts(fig))
    assert "random-sign std over seeds" not in texts
    assert "all 3 seeds drew the same" in texts


# ------------------------------------------------------------------------- bad input


def _file(tmp_path, ds: xr.Dataset, name: str = "study.nc"):
    return write_netcdf(ds, tmp_path / name)


def test_truncated_file_names_the_file(tmp_path):
    path = _file(tmp_path, _study("beta-sweep"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StudyFileError, match=r"study\.nc.*truncated.*eqprop study"):
        plot_study(path)
    assert not path.with_suffix(".png").exists()


def test_a_folder_is_not_a_study_file(tmp_path):
    with pytest.raises(StudyFileError, match="is a folder"):
        plot_study(tmp_path)


def test_not_a_netcdf_file(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("hello\n")
    with pytest.raises(StudyFileError, match=r"notes\.nc: not a readable netCDF"):
        plot_study(path)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("solver-convergence", "residual"),
        ("beta-sweep", "variance"),
        ("gdu", "bptt"),
        ("training-curves", "test_error"),
    ],
)
def test_missing_variable_is_named(tmp_path, kind, name):
    path = _file(tmp_path, _study(kind).drop_vars(name))
    with pytest.raises(StudyFileError, match=rf"study\.nc: no variable '{name}'"):
        plot_study(path)


@pytest.mark.parametrize(
    ("kind", "dim"),
    [("beta-sweep", "beta"), ("gdu", "beta"), ("solver-convergence", "depth")],
)
def test_empty_dimension_is_named(tmp_path, kind, dim):
    ds = _study(kind).isel({dim: slice(0, 0)})
    with pytest.raises(StudyFileError, match=rf"dataset: dimension '{dim}' is empty"):
        plot_study(ds)
    if kind == "beta-sweep":  # the case met with `eqprop plot` (IndexError before)
        with pytest.raises(StudyFileError, match=rf"study\.nc: dimension '{dim}' is empty"):
            plot_study(_file(tmp_path, ds))


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("solver-convergence", "residual"),
        ("beta-sweep", "bias"),
        ("gdu", "ep"),
        ("training-curves", "test_error"),
    ],
)
def test_all_nan_study_is_an_error_not_a_blank_figure(tmp_path, kind, name):
    ds = _study(kind)
    ds[name] = ds[name].copy(data=np.full(ds[name].shape, np.nan))
    path = _file(tmp_path, ds)
    with pytest.raises(StudyFileError, match=rf"study\.nc: variable '{name}' is NaN"):
        plot_study(path, tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def test_variable_without_a_dimension_the_figure_needs(tmp_path):
    ds = _study("beta-sweep")
    ds["bias"] = ds["bias"].isel(layer=0, drop=True)
    with pytest.raises(StudyFileError, match=r"'bias' .* lacks 'layer'"):
        plot_study(ds)


def test_study_file_error_is_a_value_error():
    assert issubclass(StudyFileError, ValueError)


@pytest.mark.parametrize("case", ["truncated", "missing", "empty", "nan"])
def test_cli_exits_2_with_one_line_naming_the_file(tmp_path, capsys, case):
    from eqprop.cli import main

    ds = _study("beta-sweep")
    if case == "missing":
        ds = ds.drop_vars("bias")
    elif case == "empty":
        ds = ds.isel(beta=slice(0, 0))
    elif case == "nan":
        ds["bias"] = ds["bias"].copy(data=np.full(ds["bias"].shape, np.nan))
    path = _file(tmp_path, ds)
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    assert main(["plot", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("eqprop: error: ") and str(path) in err[0]
    assert "Traceback" not in err[0]


def test_convergence_figure_names_and_marks_the_fallbacks(tmp_path):
    """The issue's saw-tooth case (#16): Anderson's fall-back on sample 2 is in its legend
    entry and marked (x) at the sample's residual at the fall-back iteration."""
    from studies.convergence import solver_convergence

    ds = solver_convergence(
        ("picard", "anderson"), (1,), tols=(1e-2, 1e-4), batch=4, progress=False
    )
    a = ds.sel(solver="anderson", depth=1)
    fell = np.flatnonzero(a["fallback_iter"].values >= 0)
    assert fell.size >= 1  # the setting does trigger the safeguard
    fig = plot_study(ds, tmp_path / "c.png")
    texts = _legend_texts(fig)
    restarted = int((a["n_fallback"].values > 0).sum())
    times = int(a["n_fallback"].values.sum())
    assert "picard" in texts  # no safeguard: plain label
    want = f"anderson ({restarted} restarted ({times} times), {fell.size} fell back to Picard (x))"
    assert want in texts, texts
    marks = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "fallback:anderson"]
    assert len(marks) == 1 and marks[0].get_marker() == "x"
    k = a["fallback_iter"].values[fell]
    np.testing.assert_array_equal(marks[0].get_xdata(), k)
    r = a["residual"].transpose("iteration", "sample").values
    np.testing.assert_allclose(marks[0].get_ydata(), r[k, fell])
    assert not [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "fallback:picard"]
