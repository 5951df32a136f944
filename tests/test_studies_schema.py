"""Every dataset eqprop writes follows the one schema (so that studies combine)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from eqprop.provenance import dataset_attrs, open_netcdf, variable, write_netcdf
from studies.schema import DIMENSIONS, SchemaError, check_schema, coord_attrs


def test_coord_attrs_vocabulary():
    assert coord_attrs("beta")["units"] == "1"
    assert "layer 2" in coord_attrs("unit_2")["long_name"]
    assert coord_attrs("my_param") == {"long_name": "my_param", "units": "1"}
    assert {
        "sample",
        "layer",
        "iteration",
        "t",
        "epoch",
        "phase",
        "solver",
        "estimator",
        "reference",
        "beta",
        "seed",
        "depth",
    } <= set(DIMENSIONS)


def test_check_schema_flags_each_rule():
    good = xr.Dataset(
        {"x": variable("beta", [1.0, 2.0], "x", "1")},
        coords={"beta": variable("beta", [0.1, 0.2], "beta", "1")},
        attrs=dataset_attrs("t", {}, command="c"),
    )
    check_schema(good)
    no_coord = good.drop_vars("beta")
    with pytest.raises(SchemaError, match="'beta' has no coordinate"):
        check_schema(no_coord)
    bad_json = good.copy()
    bad_json.attrs["config"] = "{not json"
    with pytest.raises(SchemaError, match="not JSON"):
        check_schema(bad_json)
    with pytest.raises(SchemaError, match="unknown study"):
        check_schema(good, study="nope")
    with pytest.raises(SchemaError, match="lacks dimensions"):
        check_schema(good, study="beta-sweep")


def test_compare_dataset_follows_the_schema(tmp_path):
    compare = pytest.importorskip("eqprop.compare")
    from eqprop.network import init_network
    from eqprop.phases import Dynamics

    net = init_network((4, 5, 3), dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((2, 4))
    d = np.eye(3)[[0, 2]]
    dyn = Dynamics(T=400, K=10, eps=0.5)
    ds = compare.compare(net, x, d, dyn, betas=(0.01,), references=("bptt",), command="t")
    check_schema(ds)
    check_schema(open_netcdf(write_netcdf(ds, tmp_path / "c.nc")))


def test_training_history_follows_the_schema():
    train = pytest.importorskip("eqprop.train")
    cfg = train.TrainConfig.from_flat(
        dataset="digits", architecture="64-8-10", epochs=1, T=5, K=2, limit=60, eval_batch_size=60
    )
    hist = train.train(cfg, quiet=True, command="t").history
    check_schema(hist)
