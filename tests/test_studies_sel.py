"""``ds.sel(dim=value)`` by keyword selects, for every dimension of every study (#16).

``method`` is a keyword of xarray's ``sel`` (its inexact-match option): a convergence
study whose solver dimension was called ``method`` came back whole from
``ds.sel(method="anderson")`` (or raised, depending on the value). Every study now uses
names that are no keyword of ``sel``/``isel``; each is checked here on a real (tiny) run.
"""

from __future__ import annotations

import pytest
import xarray as xr

from eqprop.provenance import dataset_attrs, variable
from studies.schema import DIMENSIONS, SEL_KEYWORDS, STUDY_DIMS, SchemaError, check_schema


def assert_sel_by_keyword_selects(ds: xr.Dataset) -> None:
    for dim in ds.dims:
        if dim not in ds.coords:
            continue
        value = ds[dim].values[-1]
        picked = ds.sel(**{str(dim): value})
        assert dim not in picked.dims, f"sel({dim}=...) did not select"
        xr.testing.assert_identical(picked, ds.isel({dim: -1}))


def test_no_known_dimension_is_a_sel_keyword():
    assert not set(SEL_KEYWORDS) & set(DIMENSIONS)
    for dims in STUDY_DIMS.values():
        assert not set(SEL_KEYWORDS) & set(dims)


def test_check_schema_rejects_a_sel_keyword_dimension():
    ds = xr.Dataset(
        {"x": variable("method", [1.0, 2.0], "x", "1")},
        coords={"method": variable("method", ["a", "b"], "m", "1")},
        attrs=dataset_attrs("t", {}, command="c"),
    )
    with pytest.raises(SchemaError, match="'method' is a keyword of xarray's sel"):
        check_schema(ds)


def test_convergence_study():
    from studies.convergence import solver_convergence

    ds = solver_convergence(
        ("picard", "anderson"),
        (1, 2),
        tols=(1e-2, 1e-4),
        hidden=5,
        n_in=4,
        n_out=2,
        batch=2,
        max_iter=50,
        progress=False,
    )
    assert "solver" in ds.dims
    assert_sel_by_keyword_selects(ds)


def test_beta_sweep_study():
    pytest.importorskip("eqprop.rules")
    from studies.beta import BetaSetup, beta_sweep
    from studies.setup import BatchSetup, NetworkSetup, SolverSetup

    setup = BetaSetup(
        network=NetworkSetup(sizes=(6, 5, 3)),
        batch=BatchSetup(size=4),
        solver=SolverSetup(atol=1e-12),
        seeds=(0, 1),
        net_seed=1,
    )
    ds = beta_sweep((1e-3, 2e-3), setup=setup, progress=False)
    assert_sel_by_keyword_selects(ds)


def test_gdu_study():
    pytest.importorskip("eqprop.gdu")
    from studies.gdu import gdu_study

    ds = gdu_study((1e-2, 1e-1), (0,), T=2000, K=4, progress=False)
    assert_sel_by_keyword_selects(ds)


def test_training_curves_study():
    from studies.training import training_curves

    base = dict(
        dataset="digits",
        architecture="64-6-10",
        epochs=1,
        T=4,
        K=2,
        limit=40,
        lrs=[0.2, 0.05],
        beta=0.5,
        batch_size=20,
        eval_batch_size=40,
    )
    ds = training_curves(("one-sided", "symmetric"), (0,), base=base, progress=False)
    assert_sel_by_keyword_selects(ds)
