"""
The convergence study and its figure
====================================

``eqprop study convergence`` solves the free phase of networks of several depths with
each solver, on the networks' own kernels, and records the residual and the energy at
every iteration; ``eqprop plot`` draws the figure below from its netCDF file. The same
from Python:

.. code-block:: bash

   eqprop study convergence --depths 1,2,3 --out runs/convergence.nc --plot convergence.png

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
print(ds["iterations_to_tol"].max("sample").sel(tol=1e-6).to_pandas())

# %%
# ``iterations_to_tol`` is the first iteration at which each sample's residual met each
# tolerance (NaN: never, within ``max_iter``). The plain iteration on the
# one-hidden-layer net converges linearly; Anderson acceleration can stall on a sample
# whose units hit the bounds of the hard sigmoid (the spikes), which its safeguards
# (:doc:`/solvers`) restart.
