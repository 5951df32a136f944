"""Standard figures of the studies (matplotlib, an optional extra: ``eqprop[plot]``).

:func:`plot_study` reads a study dataset (or its netCDF file), picks the figure from the
dataset's ``study`` attribute and saves it:

``solver-convergence``
    top row: residual versus iteration per solver (largest in the batch, band min-max),
    log y, one panel per depth, the tolerances as labelled dotted lines; where the
    dataset has the progress safeguard's ``n_fallback`` / ``fallback_iter`` (Anderson),
    each solver's legend entry says how many samples restarted their history (and how
    often) and how many fell back to Picard, and an ``x`` on the solver's colour marks
    the residual of each fallen-back sample at the iteration it switched; bottom row
    (when the dataset has ``energy``): the energy gap :math:`F(s_k) - F_{\\min}` per
    solver, largest in the batch, with :math:`F_{\\min}` the lowest energy any solver
    reached for that sample.
``beta-sweep``
    relative bias (solid) and standard deviation over seeds (dashed) of each estimator
    versus beta, log-log, one panel per layer, with O(beta) and O(beta^2) guides; an
    estimator without spread over seeds (deterministic, or every seed drew the same
    sign) is named in the panel instead of drawing nothing.
``gdu``
    traced EP updates (wide, solid) and minus BPTT gradients (thin, dashed, drawn on top)
    of a few weights versus the step t (smallest beta, first seed), and the relative RMS
    difference versus t per beta (mean over seeds, log y).
``training-curves``
    test error (solid) and training error (dashed) versus epoch per estimator and cost,
    mean over seeds with a min-max band.
``rules``
    cosine and relative error of each rule's update to the exact gradient versus the
    rule's own parameter (log x), one row per layer, mean over seeds with a min-max band;
    parameter-free rules dashed.
``alignment``
    per architecture (row): the angle between W_l^T and B_l, the cosine of the rule's
    estimate of dL/dW_l to the exact gradient (one line style per layer, one colour per
    run) and the test error, versus epoch.

Bad input raises :class:`StudyFileError` (a ``ValueError``) with one line naming the
file or variable and what to do: a file that is not a readable netCDF study, a missing
variable or dimension, an empty dimension, or a variable the figure needs that is NaN
everywhere (a figure with nothing on it is never drawn silently).

:func:`plot_graph` draws a :class:`eqprop.graph.GraphNetwork`: layers as nodes, couplings
as edges, feedback that is not tied as a second, dashed edge.

matplotlib is imported only here and only when a figure is drawn; the figure is built
with the object API (no pyplot state), so it works without a display.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["REQUIRED", "StudyFileError", "plot_graph", "plot_study"]


class StudyFileError(ValueError):
    """A study dataset (or its file) cannot give its figure; the message says why."""


#: Per figure: the variables it draws and the dimensions each must have (non-empty).
#: The solver dimension is spelled ``solver`` (``method`` in older files; both accepted).
REQUIRED: dict[str, dict[str, tuple[str, ...]]] = {
    "solver-convergence": {"residual": ("solver", "depth", "iteration", "sample")},
    "beta-sweep": {
        "bias": ("beta", "estimator", "layer"),
        "variance": ("beta", "estimator", "layer"),
    },
    "gdu": {
        "ep": ("beta", "seed", "t", "layer", "quantity", "element"),
        "bptt": ("beta", "seed", "t", "layer", "quantity", "element"),
        "rel_rmse": ("beta", "seed", "t", "layer", "quantity"),
    },
    "training-curves": {"test_error": ("estimator", "seed", "epoch")},
    "rules": {
        "cosine": ("rule", "strength", "seed", "layer"),
        "rel_error": ("rule", "strength", "seed", "layer"),
    },
    "alignment": {
        "angle": ("architecture", "run", "epoch", "layer"),
        "cosine": ("architecture", "run", "epoch", "layer"),
        "test_error": ("architecture", "run", "epoch"),
    },
}


def _mpl() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "figures need matplotlib: pip install 'eqprop[plot]' (or pip install matplotlib)"
        ) from exc
    return Figure


def _solver_dim(ds: xr.Dataset) -> str:
    """Name of the solver dimension: ``solver`` (current) or ``method`` (older files)."""
    return "solver" if "solver" in ds.dims else "method"


def _sel(da: xr.DataArray, **index: Any) -> xr.DataArray:
    """``sel`` by a dict, which also works for dims named like sel's keywords."""
    return da.sel(index)


