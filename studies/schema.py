"""The dataset schema shared by every study (and every dataset eqprop writes).

Dimension names follow the vocabulary of the design notes, so that datasets from different
studies combine: ``sample``, ``unit`` / ``unit_<layer>``, ``layer`` (``"W1"``, ``"W2"``, ...),
``iteration``, ``t``, ``epoch``, ``phase``, ``solver``, ``estimator``, ``reference``, and the
sweep parameters ``beta``, ``seed``, ``depth`` (plus any name a custom sweep introduces).

No dimension or coordinate may be named like a keyword of xarray's ``sel``/``isel``
(:data:`SEL_KEYWORDS`): ``ds.sel(method="anderson")`` passes ``method`` to ``sel`` as its
inexact-match option and silently returns the whole dataset unselected. The solver
dimension was called ``method`` in files written before; :func:`upgrade` renames it when
such a file is opened (:func:`studies.plot.plot_study`, resumed sweeps).

Rules checked by :func:`check_schema`:

1. every data variable and coordinate has string attributes ``long_name`` and ``units``
   (``"1"`` when dimensionless);
2. every dimension of a known name in :data:`DIMENSIONS` that indexes values has a
   coordinate (``sample``, ``unit*`` and ``iteration``/``t``/``epoch`` may be plain ranges,
   but they still get a coordinate so that ``sel`` works);
3. the global attributes written by :func:`eqprop.provenance.dataset_attrs` are present
   (``title``, ``created_at``, ``eqprop_version``, ``numpy_version``, ``scipy_version``,
   ``numba_version``, ``xarray_version``, ``history``, ``config`` as valid JSON), and no
   attribute is None;
4. for study datasets (attribute ``study``), the dimensions the study declares in
   :data:`STUDY_DIMS` are present;
5. no dimension or coordinate is named like a keyword in :data:`SEL_KEYWORDS`.
"""

from __future__ import annotations

import json

import xarray as xr

__all__ = [
    "DIMENSIONS",
    "LEGACY_DIMS",
    "REQUIRED_ATTRS",
    "SEL_KEYWORDS",
    "STUDY_DIMS",
    "SchemaError",
    "check_schema",
    "coord_attrs",
    "upgrade",
]

#: Known dimension names -> (long_name, units) used for their coordinates.
DIMENSIONS: dict[str, tuple[str, str]] = {
    "sample": ("index of the sample within the batch", "1"),
    "unit": ("neuron index", "1"),
    "layer": ("weight layer (W_l maps layer l-1 to l)", "1"),
    "iteration": ("solver iteration", "1"),
    "t": ("time step of the dynamics", "1"),
    "epoch": ("training epoch", "1"),
    "phase": ("phase of the dynamics", "1"),
    "solver": ("solver method", "1"),
    "estimator": ("EP gradient estimator", "1"),
    "reference": ("reference gradient", "1"),
    "beta": ("nudging strength beta", "1"),
    "seed": ("random seed", "1"),
    "depth": ("number of hidden layers", "1"),
    "tol": ("solver tolerance on the residual (atol)", "1"),
    "cost": ("cost function", "1"),
    "rule": ("learning rule", "1"),
    "strength": ("the rule's own parameter (beta, eta or lambda; see studies.rules)", "1"),
    "run": ("training run (rule and feedback; see studies.alignment)", "1"),
    "architecture": ("layer sizes, input first", "1"),
}

#: Global attributes every dataset must carry (``git_commit`` only when known).
REQUIRED_ATTRS = (
    "title",
    "created_at",
    "eqprop_version",
    "numpy_version",
    "scipy_version",
    "numba_version",
    "xarray_version",
    "history",
    "config",
)

#: Dimensions each study kind (global attribute ``study``) must have.
STUDY_DIMS: dict[str, tuple[str, ...]] = {
    "solver-convergence": ("solver", "depth", "iteration", "sample"),
    "beta-sweep": ("beta", "estimator", "seed", "layer"),
    "gdu": ("t",),
    "training-curves": ("epoch", "estimator", "seed"),
    "rules": ("rule", "strength", "seed", "layer"),
    "alignment": ("architecture", "run", "epoch", "layer"),
}


