"""
The convergence study and its figure
====================================

``eqprop study convergence`` solves the free phase of networks of several depths with
each solver, on the networks' own kernels, and records the residual and the energy at
every iteration; ``eqprop plot`` draws the figure below from its netCDF file. The same
from Python:

.. code-block:: bash

   eqprop study convergence --depths 1,2,3 -o runs/convergence.nc --plot convergence.png

Top row: the largest residual in the batch per iteration (band: smallest to largest),
with the tolerances the study records as dotted lines. Bottom row: the energy gap
``F(s_k) - F_min``, where ``F_min`` is the lowest energy any solver reached for that
sample: it shows whether the solvers end in the same minimum.
"""

import os
import tempfile

from studies import plot_study, solver_convergence

FAST = os.environ.get("EQPROP_DOCS_FAST") == "1"

folder = tempfile.mkdtemp()  # per-point files (a rerun of the same study reuses them)
ds = solver_convergence(
    ["picard", "anderson", "gauss-seidel"],
    depths=[1, 2] if FAST else [1, 2, 3],
    tols=[1e-2, 1e-4, 1e-6],
    max_iter=200 if FAST else 400,
    out_dir=os.path.join(folder, "points"),
    progress=False,
)
fig = plot_study(ds)
reached = ds["iterations_to_tol"].sel(tol=1e-6)  # NaN: not within max_iter
print(f"samples that reached 1e-6, of {ds.sizes['sample']}:")
print(reached.notnull().sum("sample").to_pandas())
print("iterations of the slowest of them:")
print(reached.max("sample").to_pandas())

# %%
# ``iterations_to_tol`` is the first iteration at which each sample's residual met each
# tolerance (NaN: never, within ``max_iter``); count the NaN before comparing the
# solvers' iterations, or a stuck sample drops out of the maximum. Read together, the
# two rows tell a converged sample from a stuck one: the plain iteration and
# Gauss-Seidel descend in residual and energy together, while on the one- and
# three-hidden-layer nets Anderson acceleration cycles on one sample of the batch (the
# periodic spikes; the band shows the other samples converged early), its energy gap
# staying near 0.1: that sample never reaches the minimum the other solvers find.
