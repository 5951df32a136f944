"""Tests of eqprop.provenance: attributes, netCDF round trip, validation, atomic writes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import xarray as xr

from eqprop import provenance
from eqprop.provenance import (
    dataset_attrs,
    git_info,
    open_netcdf,
    to_json,
    variable,
    write_netcdf,
)


def _example() -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "error": variable(("beta", "layer"), rng.random((3, 2)), "gradient error", "1"),
            "converged": variable("beta", np.array([True, False, True]), "converged", "1"),
            "n_iter": variable("beta", np.array([5, 7, 2**31 - 1], dtype=np.int64), "iters", "1"),
            "energy": variable(("beta",), np.arange(3, dtype=np.float32), "energy", "1"),
            "wall": variable("beta", rng.random(3), "wall time", "s"),
        },
        coords={
            "beta": variable("beta", [0.01, 0.1, 1.0], "nudging strength", "1"),
            "layer": variable("layer", ["W1", "W2"], "weight layer", "1"),
            "seed": variable("beta", np.array([0, 1, 2], dtype=np.int64), "seed", "1"),
        },
        attrs=dataset_attrs(
            "example", {"lr": np.float32(0.5), "sizes": (4, 3, 2)}, command="x y", seeds=[0, 1]
        ),
    )


def test_round_trip_is_identical(tmp_path):
    ds = _example()
    path = write_netcdf(ds, tmp_path / "a.nc")
    back = open_netcdf(path)
    xr.testing.assert_identical(ds, back)
    # dtypes that netCDF3 lacks come back as they were, not as what was stored
    assert back["converged"].dtype == bool
    assert back["n_iter"].dtype == np.int64
    assert back["seed"].dtype == np.int64
    assert back["energy"].dtype == np.float32
    assert provenance.DTYPE_ATTR not in back["converged"].attrs
    # the file is closed: it can be removed and the data stays readable
    path.unlink()
    assert back["error"].values.sum() == pytest.approx(ds["error"].values.sum())


def test_file_is_netcdf3_with_int8_bools(tmp_path):
    path = write_netcdf(_example(), tmp_path / "a.nc")
    assert path.read_bytes()[:3] == b"CDF"
    with xr.open_dataset(path, engine="scipy", decode_cf=False) as raw:
        assert raw["converged"].dtype == np.int8
        assert raw["converged"].attrs[provenance.DTYPE_ATTR] == "bool"


def test_none_and_bool_attributes_are_made_storable(tmp_path):
    ds = _example()
    ds.attrs["nothing"] = None
    ds.attrs["flag"] = True
    ds["wall"].attrs["note"] = None
    back = open_netcdf(write_netcdf(ds, tmp_path / "a.nc"))
    assert "nothing" not in back.attrs and "note" not in back["wall"].attrs
    assert back.attrs["flag"] == 1


@pytest.mark.parametrize("name", ["wall", "beta", "seed"])
@pytest.mark.parametrize("key", ["units", "long_name"])
def test_missing_attribute_is_rejected_by_name(tmp_path, name, key):
    ds = _example()
    del ds[name].attrs[key]
    with pytest.raises(ValueError, match=rf"'{name}'.*'{key}'"):
        write_netcdf(ds, tmp_path / "a.nc")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_temp_file_and_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.nc"
    old = write_netcdf(_example().isel(beta=[0]), path).read_bytes()

    def boom(self, *args, **kwargs):
        # write part of a file first, as a crash in the middle of a write would
        with open(args[0], "wb") as fh:
            fh.write(b"CDF\x02partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(OSError, match="disk full"):
        write_netcdf(_example(), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nc"]
    assert path.read_bytes() == old


def test_out_of_range_int64_is_rejected(tmp_path):
    ds = _example()
    ds["n_iter"].values[0] = 2**40
    with pytest.raises(ValueError, match="n_iter"):
        write_netcdf(ds, tmp_path / "a.nc")


def test_dataset_attrs_content():
    attrs = dataset_attrs("t", {"b": np.arange(2), "a": np.float64(0.25)}, command=["p", "a b"])
    assert attrs["title"] == "t"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", attrs["created_at"])
    assert attrs["history"] == "p 'a b'"
    assert json.loads(attrs["config"]) == {"a": 0.25, "b": [0, 1]}
    assert attrs["config"].index('"a"') < attrs["config"].index('"b"')  # sorted keys
    for key in ("eqprop_version", "numpy_version", "scipy_version", "numba_version"):
        assert isinstance(attrs[key], str)
    assert attrs["xarray_version"] == xr.__version__
    assert all(v is not None for v in attrs.values())


def test_git_info_outside_a_checkout_is_empty(tmp_path):
    assert git_info(tmp_path) == {}


def test_git_info_in_a_checkout(tmp_path):
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    env = {
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@b",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@b",
        "PATH": __import__("os").environ["PATH"],
    }
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    (tmp_path / "f").write_text("1")
    subprocess.run(["git", "add", "f"], cwd=tmp_path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "m"], cwd=tmp_path, check=True, env=env)
    info = git_info(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", info["git_commit"]) and info["git_dirty"] == 0
    (tmp_path / "f").write_text("2")
    assert git_info(tmp_path)["git_dirty"] == 1


def test_to_json_is_stable_for_numpy_values():
    a = to_json({"x": np.int64(3), "y": np.array([1.5, 2.0]), "z": (1, 2)})
    b = to_json({"z": [1, 2], "y": [1.5, 2.0], "x": 3})
    assert a == b


def test_rewriting_an_opened_dataset_with_longer_strings(tmp_path):
    """Encodings read from a file (e.g. the char dimension of short strings) must not
    leak into a later write of a modified dataset."""
    import warnings

    ds = _example()
    back = open_netcdf(write_netcdf(ds, tmp_path / "a.nc"))
    longer = back.assign_coords(layer=variable("layer", ["W1", "W2-longer"], "weight layer", "1"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = open_netcdf(write_netcdf(longer, tmp_path / "b.nc"))
    assert list(again["layer"].values) == ["W1", "W2-longer"]


def test_atomic_path_replaces_on_success_and_leaves_nothing_on_error(tmp_path):
    import os

    from eqprop._files import atomic_path

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with atomic_path(target, suffix=".part") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".part")
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