#: Keyword arguments of ``xarray.Dataset.sel`` / ``isel`` (and of pandas' ``.xs``, which
#: takes ``level``, ``axis`` and ``drop_level``): a dimension of one of these names cannot
#: be selected by keyword, ``ds.sel(name=value)``.
SEL_KEYWORDS = (
    "indexers",
    "method",
    "tolerance",
    "drop",
    "missing_dims",
    "level",
    "axis",
    "drop_level",
)

#: Dimension renames of older files, per study kind: ``{old: new}``.
LEGACY_DIMS: dict[str, dict[str, str]] = {"solver-convergence": {"method": "solver"}}


def upgrade(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the dimensions of older eqprop files renamed (:data:`LEGACY_DIMS`).

    A renamed dataset records it in the attribute ``renamed_on_open`` (e.g.
    ``"method -> solver"``); a dataset without legacy names is returned unchanged.
    """
    renames = {
        old: new
        for old, new in LEGACY_DIMS.get(str(ds.attrs.get("study")), {}).items()
        if old in ds.dims or old in ds.variables
    }
    if not renames:
        return ds
    out = ds.rename(renames)
    if "solver" in out.coords and renames.get("method") == "solver":
        out["solver"].attrs.update(coord_attrs("solver"))
    note = ", ".join(f"{a} -> {b}" for a, b in renames.items())
    out.attrs["renamed_on_open"] = (
        f"{note} (written by an eqprop that used the old names; renamed on open because "
        "'method' is a keyword of xarray's sel)"
    )
    return out


class SchemaError(ValueError):
    """A dataset does not follow the eqprop dataset schema."""


def coord_attrs(name: str) -> dict[str, str]:
    """``{"long_name": ..., "units": ...}`` for a coordinate named ``name``.

    Known names use :data:`DIMENSIONS`; ``unit_<layer>`` names a neuron of that layer;
    other names get ``long_name=name`` and ``units="1"``.
    """
    if name in DIMENSIONS:
        long_name, units = DIMENSIONS[name]
    elif name.startswith("unit_"):
        long_name, units = f"neuron index in layer {name[5:]}", "1"
    else:
        long_name, units = name, "1"
    return {"long_name": long_name, "units": units}


def check_schema(ds: xr.Dataset, study: str | None = None) -> None:
    """Raise :class:`SchemaError` listing every way ``ds`` departs from the schema.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset to check (in memory or opened from a file).
    study : str, optional
        Study kind whose dimensions to require; default ``ds.attrs.get("study")``.
    """
    problems: list[str] = []
    for name in list(ds.data_vars) + list(ds.coords):
        attrs = ds[name].attrs
        for key in ("long_name", "units"):
            if not isinstance(attrs.get(key), str) or not attrs[key]:
                problems.append(f"variable {name!r} lacks a non-empty string {key!r}")
        for key, value in attrs.items():
            if value is None:
                problems.append(f"attribute {key!r} of variable {name!r} is None")
    for name in set(ds.dims) | set(ds.coords):
        if name in SEL_KEYWORDS:
            problems.append(
                f"dimension or coordinate {name!r} is a keyword of xarray's sel/isel, so "
                f"ds.sel({name}=...) does not select; rename it"
            )
    for dim in ds.dims:
        if (dim in DIMENSIONS or str(dim).startswith("unit_")) and dim not in ds.coords:
            problems.append(f"dimension {dim!r} has no coordinate")
    for key in REQUIRED_ATTRS:
        if key not in ds.attrs:
            problems.append(f"global attribute {key!r} is missing")
    for key, value in ds.attrs.items():
        if value is None:
            problems.append(f"global attribute {key!r} is None")
    if isinstance(ds.attrs.get("config"), str):
        try:
            json.loads(ds.attrs["config"])
        except json.JSONDecodeError as exc:
            problems.append(f"global attribute 'config' is not JSON ({exc})")
    study = study if study is not None else ds.attrs.get("study")
    if study is not None:
        if study not in STUDY_DIMS:
            problems.append(f"unknown study kind {study!r} (known: {sorted(STUDY_DIMS)})")
        else:
            missing = [d for d in STUDY_DIMS[study] if d not in ds.dims]
            if missing:
                problems.append(f"study {study!r} lacks dimensions {missing}")
    if problems:
        raise SchemaError("dataset does not follow the eqprop schema:\n  " + "\n  ".join(problems))
