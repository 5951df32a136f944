"""Standard figures of the studies (matplotlib, an optional extra: ``eqprop[plot]``).

:func:`plot_study` reads a study dataset (or its netCDF file), picks the figure from the
dataset's ``study`` attribute and saves it:

``solver-convergence``
    residual versus iteration per method (largest in the batch, band min-max), log y, one
    panel per depth, tolerances as dotted lines.
``beta-sweep``
    relative bias (solid) and standard deviation over seeds (dashed) of each estimator
    versus beta, log-log, one panel per layer, with O(beta) and O(beta^2) guides.
``gdu``
    traced EP updates (solid) and minus BPTT gradients (dashed) of a few weights versus
    the step t (smallest beta, first seed), and the relative RMS difference versus t per
    beta (mean over seeds, log y).
``training-curves``
    test error (solid) and training error (dashed) versus epoch per estimator and cost,
    mean over seeds with a min-max band.

matplotlib is imported only here and only when a figure is drawn; the figure is built
with the object API (no pyplot state), so it works without a display.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_study"]


def _mpl() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "figures need matplotlib: pip install 'eqprop[plot]' (or pip install matplotlib)"
        ) from exc
    return Figure


def _sel(da: xr.DataArray, **index: Any) -> xr.DataArray:
    """``sel`` by a dict, which also works for dims named like sel's keywords."""
    return da.sel(index)


def _label(ds: xr.Dataset, name: str) -> str:
    attrs = ds[name].attrs
    units = attrs.get("units", "1")
    text = attrs.get("long_name", name)
    return text if units == "1" else f"{text} [{units}]"


def _convergence(fig: Any, ds: xr.Dataset) -> None:
    depths = list(ds["depth"].values)
    axes = fig.subplots(1, len(depths), squeeze=False, sharey=True)[0]
    for ax, depth in zip(axes, depths):
        for solver in ds["solver"].values:
            r = _sel(ds["residual"], solver=solver, depth=depth)
            r = r.where(r > 0)
            top = r.max("sample")
            keep = top.notnull().values
            it = ds["iteration"].values[keep]
            label = str(solver)
            if "n_fallback" in ds:
                fell = int((_sel(ds["fallback_iter"], solver=solver, depth=depth) >= 0).sum())
                if fell:
                    label += f" ({fell} fell back to Picard)"
            (line,) = ax.semilogy(it, top.values[keep], label=label)
            ax.fill_between(
                it,
                r.min("sample").values[keep],
                r.max("sample").values[keep],
                color=line.get_color(),
                alpha=0.15,
                linewidth=0,
            )
        if "tol" in ds.coords:
            for tol in ds["tol"].values:
                ax.axhline(float(tol), color="0.5", linestyle=":", linewidth=0.8)
        ax.set_title(f"{depth} hidden layer{'s' if depth != 1 else ''}")
        ax.set_xlabel("iteration")
    axes[0].set_ylabel("residual (largest in the batch; band: min-max)")
    axes[-1].legend(title="solver")


def _beta_sweep(fig: Any, ds: xr.Dataset) -> None:
    layers = list(ds["layer"].values)
    axes = fig.subplots(1, len(layers), squeeze=False, sharey=True)[0]
    beta = ds["beta"].values.astype(float)
    for ax, layer in zip(axes, layers):
        firsts = []
        for i, est in enumerate(ds["estimator"].values):
            b = ds["bias"].sel(estimator=est, layer=layer).values
            (line,) = ax.loglog(
                beta, b, marker="os^vD"[i % 5], markersize=8 - 1.5 * (i % 3), label=f"{est} bias"
            )
            sd = np.sqrt(ds["variance"].sel(estimator=est, layer=layer).values)
            if np.any(sd > 1e-12 * np.maximum(b, 1e-300)):
                ax.loglog(
                    beta, sd, linestyle="--", color=line.get_color(), label=f"{est} std over seeds"
                )
            if b[0] > 0:
                firsts.append(float(b[0]))
        if firsts:
            x0 = beta[0]
            for order, style, y0 in ((1, "-.", max(firsts)), (2, ":", min(firsts))):
                ax.loglog(
                    beta,
                    y0 * (beta / x0) ** order,
                    color="0.4",
                    linestyle=style,
                    linewidth=1,
                    label=f"O(beta^{order})" if order > 1 else "O(beta)",
                )
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("beta")
    axes[0].set_ylabel("error relative to ||exact gradient||")
    axes[-1].legend(fontsize="small")


