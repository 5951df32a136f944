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
    assert {"method", "depth", "iteration", "sample", "tol"} <= set(ds.dims)
    back = open_netcdf(path)
    check_schema(back)
    np.testing.assert_array_equal(back["residual"].values, ds["residual"].values)


@pytest.mark.parametrize("depth", [1, 2])
def test_picard_trace_matches_independent_trajectory(study, depth):
    """Residual and energy per iteration equal those of plain repeated steps
    (eqprop.gradients.free_trajectory: same kernel, no solver)."""
    ds, _ = study
    p = ds.sel({"method": "picard", "depth": depth})  # `method=` is a sel() keyword
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
    for m in ds["method"].values:
        for d in ds["depth"].values:
            p = ds.sel({"method": m, "depth": d})
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
    conv = ds["converged"].sel({"method": "picard"})
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
    pic = ds.sel({"method": "picard", "depth": 2})
    eul = ds.sel({"method": "euler", "depth": 2})
    n = 30
    np.testing.assert_allclose(eul["energy"].values[:n], pic["energy"].values[:n], rtol=1e-10)
    scaled = eul["residual"].values[:n] * SMALL["eps"]
    fp = pic["residual"].values[:n]
    assert np.all(scaled >= fp * (1 - 1e-9))
    same = np.isclose(scaled, fp, rtol=1e-9, atol=1e-15)
    assert same.mean() > 0.8, same
