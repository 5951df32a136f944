"""Provenance attributes and safe netCDF input/output for every dataset eqprop writes.

Every dataset written by eqprop (training history, gradient comparisons, studies) carries
the same global attributes, so that a file found later says what made it and how to make
it again:

``title``
    One line saying what the dataset is.
``created_at``
    ISO 8601 UTC timestamp, e.g. ``"2026-11-27T21:30:00Z"``.
``eqprop_version``, ``numpy_version``, ``scipy_version``, ``numba_version``, ``xarray_version``
    Versions of the packages that computed the numbers.
``git_commit``, ``git_dirty``
    Commit of the git checkout eqprop was imported from, and ``1`` when that checkout had
    uncommitted changes to tracked files (``0`` otherwise). Both are absent when eqprop is
    not imported from a git checkout (e.g. an installed wheel) or git is unavailable.
``history``
    The command line that produced the file (``sys.argv`` joined by default).
``config``
    JSON string (sorted keys) of every setting needed to rerun the computation.
``seeds``
    JSON list of the random seeds used, when given.

The file format is netCDF3 through scipy by default (no compiled netCDF library needed).
:func:`write_netcdf` is atomic and takes care of what netCDF3 cannot store (booleans,
64-bit and unsigned integers, ``None`` attributes); :func:`open_netcdf` undoes it, so a
round trip gives an identical dataset.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from eqprop._files import atomic_path

__all__ = [
    "DTYPE_ATTR",
    "check_variable_attrs",
    "dataset_attrs",
    "git_info",
    "open_netcdf",
    "to_json",
    "variable",
    "write_netcdf",
]

#: Attribute recording the in-memory dtype of a variable that netCDF3 cannot store as is
#: (``bool`` -> ``int8``, ``int64`` -> ``int32``, unsigned -> signed); restored on open.
DTYPE_ATTR = "eqprop_dtype"

# In-memory dtype -> dtype written to netCDF3 (which has no bool, int64 or unsigned types).
_NC3_COERCE: dict[np.dtype[Any], np.dtype[Any]] = {
    np.dtype(bool): np.dtype(np.int8),
    np.dtype(np.int64): np.dtype(np.int32),
    np.dtype(np.uint64): np.dtype(np.int32),
    np.dtype(np.uint32): np.dtype(np.int32),
    np.dtype(np.uint16): np.dtype(np.int32),
    np.dtype(np.uint8): np.dtype(np.int16),
}


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples, paths and sets into JSON-serialisable values."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.dtype):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)  # "nan", "inf": JSON has no literal for them
    return obj


def to_json(obj: Any) -> str:
    """JSON string of ``obj`` with sorted keys; numpy scalars and arrays become lists/numbers.

    Parameters
    ----------
    obj : any
        Nested dicts/lists/tuples of numbers, strings, bools, None, numpy scalars or
        arrays, paths. Objects that are none of these are written with ``str``.

    Returns
    -------
    str
        Deterministic JSON text (same input -> same string), usable as a hash key.
    """
    return json.dumps(_jsonable(obj), sort_keys=True, default=str)


def _git(cwd: Path, *args: str) -> str:
    """Stripped standard output of ``git ARGS`` run in ``cwd`` (10 s limit).

    Raises :class:`OSError` (no git) or :class:`subprocess.SubprocessError` (non-zero exit,
    timeout); :func:`git_info` turns both into "not known".
    """
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def git_info(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout containing ``path``.

    Parameters
    ----------
    path : path-like, optional
        A file or folder inside the checkout; default: the folder of the eqprop package.

    Returns
    -------
    dict
        ``{"git_commit": "<40 hex>", "git_dirty": 0 | 1}``, or ``{}`` when ``path`` is not
        in a git checkout (or git is missing). Dirty means tracked files differ from the
        commit; untracked files are ignored.
    """
    here = Path(path) if path is not None else Path(__file__).resolve().parent
    if here.is_file():
        here = here.parent
    try:
        commit = _git(here, "rev-parse", "HEAD")
        status = _git(here, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {}
    if len(commit) < 7:
        return {}
    return {"git_commit": commit, "git_dirty": int(bool(status))}


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except ImportError:
        return "not installed"
    return str(getattr(mod, "__version__", "unknown"))


def dataset_attrs(
    title: str,
    config: Mapping[str, Any],
    command: str | Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Global attributes for an eqprop dataset (see the module docstring for each key).

    Parameters
    ----------
    title : str
        One line saying what the dataset holds.
    config : mapping
        Every setting needed to rerun the computation; stored as sorted-key JSON.
    command : str or sequence of str, optional
        Command line recorded in ``history``; default ``sys.argv`` (shell-quoted, joined).
    seeds : sequence of int, optional
        Random seeds used; stored as a JSON list in ``seeds``.

    Returns
    -------
    dict
        Attribute values are str or int only (never None), so they fit netCDF3.
    """
    import eqprop

    if command is None:
        command = sys.argv
    history = command if isinstance(command, str) else shlex.join(str(c) for c in command)
    attrs: dict[str, Any] = {
        "title": str(title),
        "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eqprop_version": str(getattr(eqprop, "__version__", "unknown")),
        "numpy_version": np.__version__,
        "scipy_version": _version("scipy"),
        "numba_version": _version("numba"),
        "xarray_version": xr.__version__,
    }
    attrs.update(git_info())
    attrs["history"] = history
    attrs["config"] = to_json(dict(config))
    if seeds is not None:
        attrs["seeds"] = to_json([int(s) for s in seeds])
    return attrs


def variable(
    dims: str | Sequence[str],
    data: Any,
    long_name: str,
    units: str,
    **attrs: Any,
) -> xr.Variable:
    """An :class:`xarray.Variable` with ``long_name`` and ``units`` set, in one call.

    Use it as a value in ``xr.Dataset({...}, coords={...})``::

        xr.Dataset({"loss": variable("epoch", losses, "training loss", "1")},
                   coords={"epoch": variable("epoch", np.arange(n), "epoch", "1")})

    Parameters
    ----------
    dims : str or sequence of str
        Dimension names (see the vocabulary in the design notes).
    data : array_like
        Values, shaped like ``dims``.
    long_name, units : str
        Human-readable name and UDUNITS string (``"1"`` when dimensionless).
    **attrs
        Further attributes (e.g. ``description``).
    """
    if isinstance(dims, str):
        dims = (dims,)
    return xr.Variable(tuple(dims), data, attrs={"long_name": long_name, "units": units, **attrs})


def check_variable_attrs(ds: xr.Dataset) -> None:
    """Raise ValueError naming the first variable (data or coordinate) lacking attributes.

    Every variable must have string attributes ``long_name`` and ``units``
    (``units="1"`` for dimensionless quantities).
    """
    for name in list(ds.data_vars) + list(ds.coords):
        attrs = ds[name].attrs
        for key in ("long_name", "units"):
            if not isinstance(attrs.get(key), str):
                kind = "data variable" if name in ds.data_vars else "coordinate"
                raise ValueError(
                    f"{kind} {name!r} has no {key!r} attribute (got {attrs.get(key)!r}); "
                    f"set ds[{name!r}].attrs[{key!r}] (units='1' when dimensionless), "
                    "e.g. with eqprop.provenance.variable()"
                )


def _clean_attrs(attrs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Attributes netCDF3 can store: drop None, bool -> int, dict/list of str -> JSON."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif isinstance(value, Mapping):
            value = to_json(value)
        elif isinstance(value, (list, tuple, np.ndarray)):
            arr = np.asarray(value)
            if arr.dtype.kind in "OUSb" or arr.ndim != 1:
                value = to_json(value)
            elif arr.dtype in _NC3_COERCE:
                value = arr.astype(_NC3_COERCE[arr.dtype])
        elif isinstance(value, np.generic) and value.dtype in _NC3_COERCE:
            value = value.astype(_NC3_COERCE[value.dtype])
        elif not isinstance(value, (str, int, float, np.generic)):
            raise TypeError(
                f"attribute {key!r} of {where} has type {type(value).__name__}, which netCDF "
                "cannot store; convert it to str, a number or a 1-D numeric array"
            )
        out[key] = value
    return out


def _encode_for_file(ds: xr.Dataset, engine: str) -> xr.Dataset:
    out = ds.copy(deep=False)
    out.attrs = _clean_attrs(ds.attrs, "the dataset")
    for name in list(out.variables):
        var = out.variables[name]
        attrs = _clean_attrs(var.attrs, f"variable {name!r}")
        if DTYPE_ATTR in attrs:
            raise ValueError(f"variable {name!r} uses the reserved attribute {DTYPE_ATTR!r}")
        data = var.data
        dtype = var.dtype
        target: np.dtype[Any] | None = None
        if dtype == np.dtype(bool):
            target = np.dtype(np.int8)
        elif engine == "scipy" and dtype in _NC3_COERCE:
            target = _NC3_COERCE[dtype]
            info = np.iinfo(target)
            values = np.asarray(data)
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise ValueError(
                    f"variable {name!r} ({dtype}) has values outside {target} that netCDF3 "
                    "cannot store; use engine='h5netcdf' or rescale"
                )
        if target is not None:
            attrs[DTYPE_ATTR] = str(dtype)
            data = np.asarray(data).astype(target)
        # encodings of a dataset read from a file (dtype, char_dim_name, _FillValue...)
        # describe that file, not this write: keep them only for non-netCDF3 engines
        encoding = {} if engine == "scipy" else dict(var.encoding)
        encoding.pop("char_dim_name", None)
        new = xr.Variable(var.dims, data, attrs=attrs, encoding=encoding)
        if name in out.coords:
            out = out.assign_coords({name: new})
        else:
            out[name] = new
    return out


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike[str], engine: str = "scipy") -> Path:
    """Write ``ds`` to ``path`` atomically (temp file in the same folder, then ``os.replace``).

    Booleans are written as int8, and with ``engine="scipy"`` (netCDF3) int64/unsigned
    integers as the nearest signed type, each with the attribute ``eqprop_dtype`` naming
    the original dtype so that :func:`open_netcdf` restores it. Attributes that are None
    are dropped, bool attributes become 0/1, dict attributes become JSON strings.
    Readers never see a half-written file: on any error the temp file is removed and an
    existing file at ``path`` is left untouched.

    Parameters
    ----------
    ds : xarray.Dataset
        Every data variable and coordinate must have ``long_name`` and ``units``.
    path : path-like
        Destination file; its folder must exist.
    engine : {"scipy", "h5netcdf", "netcdf4"}
        xarray backend; ``"scipy"`` (netCDF3, 64-bit offsets) needs no extra package.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        A variable lacks ``long_name``/``units`` (the message names it), or integer values
        do not fit netCDF3.
    """
    check_variable_attrs(ds)
    path = Path(path)
    encoded = _encode_for_file(ds, engine)
    kwargs: dict[str, Any] = {"engine": engine}
    if engine == "scipy":
        kwargs["format"] = "NETCDF3_64BIT"
    with atomic_path(path) as tmp:
        encoded.to_netcdf(tmp, **kwargs)
    return path


def _guess_engine(path: Path) -> str:
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(b"CDF"):
        return "scipy"
    if magic.startswith(b"\x89HDF"):
        return "h5netcdf"
    raise ValueError(f"{path} is not a netCDF file (starts with {magic!r})")


def open_netcdf(path: str | os.PathLike[str], engine: str | None = None) -> xr.Dataset:
    """Open a file written by :func:`write_netcdf`, fully loaded in memory, file closed.

    Restores the dtypes recorded in ``eqprop_dtype`` (bool, int64, unsigned) and removes
    that attribute, so ``open_netcdf(write_netcdf(ds, p))`` is identical to ``ds``.

    Parameters
    ----------
    path : path-like
        netCDF file.
    engine : str, optional
        xarray backend; default: guessed from the file's first bytes (netCDF3 -> scipy).
    """
    path = Path(path)
    if engine is None:
        engine = _guess_engine(path)
    kwargs: dict[str, Any] = {"engine": engine}
    if engine == "scipy":
        kwargs["mmap"] = False
    with xr.open_dataset(path, **kwargs) as handle:
        ds = handle.load().copy(deep=True)
    for name in list(ds.variables):
        var = ds.variables[name]
        if DTYPE_ATTR not in var.attrs:
            continue
        attrs = dict(var.attrs)
        dtype = np.dtype(attrs.pop(DTYPE_ATTR))
        new = xr.Variable(var.dims, np.asarray(var.values).astype(dtype), attrs=attrs)
        new.encoding = dict(var.encoding)
        if name in ds.coords:
            ds = ds.assign_coords({name: new})
        else:
            ds[name] = new
    return ds
