"""
Persistent particles: a short free phase that continues
=======================================================

With ``persistent=True`` each training sample keeps the free state it reached the last
time it was seen, and its next free phase starts there instead of at zero (Scellier &
Bengio 2017, Sec. 4). A short free phase then continues the relaxation of earlier
epochs. Here both runs have only ``T = 4`` free steps per minibatch; evaluation starts
from zero with ``eval_T = 40`` steps, so the test error measures the weights, not the
particles.
"""

import os

import matplotlib.pyplot as plt

from eqprop.presets import get_preset
from eqprop.train import train

FAST = os.environ.get("EQPROP_DOCS_FAST") == "1"

base = get_preset("digits").config.replace(T=4, eval_T=40, epochs=8 if FAST else 20)
runs = {}
for persistent in (True, False):
    cfg = base.replace(persistent=persistent)
    runs[persistent] = train(cfg, quiet=True).history

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
for persistent, h in runs.items():
    label = "persistent particles" if persistent else "free phase from zero"
    (line,) = ax.plot(h["epoch"], 100 * h["test_error"], marker="o", markersize=3, label=label)
    ax.plot(h["epoch"], 100 * h["train_error"], "--", color=line.get_color())
    ax2.plot(h["epoch"], h["train_loss"], marker="o", markersize=3, label=label)
ax.set_xlabel("epoch")
ax.set_ylabel("error rate [%] (test solid, train dashed)")
ax.legend()
ax2.set_xlabel("epoch")
ax2.set_ylabel("training loss at the free states")
ax2.set_yscale("log")
fig.suptitle("digits 64-64-10, T = 4 free steps per minibatch")
for persistent, h in runs.items():
    print(f"persistent={persistent}: test error {100 * float(h['test_error'][-1]):.2f} %")

# %%
# The loss at the training free states is lower with persistent particles: after a few
# epochs each particle has relaxed over many minibatches, so the free state the EP
# update is computed at is closer to its equilibrium than four steps from zero can get.
# The test error, evaluated from zero with 40 steps, shows how much of that reaches the
# weights on this small set. With persistent particles the checkpoint stores one state
# per training sample (``particles``, :doc:`/training`).