def _check(ds: xr.Dataset, kind: str, where: str) -> None:
    """Raise :class:`StudyFileError` unless ``ds`` has what the ``kind`` figure draws."""
    for name, dims in REQUIRED[kind].items():
        if name not in ds.data_vars:
            raise StudyFileError(
                f"{where}: no variable {name!r} (a {kind} figure needs "
                f"{', '.join(sorted(REQUIRED[kind]))}); rerun the 'eqprop study' command "
                "in its 'history' attribute to rewrite the file"
            )
        for dim in dims:
            dim = _solver_dim(ds) if dim == "solver" else dim
            if dim not in ds[name].dims:
                raise StudyFileError(
                    f"{where}: variable {name!r} has dims {ds[name].dims}, lacks {dim!r}; "
                    f"a {kind} figure needs {dims}"
                )
            if ds.sizes[dim] == 0:
                raise StudyFileError(
                    f"{where}: dimension {dim!r} is empty (variable {name!r}); the study "
                    f"has no points to draw: rerun it with at least one {dim}"
                )
        values = np.asarray(ds[name].values, dtype=float)
        if not np.any(np.isfinite(values)):
            raise StudyFileError(
                f"{where}: variable {name!r} is NaN (or infinite) everywhere, so the "
                f"{kind} figure would be blank; check the study's points (a failed "
                "solver or training) and rerun it"
            )


def _has_energy(ds: xr.Dataset) -> bool:
    """Whether a convergence dataset has energies to draw (older files may lack them)."""
    return "energy" in ds.data_vars and bool(np.any(np.isfinite(ds["energy"].values)))


def _fallback_label(ds: xr.Dataset, sdim: str, solver: Any, depth: Any) -> tuple[str, np.ndarray]:
    """Legend label of one solver's curve and its fall-backs.

    The label adds, where the dataset has the safeguard's variables and they are nonzero,
    how many samples restarted their history (``n_fallback > 0``) and how many fell back
    to Picard (``fallback_iter >= 0``). Also returns the ``(sample index, iteration)``
    pairs of the fall-backs, shape ``(n, 2)``, int.
    """
    label = str(solver)
    none = np.zeros((0, 2), dtype=np.int64)
    if "n_fallback" not in ds or "fallback_iter" not in ds:
        return label, none
    at = {sdim: solver, "depth": depth}
    n_fb = np.asarray(_sel(ds["n_fallback"], **at).values)
    fb_iter = np.asarray(_sel(ds["fallback_iter"], **at).values)
    restarted, fell = int((n_fb > 0).sum()), int((fb_iter >= 0).sum())
    parts = []
    if restarted:
        parts.append(f"{restarted} restarted ({int(n_fb.sum())} times)")
    if fell:
        parts.append(f"{fell} fell back to Picard (x)")
    if parts:
        label += f" ({', '.join(parts)})"
    where = np.flatnonzero(fb_iter >= 0)
    return label, np.stack([where, fb_iter[where]], axis=1).astype(np.int64) if fell else none


