"""
A parameter sweep on a Dask cluster
===================================

:func:`studies.sweep` evaluates a point function at every point of a grid on any
``concurrent.futures`` executor, writes each finished point to its own netCDF file
(rerunning the same sweep computes only missing points), and combines the points into
one :class:`xarray.Dataset`. Here the grid is the step size ``eps`` times the depth of a
network, the point function counts the iterations its free phase needs to converge, and
the executor is a Dask cluster inside this process (``processes=False``: threads, no
worker start-up; on a real cluster pass ``scheduler="tcp://host:8786"`` or
``workers=N`` instead, or ``eqprop study ... --workers N`` from the shell).
"""

import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from dask.distributed import Client, LocalCluster

from studies import sweep

FAST = os.environ.get("EQPROP_DOCS_FAST") == "1"


def iterations(eps, depth, batch=16, seed=0):
    """Free-phase iterations to atol=1e-6 of a hopfield net with ``depth`` hidden layers."""
    from eqprop import Dynamics, free_phase, init_network

    net = init_network([64, *[32] * depth, 10], seed=seed)
    x = np.random.default_rng(seed).random((batch, 64))
    res = free_phase(net, x, Dynamics(method="picard", eps=eps, atol=1e-6, max_iter=2000)).result
    return {"n_iter": float(np.max(res.n_iter)), "converged": float(np.mean(res.converged))}


grid = {
    "eps": [0.2, 0.5, 0.8] if FAST else [0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95],
    "depth": [1, 2, 3],
}
with (
    LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster,
    Client(cluster) as client,
):
    ds = sweep(
        iterations,
        grid,
        executor=client.get_executor(),
        out_dir=os.path.join(tempfile.mkdtemp(), "points"),
        title="free-phase iterations versus eps and depth",
        progress=False,
    )

fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
for depth in ds["depth"].values:
    ax.semilogy(ds["eps"], ds["n_iter"].sel(depth=depth), marker="o", label=f"{depth} hidden")
ax.set_xlabel("eps (projected Euler step)")
ax.set_ylabel("iterations to atol = 1e-6 (largest in the batch)")
ax.legend()
print(ds)

# %%
# The dataset carries its provenance (``ds.attrs``: the configuration, versions, the
# commit) like every dataset eqprop writes; ``studies.check_schema(ds)`` checks it.
