"""
EP against recurrent backprop and BPTT
======================================

:func:`eqprop.compare.compare` runs every EP estimator at several ``beta`` and measures
each against reference gradients computed independently of EP: recurrent backprop
(RBP, the exact gradient at the free fixed point, by implicit differentiation) and
backpropagation through time through the ``T`` free steps (BPTT). The three panels are
one 64-32-10 Hopfield network (same weights) on 20 digits images:

* smooth ``sigmoid`` units, every phase run for ``T = K = 600`` steps, long enough to
  reach the fixed point (each title gives the largest free-phase residual; BPTT unrolls
  the same 600 steps): the textbook case;
* the papers' ``hardsigmoid`` (``clip(s, 0, 1)``), the same long phases;
* ``hardsigmoid`` with the papers' fixed step counts, ``T = 60`` free and ``K = 30``
  nudged steps, which on this network stop short of the equilibrium (``compare`` warns).

The shell's ``eqprop compare --sizes 64-32-10 --activation hardsigmoid --T 60 --K 30``
runs the last setting on random inputs and prints the table.
"""

import matplotlib.pyplot as plt
import numpy as np

from eqprop import Dynamics, init_network
from eqprop.compare import compare
from eqprop.data import load_dataset, one_hot

train, _, _ = load_dataset("digits")
x = train.x[:20].astype("float64")
d = one_hot(train.labels[:20], 10, dtype="float64")
betas = np.logspace(-3, 0, 7)
# BPTT unrolls a fixed number of steps, so the converged panels run long fixed-step phases
# (compare refuses BPTT against phases solved to a tolerance: their step count varies).
long_phases = Dynamics(T=600, K=600, eps=0.5, method="fixed")
settings = {
    "sigmoid, T = K = 600": ("sigmoid", long_phases),
    "hardsigmoid, T = K = 600": ("hardsigmoid", long_phases),
    "hardsigmoid, T = 60, K = 30": ("hardsigmoid", Dynamics(T=60, K=30, eps=0.5)),
}

fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True, layout="constrained")
for ax, (title, (activation, dyn)) in zip(axes, settings.items()):
    net = init_network([64, 32, 10], activation=activation, seed=0, dtype="float64")
    ds = compare(net, x, d, dyn, betas=betas, references=["rbp", "bptt"])
    layer = ds["layer"].values[0]  # W1, the input-to-hidden weights
    for i, est in enumerate(ds["estimator"].values):
        for ref, style in (("rbp", "-"), ("bptt", "--")):
            err = ds["rel_error"].sel(estimator=est, reference=ref, layer=layer)
            ax.loglog(
                betas,
                err,
                linestyle=style,
                color=f"C{i}",
                marker="os^"[i],
                markersize=4,
                label=f"{est} vs {ref}",
            )
    residual = float(ds["free_residual"].max())
    ax.set_title(f"{title}\nlargest free-phase residual: {residual:.1e}", fontsize="medium")
    ax.set_xlabel("beta")
axes[0].set_ylabel(f"||EP - reference|| / ||reference||, {layer}")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize="small")
fig.suptitle("EP estimators against RBP (solid) and BPTT (dashed)")

# %%
# **Smooth units, converged phases**: RBP and BPTT agree (the dashed lines lie on the
# solid ones), the one-sided error falls like ``beta`` and the symmetric one like
# ``beta**2``. With a single minibatch the random-sign estimator draws one sign, so it
# is a one-sided estimate at ``+beta`` or ``-beta``; its advantage is an average over
# minibatches (:ref:`sphx_glr_auto_examples_plot_beta_sweep.py`).
#
# **Hard sigmoid, converged phases**: the errors fall with ``beta`` down to about
# ``1e-2`` and then level off at a few percent. The clip makes the dynamics
# non-differentiable where a unit sits at a bound, and the expansion of EP in ``beta``
# needs a smooth equilibrium.
#
# **Too few free steps**: the nudged phase keeps relaxing toward the free equilibrium
# as well as toward the target, and dividing that drift by a small ``beta`` blows the
# one-sided estimate up like ``1 / beta``. The symmetric estimator cancels the drift
# (the same in the ``+beta`` and ``-beta`` phases) but stays biased against both
# references.