def _convergence(fig: Any, ds: xr.Dataset) -> None:
    sdim = _solver_dim(ds)
    depths = list(ds["depth"].values)
    with_energy = _has_energy(ds)
    grid = fig.subplots(2 if with_energy else 1, len(depths), squeeze=False, sharex="col")
    for j, depth in enumerate(depths):
        ax = grid[0, j]
        for solver in ds[sdim].values:
            r = _sel(ds["residual"], **{sdim: solver, "depth": depth})
            r = r.where(r > 0)
            top = r.max("sample")
            keep = top.notnull().values
            it = ds["iteration"].values[keep]
            label, fell_at = _fallback_label(ds, sdim, solver, depth)
            (line,) = ax.semilogy(it, top.values[keep], label=label)
            ax.fill_between(
                it,
                r.min("sample").values[keep],
                r.max("sample").values[keep],
                color=line.get_color(),
                alpha=0.15,
                linewidth=0,
            )
            if fell_at.size:  # where each fallen-back sample switched to Picard
                iters = ds["iteration"].values
                rv = r.transpose("iteration", "sample").values
                xs, ys = [], []
                for b, k in fell_at:
                    hit = np.flatnonzero(iters == k)
                    if hit.size and np.isfinite(rv[hit[0], b]):
                        xs.append(int(k))
                        ys.append(float(rv[hit[0], b]))
                ax.semilogy(
                    xs,
                    ys,
                    linestyle="none",
                    marker="x",
                    color=line.get_color(),
                    gid=f"fallback:{solver}",
                )
        if "tol" in ds.coords:
            for k, tol in enumerate(ds["tol"].values):
                ax.axhline(
                    float(tol),
                    color="0.5",
                    linestyle=":",
                    linewidth=0.8,
                    label="tolerances (atol)" if k == 0 else None,
                )
                ax.annotate(
                    f"{float(tol):g}",
                    (1.0, float(tol)),
                    xycoords=("axes fraction", "data"),
                    xytext=(-2, 2),
                    textcoords="offset points",
                    ha="right",
                    va="bottom",
                    fontsize="x-small",
                    color="0.4",
                )
        ax.set_title(f"{depth} hidden layer{'s' if depth != 1 else ''}")
        if not with_energy:
            ax.set_xlabel("iteration")
        if with_energy:
            ax = grid[1, j]
            e = _sel(ds["energy"], depth=depth)
            floor = e.min([sdim, "iteration"])  # lowest energy reached, per sample
            for solver in ds[sdim].values:
                gap = _sel(e, **{sdim: solver}) - floor
                gap = gap.where(gap > 0).max("sample")
                keep = gap.notnull().values
                ax.semilogy(ds["iteration"].values[keep], gap.values[keep], label=str(solver))
            ax.set_xlabel("iteration")
    grid[0, 0].set_ylabel("residual\n(largest in the batch; band: min-max)")
    fig.legend(
        *grid[0, -1].get_legend_handles_labels(),
        loc="outside right center",
        title="solver",
        fontsize="small",
    )
    if with_energy:
        grid[1, 0].set_ylabel("energy gap F(s_k) - F_min\n(largest in the batch)")


def _beta_sweep(fig: Any, ds: xr.Dataset) -> None:
    from matplotlib.lines import Line2D

    layers = list(ds["layer"].values)
    axes = fig.subplots(1, len(layers), squeeze=False, sharey=True)[0]
    beta = ds["beta"].values.astype(float)
    # an estimator has a spread over seeds when its std exceeds round-off of its bias
    # somewhere (deterministic estimators give std ~ 1e-16 |bias|, not zero)
    sd_all = np.sqrt(ds["variance"].transpose("estimator", ...).values)
    b_all = np.abs(ds["bias"].transpose("estimator", ...).values)
    spread = {
        str(est)
        for est, sd, b in zip(ds["estimator"].values, sd_all, b_all)
        if np.nanmax(sd, initial=0.0) > 1e-8 * np.nanmax(b, initial=0.0)
    }
    for ax, layer in zip(axes, layers):
        firsts = []
        for i, est in enumerate(ds["estimator"].values):
            b = ds["bias"].sel(estimator=est, layer=layer).values
            (line,) = ax.loglog(
                beta, b, marker="os^vD"[i % 5], markersize=8 - 1.5 * (i % 3), label=f"{est} bias"
            )
            sd = np.sqrt(ds["variance"].sel(estimator=est, layer=layer).values)
            if str(est) in spread:
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
    handles, _ = axes[-1].get_legend_handles_labels()
    flat = [str(e) for e in ds["estimator"].values if str(e) not in spread]
    for note in _no_spread_note(flat, ds.sizes.get("seed", 0)):
        handles.append(Line2D([], [], linestyle="none", label=note))
    fig.legend(handles=handles, loc="outside right center", fontsize="small")


def _no_spread_note(estimators: list[str], n_seeds: int) -> list[str]:
    """Legend lines that replace the missing std curves of estimators without spread."""
    lines = []
    deterministic = [e for e in estimators if e != "random-sign"]
    if deterministic:
        lines.append(f"no std curve: {', '.join(deterministic)}\n(deterministic)")
    if "random-sign" in estimators:
        lines.append(
            f"no std curve for random-sign:\nall {n_seeds} seeds drew the same\nsign of beta"
            " (use more seeds)"
        )
    return lines


