"""
Solve an equilibrium with each solver
=====================================

The free phase of a network is an equilibrium: the state ``s`` with the input clamped
where the dynamics stop moving. :class:`eqprop.Dynamics` chooses how it is found; every
method below runs until the max-norm residual of each sample is at most ``atol`` (or
``max_iter`` iterations), and returns its residual trace (``result.residual``, shape
``(iterations + 1, batch)``, NaN once a sample has stopped).

The network is a Hopfield-energy net 64-32-32-10 with the hard sigmoid (Scellier &
Bengio 2017), inputs a batch of 16 digits images. The fixed-point methods iterate the
projected Euler step ``s <- clip(s - eps dE/ds, 0, 1)``; the ODE methods integrate
``ds/dt = -dE/ds`` with ``dt = eps`` (their residual is the field's max norm, ``1/eps``
times the fixed-point one away from the bounds).
"""

import dataclasses

import matplotlib.pyplot as plt
import numpy as np

from eqprop import Dynamics, free_phase, init_network
from eqprop.data import load_dataset

train, _, _ = load_dataset("digits")
x = train.x[:16]
net = init_network([64, 32, 32, 10], kind="hopfield", activation="hardsigmoid", seed=0)

settings = {
    "picard": Dynamics(method="picard"),
    "anderson": Dynamics(method="anderson"),
    "gauss-seidel-parity": Dynamics(method="gauss-seidel-parity"),
    "gauss-seidel-parity, eps=1, damping=1.5": Dynamics(
        method="gauss-seidel-parity", eps=1.0, damping=1.5
    ),
    "euler": Dynamics(method="euler"),
    "rk4": Dynamics(method="rk4"),
    "dopri5": Dynamics(method="dopri5"),
}
fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
for name, dyn in settings.items():
    dyn = dataclasses.replace(dyn, atol=1e-6, max_iter=1000)  # eps=0.5 unless set above
    res = free_phase(net, x, dyn).result
    worst = np.nanmax(res.residual, axis=1)  # largest residual in the batch
    ax.semilogy(worst, label=f"{name} ({int(res.n_iter.max())} it.)")
    print(
        f"{name:>40}: converged {int(res.converged.sum())}/{len(x)}, "
        f"iterations max {int(res.n_iter.max())}, {res.wall_time * 1e3:.1f} ms"
    )
ax.axhline(1e-6, color="0.5", linestyle=":", label="atol")
ax.set_xlabel("iteration")
ax.set_ylabel("largest residual in the batch")
ax.set_title("Free phase of a 64-32-32-10 Hopfield net, 16 digits")
ax.legend(fontsize="small")

# %%
# Anderson acceleration reaches the tolerance in about a quarter of the plain
# iteration's steps. Updating the layers of one parity at a time (odd, then even) helps
# less at ``eps = 0.5``; at ``eps = 1`` each such update is the exact minimiser of the
# energy over its layers given their neighbours, and over-relaxing it (``damping=1.5``)
# is the fast free phase that :doc:`/training` uses for deep nets. Dopri5 adapts its
# step per sample. (Residuals of different ``eps`` are not on one scale: the
# fixed-point residual is ``eps`` times the field away from the bounds.)
#
# The same comparison over depths, as a resumable study written to netCDF, is
# ``eqprop study convergence`` (:doc:`/studies`); its figure is
# :ref:`sphx_glr_auto_examples_plot_convergence_study.py`.
