"""
Train a network with Equilibrium Propagation
============================================

:func:`eqprop.train.train` runs the training loop of ``eqprop train``: minibatches,
free and nudged phases, the EP update, SGD, and a per-epoch history (an
:class:`xarray.Dataset`). This is the ``digits`` preset (Scellier & Bengio 2017's
one-hidden-layer setting scaled to the 8x8 digits: 64-64-10, ``T = 20`` free steps,
``K = 4`` nudged steps, ``beta = 1`` with a random sign per minibatch, persistent
particles); the same run from the shell is

.. code-block:: bash

   eqprop train --preset digits --output runs/digits
"""

import os

import matplotlib.pyplot as plt

from eqprop.presets import get_preset
from eqprop.train import train

FAST = os.environ.get("EQPROP_DOCS_FAST") == "1"

config = get_preset("digits").config  # a TrainConfig: network, dynamics, rule, ...
result = train(config.replace(epochs=10 if FAST else 30), quiet=True)
h = result.history

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
for split, style in (("train", "--"), ("valid", "-."), ("test", "-")):
    ax.plot(h["epoch"], 100 * h[f"{split}_error"], style, marker="o", markersize=3, label=split)
    ax2.semilogy(h["epoch"], h[f"{split}_loss"], style, marker="o", markersize=3, label=split)
ax.set_xlabel("epoch")
ax.set_ylabel("error rate [%]")
ax.set_ylim(0, None)
ax.legend()
ax2.set_xlabel("epoch")
ax2.set_ylabel("mean cost 1/2 ||y - d||^2")
fig.suptitle("digits preset, seed 0")
print(f"test error after {int(h['epoch'][-1])} epochs: {100 * float(h['test_error'][-1]):.2f} %")

# %%
# The training error is measured on the free phases *during* the epoch (weights
# changing), validation and test errors at its end, from a free phase that starts at
# zero. :doc:`/training` describes every setting; :doc:`/reproductions/index` the runs
# on MNIST.
