"""
EP updates match BPTT gradients step by step (GDU)
==================================================

Ernoult et al. (2019) showed that, in a network whose free phase has converged, the
update EP accumulates over the first ``t`` steps of the nudged phase equals minus the
gradient that backpropagation through time computes over the last ``t`` steps of the
free phase, up to :math:`O(\\beta)` ("gradient descending updates", GDU).
``eqprop study gdu`` measures this for each ``beta`` and seed; its figure:

* top: a few traced weights, EP's update (wide, pale) and minus the BPTT gradient
  (dashed, on top) versus ``t``, at the smallest ``beta``;
* bottom: the relative RMS difference between the two, per ``beta``.

.. code-block:: bash

   eqprop study gdu --setting toy --betas 0.001,0.01,0.1 --seeds 0,1,2 \\
       -o runs/gdu.nc --plot gdu.png
"""

import os
import tempfile

from studies import gdu_study, plot_study

FAST = os.environ.get("EQPROP_DOCS_FAST") == "1"

ds = gdu_study(
    betas=[0.01, 0.1] if FAST else [0.001, 0.01, 0.1],
    seeds=[0] if FAST else [0, 1, 2],
    setting="toy",
    out_dir=os.path.join(tempfile.mkdtemp(), "points"),
    progress=False,
)
fig = plot_study(ds)

# %%
# The difference shrinks in proportion to ``beta``: the mismatch at ``beta = 0.01`` is
# about a tenth of that at ``beta = 0.1`` at every step. The toy setting is a 5-50-10
# Hopfield net with tanh units, ``T = 5000`` free steps of size ``eps = 0.08`` (so the
# free phase has converged) and ``K = 80`` nudged steps (:data:`eqprop.gdu.SETTINGS`);
# ``--setting prototypical`` and ``--setting energy-based`` are the other two.
print(ds["rel_rmse"].sel(quantity="weights").mean("seed").isel(t=-1).to_pandas())