def _gdu(fig: Any, ds: xr.Dataset) -> None:
    layers = list(ds["layer"].values)
    axes = fig.subplots(2, len(layers), squeeze=False, sharex=True)
    beta0 = ds["beta"].values.min()
    seed0 = ds["seed"].values[0]
    t = ds["t"].values if "t" in ds.coords else np.arange(ds.sizes["t"])
    for j, layer in enumerate(layers):
        ax = axes[0, j]
        pt = ds.sel(beta=beta0, seed=seed0, layer=layer, quantity="weights")
        for k in range(pt.sizes.get("element", 0)):
            ep = pt["ep"].isel(element=k).values
            if np.all(np.isnan(ep)):
                continue
            (line,) = ax.plot(t, ep, linewidth=1)
            ax.plot(
                t,
                pt["bptt"].isel(element=k).values,
                linestyle="--",
                color=line.get_color(),
                linewidth=1,
            )
        ax.set_title(f"{layer}: EP (solid) vs -BPTT (dashed), beta={beta0:g}")
        ax = axes[1, j]
        for b in ds["beta"].values:
            rel = ds["rel_rmse"].sel(beta=b, layer=layer, quantity="weights").mean("seed")
            ax.semilogy(t, rel.values, label=f"beta={b:g}")
        ax.set_xlabel("t (nudged step)")
    axes[0, 0].set_ylabel("update of traced weights")
    axes[1, 0].set_ylabel("relative RMS(EP + BPTT), weights")
    axes[1, -1].legend(fontsize="small")


def _training(fig: Any, ds: xr.Dataset) -> None:
    ax = fig.subplots(1, 1)
    epoch = ds["epoch"].values
    costs = ds["cost"].values if "cost" in ds.dims else [None]
    for est in ds["estimator"].values:
        for cost in costs:
            sel: dict[str, Any] = {"estimator": est}
            if cost is not None:
                sel["cost"] = cost
            label = str(est) if len(costs) == 1 else f"{est}, {cost}"
            test = ds["test_error"].sel(sel)
            (line,) = ax.plot(epoch, 100 * test.mean("seed").values, marker="o", label=label)
            ax.fill_between(
                epoch,
                100 * test.min("seed").values,
                100 * test.max("seed").values,
                color=line.get_color(),
                alpha=0.15,
                linewidth=0,
            )
            if "train_error" in ds:
                train = ds["train_error"].sel(sel)
                ax.plot(
                    epoch, 100 * train.mean("seed").values, linestyle="--", color=line.get_color()
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel("error rate [%]")
    ax.set_title("test (solid) and train (dashed); mean and min-max over seeds", fontsize="small")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(title="estimator")


_DRAW = {
    "solver-convergence": _convergence,
    "beta-sweep": _beta_sweep,
    "gdu": _gdu,
    "training-curves": _training,
}


def plot_study(
    path_or_ds: str | os.PathLike[str] | xr.Dataset,
    out_png: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 120,
) -> Any:
    """Draw the standard figure of a study and save it as ``out_png``.

    Parameters
    ----------
    path_or_ds : path-like or xarray.Dataset
        A study dataset or its netCDF file (attribute ``study`` selects the figure).
    out_png : path-like, optional
        Output image (any format matplotlib knows by the suffix); default: the input
        path with suffix ``.png`` (required when a Dataset is given and you want a file).
    dpi : int
        Resolution of the saved image.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        matplotlib is not installed (message says how to install it).
    ValueError
        The dataset has no or an unknown ``study`` attribute.
    """
    Figure = _mpl()
    if isinstance(path_or_ds, xr.Dataset):
        ds = path_or_ds
        source = None
    else:
        from eqprop.provenance import open_netcdf

        source = Path(path_or_ds)
        ds = open_netcdf(source)
    from .schema import upgrade

    ds = upgrade(ds)
    kind = ds.attrs.get("study")
    if kind not in _DRAW:
        raise ValueError(f"dataset has study={kind!r}; figures exist for {sorted(_DRAW)}")
    n_panels = {
        "solver-convergence": ds.sizes.get("depth", 1),
        "beta-sweep": ds.sizes.get("layer", 1),
        "gdu": ds.sizes.get("layer", 1),
        "training-curves": 1,
    }[kind]
    height = 7.0 if kind == "gdu" else 4.0
    fig = Figure(figsize=(max(7.0, 4.5 * n_panels), height), layout="constrained")
    _DRAW[kind](fig, ds)
    fig.suptitle(str(ds.attrs.get("title", kind)), fontsize="medium")
    if out_png is None and source is not None:
        out_png = source.with_suffix(".png")
    if out_png is not None:
        fig.savefig(out_png, dpi=dpi)
    return fig