def _gdu(fig: Any, ds: xr.Dataset) -> None:
    from matplotlib.lines import Line2D

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
            (line,) = ax.plot(t, ep, linewidth=3.5, alpha=0.45, zorder=2)
            ax.plot(
                t,
                pt["bptt"].isel(element=k).values,
                linestyle=(0, (3, 2)),
                color=line.get_color(),
                linewidth=1.2,
                zorder=3,
            )
        ax.set_title(f"{layer}: a few traced weights, beta={beta0:g}")
        ax.legend(
            handles=[
                Line2D([], [], color="0.3", linewidth=3.5, alpha=0.45, label="EP update"),
                Line2D([], [], color="0.3", linewidth=1.2, linestyle=(0, (3, 2)), label="-BPTT"),
            ],
            fontsize="small",
            title="one colour per weight",
            title_fontsize="small",
        )
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


#: matplotlib's "tab20" colours (dark, light pairs), for figures with many lines.
_TAB20 = [f"C{i}" for i in range(10)] + [
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]  # fmt: skip


def _rules(fig: Any, ds: xr.Dataset) -> None:
    """Cosine and relative error to the exact gradient versus each rule's own parameter.

    One row per layer; mean over seeds with a min-max band. Rules with a parameter are
    lines with markers; parameter-free rules (the same value at every strength) are
    dashed horizontal lines.
    """
    layers = list(ds["layer"].values)
    axes = fig.subplots(len(layers), 2, squeeze=False, sharex=True)
    x = ds["strength"].values.astype(float)
    param = ds["parameter"].isel(strength=0).values if "parameter" in ds else None
    for row, layer in zip(axes, layers):
        for j, (name, label) in enumerate(
            (("cosine", "cosine to the exact gradient"), ("rel_error", "relative error"))
        ):
            ax = row[j]
            for i, rule in enumerate(ds["rule"].values):
                da = ds[name].sel(rule=rule, layer=layer)
                if not np.any(np.isfinite(da.values)):
                    continue  # recirculation has two layers only
                mean = da.mean("seed").values
                lo, hi = da.min("seed").values, da.max("seed").values
                free = param is not None and str(param[i]) == "none"
                style = dict(linestyle="--", marker=None) if free else dict(marker="os^vD"[i % 5])
                color = _TAB20[i % 20]  # up to 20 distinct colours
                ax.plot(x, mean, label=str(rule), color=color, **style)
                ax.fill_between(x, lo, hi, color=color, alpha=0.06, linewidth=0)
            ax.set_xscale("log")
            if name == "rel_error":
                ax.set_yscale("log")
            ax.set_title(f"layer {layer}: {label}", fontsize="small")
        row[0].set_ylabel("mean over seeds (band: min-max)")
    for ax in axes[-1]:
        ax.set_xlabel("strength (beta for EP, eta for coupled, lambda for recirculation)")
    handles, _ = axes[0][0].get_legend_handles_labels()
    fig.legend(handles=handles, loc="outside right center", fontsize="small")


def _alignment(fig: Any, ds: xr.Dataset) -> None:
    """Angle between W_l^T and B_l, cosine to the exact gradient, test error, per epoch.

    One row per architecture; colour: run; line style: layer (layers without feedback,
    or absent from an architecture, are NaN and skipped).
    """
    archs = list(ds["architecture"].values)
    axes = fig.subplots(len(archs), 3, squeeze=False, sharex=True)
    epochs = ds["epoch"].values
    styles = ["-", "--", ":", "-."]
    for row, arch in zip(axes, archs):
        for i, run in enumerate(ds["run"].values):
            color = _TAB20[(2 * i) % 20]
            for j, layer in enumerate(ds["layer"].values):
                for ax, name in ((row[0], "angle"), (row[1], "cosine")):
                    y = ds[name].sel(architecture=arch, run=run, layer=layer).values
                    if np.any(np.isfinite(y)):
                        ax.plot(
                            epochs,
                            y,
                            color=color,
                            linestyle=styles[j % 4],
                            marker="o",
                            markersize=3,
                            label=f"{run} {layer}",
                        )
            err = ds["test_error"].sel(architecture=arch, run=run).values
            row[2].plot(epochs, 100 * err, color=color, marker="o", markersize=3, label=str(run))
        row[0].set_title(f"{arch}: angle(W_l^T, B_l) [deg]", fontsize="small")
        row[1].set_title(f"{arch}: cosine(update of W_l, exact gradient)", fontsize="small")
        row[2].set_title(f"{arch}: test error [%]", fontsize="small")
        row[0].legend(fontsize="x-small")
        row[1].legend(fontsize="x-small")
        row[2].legend(fontsize="x-small")
    for ax in axes[-1]:
        ax.set_xlabel("epoch (0: before training)")


