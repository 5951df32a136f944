"""Solver-convergence study: end to end, checked against step-by-step iteration.

The reference (eqprop.gradients.free_trajectory, eqprop.network.energy) runs the same
numba kernels as the study, so it checks the solver loop, the residual/energy records
and their padding, not the dynamics themselves."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("eqprop.network")
pytest.importorskip("solvers")

from eqprop.gradients import free_trajectory
from eqprop.network import energy
from eqprop.provenance import open_netcdf
from studies.convergence import _network_problem, solver_convergence
from studies.schema import check_schema

SMALL = dict(hidden=6, n_in=5, n_out=3, batch=3, max_iter=400, eps=0.5, seed=2)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("conv") / "conv.nc"
    ds = solver_convergence(
        ("picard", "anderson", "gauss-seidel"),
        (1, 2),
        tols=(1e-3, 1e-6),
        path=path,
        progress=False,
        **SMALL,
    )
    return ds, path


def test_schema_and_file(study):
    ds, path = study
    check_schema(ds)
    assert ds.attrs["study"] == "solver-convergence"
    assert {"solver", "depth", "iteration", "sample", "tol"} <= set(ds.dims)
    back = open_netcdf(path)
    check_schema(back)
    np.testing.assert_array_equal(back["residual"].values, ds["residual"].values)


@pytest.mark.parametrize("depth", [1, 2])
def test_picard_trace_matches_independent_trajectory(study, depth):
    """Residual and energy per iteration equal those of plain repeated steps
    (eqprop.gradients.free_trajectory: same kernel, no solver)."""
    ds, _ = study
    p = ds.sel({"solver": "picard", "depth": depth})
    net, x, _ = _network_problem(
        depth,
        SMALL["hidden"],
        SMALL["n_in"],
        SMALL["n_out"],
        SMALL["batch"],
        "hopfield",
        "hardsigmoid",
        SMALL["eps"],
        "float64",
        SMALL["seed"],
    )
    T = 40
    traj = free_trajectory(net, x, T, eps=SMALL["eps"])
    ref_res = np.abs(traj[1:] - traj[:-1]).max(axis=2)  # (T, batch): r_k = |g(s_k) - s_k|
    got = p["residual"].values[:T]
    live = ~np.isnan(got)
    assert live[:10].all()
    np.testing.assert_allclose(got[live], ref_res[live], rtol=1e-9, atol=1e-12)
    ref_e = np.stack([energy(net, x, traj[k]) for k in range(T)])
    got_e = p["energy"].values[:T]
    np.testing.assert_allclose(got_e[live], ref_e[live], rtol=1e-9, atol=1e-12)
    # a gradient-like descent on E: the energy never increases along Picard steps here
    assert np.all(np.diff(ref_e[:10], axis=0) <= 1e-12)


def test_iterations_to_tol_are_first_crossings(study):
    ds, _ = study
    for m in ds["solver"].values:
        for d in ds["depth"].values:
            p = ds.sel({"solver": m, "depth": d})
            for tol in ds["tol"].values:
                it = p["iterations_to_tol"].sel(tol=tol).values
                for s, k in enumerate(it):
                    r = p["residual"].values[:, s]
                    if np.isnan(k):
                        assert not np.any(r <= tol)
                    else:
                        k = int(k)
                        assert r[k] <= tol and not np.any(r[:k] <= tol)
    # looser tolerances are reached no later than tighter ones
    it = ds["iterations_to_tol"]
    assert bool(
        (it.sel(tol=1e-3) <= it.sel(tol=1e-6)).where(it.sel(tol=1e-6).notnull(), True).all()
    )
    conv = ds["converged"].sel({"solver": "picard"})
    assert bool(conv.all()), "Picard should converge on this small contracting network"


def test_euler_with_dt_eps_is_picard_in_field_units():
    """For the Hopfield network, projected Euler with dt = eps takes the same steps as
    Picard on g(s) = P(s - eps dE/ds) (same energies); its residual is the projected field,
    i.e. Picard's / eps, except where a step is clipped at a bound (Picard then measures
    the shorter clipped step)."""
    solvers = pytest.importorskip("solvers")
    if not hasattr(solvers, "solve_steady_state"):
        pytest.skip("solvers.solve_steady_state not available")
    ds = solver_convergence(("picard", "euler"), (2,), tols=(1e-5,), progress=False, **SMALL)
    pic = ds.sel({"solver": "picard", "depth": 2})
    eul = ds.sel({"solver": "euler", "depth": 2})
    n = 30
    np.testing.assert_allclose(eul["energy"].values[:n], pic["energy"].values[:n], rtol=1e-10)
    scaled = eul["residual"].values[:n] * SMALL["eps"]
    fp = pic["residual"].values[:n]
    assert np.all(scaled >= fp * (1 - 1e-9))
    same = np.isclose(scaled, fp, rtol=1e-9, atol=1e-15)
    assert same.mean() > 0.8, same


def test_fallback_counts_are_variables(study):
    study = study[0]
    for name in ("n_fallback", "fallback_iter"):
        assert study[name].dims == ("solver", "depth", "sample")
        assert study[name].attrs["long_name"] and study[name].attrs["units"] == "1"
    for s in ("picard", "gauss-seidel"):
        assert (study["n_fallback"].sel(solver=s) == 0).all()
        assert (study["fallback_iter"].sel(solver=s) == -1).all()
    a = study.sel(solver="anderson")
    np.testing.assert_array_equal(a["fallback_iter"] >= 0, a["n_fallback"] >= 4)


def test_the_issues_sawtooth_setting_converges_and_shows_the_fallback():
    # `eqprop study convergence --depths 1 --tols 1e-2,1e-4 --batch 4`, study defaults
    # otherwise: Anderson saw-toothed on the third sample for 500 iterations
    ds = solver_convergence(
        ("picard", "anderson", "broyden", "gauss-seidel"),
        (1,),
        tols=(1e-2, 1e-4),
        batch=4,
        progress=False,
    )
    p = ds.sel(solver="picard", depth=1)
    np.testing.assert_array_equal(p["n_iter"], [51, 75, 131, 62])
    a = ds.sel(solver="anderson", depth=1)
    assert bool(a["converged"].all())
    assert int(a["n_fallback"][2]) >= 1 and int(a["fallback_iter"][2]) >= 0
    assert int(a["n_fallback"][[0, 1, 3]].sum()) == 0
    assert not np.isnan(a["iterations_to_tol"].sel(tol=1e-4)).any()
    # Broyden (#16) is in the study, with its fallback counts: it converges here too
    b = ds.sel(solver="broyden", depth=1)
    assert bool(b["converged"].all())
    np.testing.assert_array_equal(b["fallback_iter"] >= 0, b["n_fallback"] >= 4)


def test_old_files_with_a_method_dimension_are_renamed_on_open(study, tmp_path):
    pytest.importorskip("matplotlib")
    study = study[0]
    from eqprop.provenance import write_netcdf
    from studies.plot import plot_study
    from studies.schema import upgrade

    old = study.rename({"solver": "method"})
    # the trap: sel(method=...) is sel's own keyword and silently selects nothing
    assert old.sel(method="anderson").sizes["method"] == 3
    path = write_netcdf(old, tmp_path / "old.nc")
    new = upgrade(open_netcdf(path))
    assert "solver" in new.dims and "method" not in new.dims
    assert "method -> solver" in new.attrs["renamed_on_open"]
    assert new["solver"].attrs["long_name"] == "solver method"
    np.testing.assert_array_equal(
        new["residual"].sel(solver="anderson").values,
        study["residual"].sel(solver="anderson").values,
    )
    check_schema(new)
    plot_study(path, tmp_path / "old.png")
    assert (tmp_path / "old.png").stat().st_size > 0
    assert upgrade(study) is study
