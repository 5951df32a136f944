"""
Bias of the EP estimators versus beta
=====================================

EP estimates the gradient of the loss from the difference between a nudged and the
free equilibrium, divided by the nudging strength ``beta``. Against the exact gradient
at the free fixed point (recurrent backprop), the one-sided estimator's bias is
:math:`O(\\beta)`; the symmetric estimator (nudges at :math:`+\\beta` and
:math:`-\\beta`, Laborieux et al. 2021) cancels the first-order term, :math:`O(\\beta^2)`;
the random-sign estimator (Scellier & Bengio 2017) is unbiased to first order on
average over signs, with a spread over seeds of order :math:`\\beta`. Phases run to a
tolerance of ``1e-11``, so the estimates are those of the equilibria, not of truncated
dynamics.

From the shell:

.. code-block:: bash

   eqprop study beta-sweep --betas 0.001,0.003,0.01,0.03,0.1,0.3,1 --seeds 0,1,2,3,4,5 \\
       -o runs/beta.nc --plot beta.png
"""

import os
import tempfile

import numpy as np

from studies import beta_sweep, plot_study
from studies.beta import BetaSetup
from studies.setup import NetworkSetup

FAST = os.environ.get("EQPROP_DOCS_FAST") == "1"

ds = beta_sweep(
    betas=np.logspace(-3, 0, 4 if FAST else 7),
    setup=BetaSetup(network=NetworkSetup(sizes=(20, 16, 5)), seeds=range(6)),
    out_dir=os.path.join(tempfile.mkdtemp(), "points"),
    progress=False,
)
fig = plot_study(ds)

# %%
# The dash-dotted and dotted guides have slopes 1 and 2. For the smallest ``beta`` the
# one-sided bias follows the slope-1 guide and the symmetric bias the slope-2 guide, a
# hundred times smaller at ``beta = 1e-3``. Above a few ``1e-3`` the nudged phases move
# hard-sigmoid units across their bounds (``clip(s, 0, 1)``), where the dynamics are
# not smooth, and every estimator departs from the gradient. The random-sign
# estimator's mean over six seeds lies between the two: its six sign draws are not
# balanced.
print(ds["bias"].sel(layer="W1").to_pandas())
