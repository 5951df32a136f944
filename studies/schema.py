"""The dataset schema shared by every study (and every dataset eqprop writes).

Dimension names follow the vocabulary of the design notes, so that datasets from different
studies combine: ``sample``, ``unit`` / ``unit_<layer>``, ``layer`` (``"W1"``, ``"W2"``, ...),
``iteration``, ``t``, ``epoch``, ``phase``, ``method``, ``estimator``, ``reference``, and the
sweep parameters ``beta``, ``seed``, ``depth`` (plus any name a custom sweep introduces).

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
   :data:`STUDY_DIMS` are present.
"""

from __future__ import annotations

import json

import xarray as xr

__all__ = [
    "DIMENSIONS",
    "REQUIRED_ATTRS",
    "STUDY_DIMS",
    "SchemaError",
    "check_schema",
    "coord_attrs",
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
    "method": ("solver method", "1"),
    "estimator": ("EP gradient estimator", "1"),
    "reference": ("reference gradient", "1"),
    "beta": ("nudging strength beta", "1"),
    "seed": ("random seed", "1"),
    "depth": ("number of hidden layers", "1"),
    "tol": ("solver tolerance on the residual (atol)", "1"),
    "cost": ("cost function", "1"),
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
    "solver-convergence": ("method", "depth", "iteration", "sample"),
    "beta-sweep": ("beta", "estimator", "seed", "layer"),
    "gdu": ("t",),
    "training-curves": ("epoch", "estimator", "seed"),
}


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
