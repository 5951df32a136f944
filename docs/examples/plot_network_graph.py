"""
Layers and couplings: build a network, draw it, compare EP with the gradient
============================================================================

A network of :mod:`eqprop.graph` is a list of layers (nodes) and couplings (edges). This
example builds a small Hopfield network with a skip coupling, draws it with
:func:`studies.plot.plot_graph`, relaxes its phases with
:func:`eqprop.graph.kernels.solve_phase` (the :mod:`solvers` path) and compares the
symmetric EP estimate with the exact gradient of recurrent backprop
(:func:`eqprop.graph.backprop.recurrent_backprop`), once with every coupling tied and
once with one coupling's feedback replaced by a fixed random matrix. :doc:`/networks`
explains the conventions.
"""

import matplotlib.pyplot as plt
import numpy as np

import eqprop
from eqprop.graph import Coupling, GraphNetwork, chain
from eqprop.graph import reference as R
from eqprop.graph.backprop import recurrent_backprop
from eqprop.graph.kernels import solve_phase
from eqprop.rules import EquilibriumPropagation
from studies.plot import plot_graph

# %%
# Two networks
# ------------
# :func:`eqprop.graph.chain` builds 6-10-8-3 with sigmoid hidden layers, a linear
# (``identity``) output and a skip coupling from ``h1`` to ``y``; every coupling is
# tied (the feedback is ``W.T``), so the network has an energy. The second network has
# the same layers and weights, but ``h1 -> h2`` sends back ``a_h2 @ B`` with a fixed
# random ``B`` (feedback alignment): a vector field without an energy.

tied = chain(
    [6, 10, 8, 3], activation="sigmoid", output_activation="identity", skip=[(1, 3)], seed=0
)
rng = np.random.default_rng(1)
couplings = []
for c in tied.couplings:
    if c.name == "h1->h2":
        B = rng.uniform(-0.5, 0.5, size=c.W.shape[::-1])  # (target size, source size)
        c = Coupling(c.source, c.target, c.W.copy(), feedback="random", B=B)
    couplings.append(c)
untied = GraphNetwork(tied.copy().layers, couplings, kind="hopfield", cost="squared")

fig, axes = plt.subplots(2, 1, figsize=(8, 5.4), layout="constrained")
plot_graph(tied, axes[0], title="every coupling tied: an energy E")
_ = plot_graph(untied, axes[1], title="h1 -> h2 with random feedback B: a vector field")

# %%
# Phases and the two gradients
# ----------------------------
# The free phase relaxes to a tolerance from zero; the two nudged phases at
# :math:`\pm\beta` start from the free state. The symmetric EP estimate is
# :math:`(\partial_\theta F(s^{+\beta}, \beta) - \partial_\theta F(s^{-\beta},
# -\beta)) / 2\beta` (:func:`eqprop.graph.reference.parameter_gradient`, which for untied
# feedback returns the same local products: vector-field EP). Recurrent backprop solves
# the adjoint system with the network's Jacobian, symmetric or not, and is the exact
# gradient of the loss at the free fixed point in both cases.

x = rng.uniform(0.0, 1.0, size=(16, 6))
d = np.eye(3)[rng.integers(0, 3, size=16)]
beta = 1e-3
solve = dict(atol=1e-12, rtol=0.0, max_iter=20000)
errors = {}
for label, net in (("tied", tied), ("random feedback", untied)):
    free = solve_phase(net, x, **solve)
    assert free.converged.all(), free.message
    plus = solve_phase(net, x, beta=beta, d=d, s0=free.x, **solve).x
    minus = solve_phase(net, x, beta=-beta, d=d, s0=free.x, **solve).x
    g_plus = R.parameter_gradient(net, x, plus, d, beta)
    g_minus = R.parameter_gradient(net, x, minus, d, -beta)
    exact = recurrent_backprop(net, x, d, free.x).grads
    errors[label] = {
        k: np.linalg.norm((g_plus[k] - g_minus[k]) / (2 * beta) - exact[k])
        / np.linalg.norm(exact[k])
        for k in exact
    }
    worst = max(errors[label], key=errors[label].get)
    print(f"{label:16s} largest relative error {errors[label][worst]:.2e} ({worst})")

names = list(errors["tied"])
fig, ax = plt.subplots(figsize=(8, 3.4), layout="constrained")
width = 0.38
for i, (label, colour) in enumerate((("tied", "C0"), ("random feedback", "C3"))):
    ax.bar(
        np.arange(len(names)) + (i - 0.5) * width,
        [errors[label][k] for k in names],
        width,
        color=colour,
        label=label,
    )
ax.set_yscale("log")
ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
ax.set_ylabel("|EP - RBP| / |RBP|")
ax.set_title(f"symmetric EP (beta = {beta:g}) against recurrent backprop", fontsize="medium")
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

# %%
# With tied feedback the estimate is the gradient up to its :math:`O(\beta^2)` bias
# (about :math:`10^{-6}` here). With random feedback in ``h1 -> h2`` it is not: the
# parameters whose error signal passes back through that coupling (``x->h1``,
# ``h1->h2``, the biases of ``h1`` and ``h2``) are off by several percent to tens of
# percent, whatever :math:`\beta`; the couplings into ``y`` and its bias are off by
# less than one percent. That is what
# vector-field EP computes (Scellier et al. 2018): a local contrastive update, not the
# loss gradient.

# %%
# The library's phases and rules
# ------------------------------
# :func:`eqprop.free_phase`, :func:`eqprop.nudged_phase` and every learning rule take a
# graph network as they take a chain: a dense tied chain runs on the fused chain
# kernels, anything else (here the skip coupling and the random feedback) on the
# general graph kernels through the same :mod:`solvers` methods. A rule's gradient is
# then a mapping from parameter names to arrays, the names of
# :meth:`~eqprop.graph.model.GraphNetwork.parameters`, and SGD updates those arrays in
# place.


dyn = eqprop.Dynamics(T=40, K=10, eps=0.5)
free = eqprop.free_phase(untied, x, dyn)
step = EquilibriumPropagation(beta=0.5, estimator="symmetric").estimate(untied, x, d, dyn)
params = untied.parameters()
for name, grad in step.gradient.items():
    params[name] -= 0.1 * grad  # W -= lr * dW
print("free state", free.state.shape, "; parameters updated:", ", ".join(step.gradient))