_DRAW = {
    "alignment": _alignment,
    "rules": _rules,
    "solver-convergence": _convergence,
    "beta-sweep": _beta_sweep,
    "gdu": _gdu,
    "training-curves": _training,
}


def _open(source: Path) -> xr.Dataset:
    """Open a study file; anything unreadable becomes one :class:`StudyFileError` line."""
    from eqprop.provenance import open_netcdf

    if source.is_dir():
        raise StudyFileError(f"{source} is a folder; give the .nc file 'eqprop study' wrote")
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    try:
        return open_netcdf(source)
    except Exception as exc:  # netCDF backends raise many types for a damaged file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StudyFileError(
            f"{source}: not a readable netCDF study file ({type(exc).__name__}: {reason}); "
            "it may be truncated: rerun the 'eqprop study' command that wrote it"
        ) from exc


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
    FileNotFoundError
        ``path_or_ds`` names no file.
    StudyFileError
        (a ``ValueError``) the file is not a readable netCDF file; the dataset has no or
        an unknown ``study`` attribute; a variable or dimension of :data:`REQUIRED` is
        missing or empty; or a variable the figure draws is NaN everywhere.
    """
    Figure = _mpl()
    if isinstance(path_or_ds, xr.Dataset):
        ds = path_or_ds
        source = None
        where = "dataset"
    else:
        source = Path(path_or_ds)
        ds = _open(source)
        where = str(source)
    from .schema import upgrade

    ds = upgrade(ds)
    kind = ds.attrs.get("study")
    if kind not in _DRAW:
        raise StudyFileError(
            f"{where}: study={kind!r}; figures exist for {sorted(_DRAW)} (attribute 'study')"
        )
    _check(ds, kind, where)
    n_panels = {
        "solver-convergence": ds.sizes.get("depth", 1),
        "beta-sweep": ds.sizes.get("layer", 1),
        "gdu": ds.sizes.get("layer", 1),
        "training-curves": 1,
        "rules": 2,
        "alignment": 3,
    }[kind]
    two_rows = kind == "gdu" or (kind == "solver-convergence" and _has_energy(ds))
    height = 7.0 if two_rows else 4.0
    if kind == "rules":
        height = 3.2 * ds.sizes.get("layer", 1)
    if kind == "alignment":
        height = 3.4 * ds.sizes.get("architecture", 1)
    legend_width = 2.5 if kind in ("solver-convergence", "beta-sweep", "rules") else 0.0
    fig = Figure(figsize=(max(7.0, 4.5 * n_panels) + legend_width, height), layout="constrained")
    _DRAW[kind](fig, ds)
    fig.suptitle(str(ds.attrs.get("title", kind)), fontsize="medium")
    if out_png is None and source is not None:
        out_png = source.with_suffix(".png")
    if out_png is not None:
        fig.savefig(out_png, dpi=dpi)
    return fig


# ----------------------------------------------------------------------------- graph
_ROLE_COLOURS = {"input": "#d9d9d9", "hidden": "#cfe2f3", "output": "#f9cb9c", "readout": "#f4cccc"}


def _layer_text(layer: Any) -> str:
    size = "x".join(map(str, layer.shape)) if layer.shape is not None else str(layer.size)
    act = "" if layer.role in ("input", "readout") else f"\n{layer.activation}"
    return f"{layer.name}\n{size}{act}"


def _feedback_text(c: Any) -> str:
    if c.feedback == "scaled":
        return f"scaled, gamma={c.gamma:g}"
    return {"free": "free B (learned)", "random": "random B (fixed)"}.get(c.feedback, c.feedback)


def plot_graph(net: Any, ax: Any = None, *, title: str | None = None) -> Any:
    """Draw a graph network: layers as nodes, couplings as edges.

    Layers are placed left to right in the order of ``net.layers`` (input first), each a
    box with its name, size (or ``channels x height x width``) and activation, coloured
    by role. A coupling between neighbours in that order is a straight edge, one between
    layers further apart (a skip coupling) an arc above them. A tied coupling between
    two state layers is one two-headed edge (the feedback is :math:`W^\top`); a
    coupling from the input or into a readout has one head (no feedback); any other
    feedback mode (scaled, free, random) adds a dashed edge back from target to source,
    below, labelled with its mode. Each edge's artist has the ``gid``
    ``"coupling:<name>"`` (forward) or ``"feedback:<name>"``; each layer's text the gid
    ``"layer:<name>"``.

    Parameters
    ----------
    net : eqprop.graph.GraphNetwork
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure (object API, no pyplot).
    title : str, optional
        Axes title; default: the network's kind and cost.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into (``ax.figure`` when ``ax`` is given).

    Raises
    ------
    TypeError
        ``net`` is not a :class:`~eqprop.graph.GraphNetwork` (a chain
        :class:`eqprop.network.Network` converts with :func:`eqprop.graph.from_network`).

    Examples
    --------
    >>> from eqprop.graph import chain
    >>> fig = plot_graph(chain([4, 6, 6, 2], skip=[(1, 3)], feedback="random"))
    >>> sorted(t.get_gid() for t in fig.axes[0].texts if t.get_gid())[:2]
    ['layer:h1', 'layer:h2']
    """
    from eqprop.graph import GraphNetwork

    if not isinstance(net, GraphNetwork):
        raise TypeError(
            f"plot_graph draws an eqprop.graph.GraphNetwork, got {type(net).__name__}; "
            "convert a chain Network with eqprop.graph.from_network(net)"
        )
    from matplotlib.patches import FancyArrowPatch

    if ax is None:
        n = len(net.layers)
        fig = _mpl()(figsize=(max(6.0, 1.6 * n), 3.0), layout="constrained")
        ax = fig.subplots()
    fig = ax.figure
    pos = {layer.name: float(i) for i, layer in enumerate(net.layers)}
    half_w, gap = 0.3, 0.42  # half a box's width; height of the edges above/below centre
    for layer in net.layers:
        ax.text(
            pos[layer.name],
            0.0,
            _layer_text(layer),
            ha="center",
            va="center",
            fontsize="small",
            gid=f"layer:{layer.name}",
            bbox=dict(boxstyle="round,pad=0.4", fc=_ROLE_COLOURS[layer.role], ec="0.3"),
            zorder=3,
        )
    top, bottom = 0.5, -0.5
    for c in net.couplings:
        src, dst = net.layer(c.source), net.layer(c.target)
        x0, x1 = pos[c.source], pos[c.target]
        span = abs(x1 - x0)
        sign = 1.0 if x1 > x0 else -1.0
        # neighbours: a straight edge between the boxes' sides; skips: an arc above
        # (equal aspect, so an arc3 of chord L bulges by |rad| L / 2 in data units)
        if span <= 1:
            p0, p1, rad = (x0 + sign * half_w, 0.0), (x1 - sign * half_w, 0.0), 0.0
            y_lab = 0.05
        else:
            p0, p1, rad = (x0, gap), (x1, gap), -0.2 * sign
            y_lab = gap + 0.2 * span / 2 + 0.03
        top = max(top, y_lab + 0.2)
        two_way = c.feedback == "tied" and src.role != "input" and dst.role != "readout"
        ax.add_patch(
            FancyArrowPatch(
                p0,
                p1,
                arrowstyle="<|-|>" if two_way else "-|>",
                connectionstyle=f"arc3,rad={rad}",
                mutation_scale=12,
                color="0.15",
                linewidth=1.4,
                shrinkA=2,
                shrinkB=2,
                gid=f"coupling:{c.name}",
                zorder=2,
            )
        )
        shape = f"{src.size}x{dst.size}" if c.type == "dense" else c.type
        ax.text((x0 + x1) / 2, y_lab, f"W {shape}", ha="center", va="bottom", fontsize="x-small")
        if c.feedback != "tied":
            back_rad = 0.2 if span > 1 else 0.5
            ax.add_patch(
                FancyArrowPatch(
                    (x1, -gap),
                    (x0, -gap),
                    arrowstyle="-|>",
                    connectionstyle=f"arc3,rad={-back_rad * sign}",
                    mutation_scale=12,
                    color="C3",
                    linestyle="--",
                    linewidth=1.4,
                    shrinkA=2,
                    shrinkB=2,
                    gid=f"feedback:{c.name}",
                    zorder=2,
                )
            )
            y_fb = -gap - back_rad * span / 2 - 0.04
            bottom = min(bottom, y_fb - 0.2)
            ax.text(
                (x0 + x1) / 2,
                y_fb,
                _feedback_text(c),
                ha="center",
                va="top",
                fontsize="x-small",
                color="C3",
            )
    ax.set_xlim(-0.55, len(net.layers) - 0.45)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(
        title if title is not None else f"{net.kind} network, {net.cost} cost", fontsize="medium"
    )
    return fig
