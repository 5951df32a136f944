r"""Gradient-descending updates (GDU): EP's nudged phase step by step versus BPTT.

Ernoult et al. (2019, NeurIPS, "Updates of Equilibrium Prop Match Gradients of Backprop
Through Time in an RNN with Static Input") show that when the free phase has converged to
:math:`s^*` (``T`` steps) and the dynamics are :math:`s_{t+1} = \partial\Phi/\partial s
(s_t)`, the first ``K`` steps of the nudged phase, started at :math:`s^*`, compute
BPTT's gradients backwards in time:

.. math::

    \Delta^{EP}_s(t) = \frac{s^\beta_{t+1} - s^\beta_t}{\tilde\beta}
        \;\to\; -\nabla^{BPTT}_s(t) = -\frac{\partial\mathcal L}{\partial s_{T-t}},
    \qquad
    \Delta^{EP}_\theta(t) = -\frac1\beta\Big(\frac{\partial F}{\partial\theta}(s^\beta_{t+1})
        - \frac{\partial F}{\partial\theta}(s^\beta_t)\Big)
        \;\to\; -\nabla^{BPTT}_\theta(t)

as :math:`\beta \to 0`, for ``t = 0 .. K-1``, where :math:`\nabla^{BPTT}_\theta(t)` is
the contribution to :math:`\partial\mathcal L/\partial\theta` of the step
:math:`s_{T-t-1} \to s_{T-t}` (the parameters of that step only) and ``F`` is the
network's total function (:mod:`eqprop.network`: ``E`` for hopfield, ``-Phi`` for
prototypical).

Scale conventions (so both sides are the same numbers, not only parallel):

* ``kind="hopfield"``: the projected Euler step is :math:`\partial\Phi/\partial s` with
  :math:`\Phi = \tfrac12\|s\|^2 - \epsilon E`; the nudge :math:`\beta` of ``F = E +
  \beta C`` is :math:`\tilde\beta = \epsilon\beta` in :math:`\Phi` units, so
  :math:`\Delta^{EP}_s` divides by :math:`\epsilon\beta`;
* ``kind="prototypical"``: :math:`\tilde\beta = \beta`. The map is
  :math:`\sigma(\partial\Phi/\partial s)`, not :math:`\partial\Phi/\partial s`: with the
  nudge inside :math:`\sigma` the *synaptic* updates still match BPTT exactly in the limit
  (:math:`J = DM` and :math:`(DM)^t D = D(MD)^t`), the neural ones only up to the factor
  :math:`D = \sigma'(u)` per unit.

The loss is the squared error on the output layer (``cost="squared"``);
cross-entropy readouts sit outside the dynamics and are not covered.

:func:`gdu` returns an :class:`xarray.Dataset` with dims ``t``, ``layer``, ``quantity``
(``"neurons"``, ``"weights"``, ``"biases"``); :func:`plot_gdu` draws the paper's figure.
:data:`SETTINGS` holds the paper code's hyperparameters.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import xarray as xr

from eqprop import gradients as G

__all__ = ["QUANTITIES", "SETTINGS", "gdu", "plot_gdu"]

QUANTITIES = ("neurons", "weights", "biases")

#: Settings of Ernoult et al. (2019)'s code for the GDU figures (MNIST, random init).
SETTINGS: dict[str, dict[str, Any]] = {
    "prototypical": {
        "sizes": (784, 512, 10),
        "kind": "prototypical",
        "beta": 0.01,
        "T": 150,
        "K": 10,
    },
    "energy-based": {
        "sizes": (784, 512, 10),
        "kind": "hopfield",
        "eps": 0.08,
        "beta": 0.001,
        "T": 800,
        "K": 80,
    },
    "toy": {
        "sizes": (5, 50, 10),
        "kind": "hopfield",
        "activation": "tanh",
        "eps": 0.08,
        "beta": 0.01,
        "T": 5000,
        "K": 80,
    },
}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else math.nan


def gdu(
    net: Any,
    x: Any,
    d: Any,
    *,
    beta: float,
    T: int,
    K: int,
    eps: float = 0.5,
    nudge: str = "inside",
    dtype: Any = "float64",
    n_trace: int = 5,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    command: Any = None,
    continual_lr: float | None = None,
) -> xr.Dataset:
    r"""Compare EP's nudged-phase updates with BPTT's gradients step by step.

    Parameters
    ----------
    net : Network
        ``cost="squared"`` (the GDU theorem's setting).
    x, d : ndarray
        Batch (batch, sizes[0]) and targets (batch, sizes[-1]).
    beta : float
        Nudging strength (> 0) of ``F = E + beta C`` (hopfield) / ``-Phi + beta C``.
    T : int
        Free steps from zero (should reach the steady state).
    K : int
        Nudged steps and BPTT steps compared (``t = 0 .. K-1``).
    eps : float
        Euler step of the hopfield kind (``dt`` in the paper).
    nudge : {"inside", "outside"}
        Prototypical nudge convention.
    dtype
        Computation dtype (float64 by default: the EP side divides differences by beta).
    n_trace : int
        Number of randomly chosen units/synapses per layer and quantity whose two curves
        are stored (for :func:`plot_gdu`); neurons are traced in sample 0.
    seed : int
        Seed of that choice.
    continual_lr : float, optional
        Continual EP (Ernoult et al. 2020, :mod:`eqprop.rules.continual`): the nudged phase
        changes the parameters after every step, :math:`\theta_{t+1} = \theta_t - \eta
        g_t` with this learning rate :math:`\eta > 0` for every layer
        (:func:`eqprop.rules.continual.continual_phase`), and :math:`\Delta^{EP}_\theta(t)`
        is the normalised update :math:`(\theta_{t+1} - \theta_t)/\eta = -g_t`,
        :math:`\Delta^{EP}_s(t)` the step of that trajectory. BPTT stays at the initial
        parameters. The paper's Theorem 1: the two track each other as :math:`\eta` and
        :math:`\beta` go to 0. Default None: EP, parameters fixed during the phase.

    Returns
    -------
    xarray.Dataset
        Per ``(t, layer, quantity)``: ``rmse`` (root mean square of
        :math:`\Delta^{EP} + \nabla^{BPTT}`), ``rel_rmse`` (divided by the RMS of
        :math:`\nabla^{BPTT}`), ``cosine``, ``sign_agreement`` (fraction of the entries with
        :math:`\nabla^{BPTT} \ne 0` where :math:`\mathrm{sign}\,\Delta^{EP} =
        -\mathrm{sign}\,\nabla^{BPTT}`); per
        ``(t, layer, quantity, element)``: ``ep`` and ``bptt`` (the traced
        :math:`\Delta^{EP}` and :math:`-\nabla^{BPTT}`); per ``layer``:
        ``cum_rel_rmse`` (``t``, ``layer``, ``quantity``; weights and biases): the
        relative RMS of the accumulated updates :math:`\sum_{\tau \le t}\Delta^{EP}(\tau)`
        against :math:`-\sum_{\tau \le t}\nabla^{BPTT}(\tau)`; per ``layer``:
        ``final_cosine_bptt`` and ``final_cosine_rbp`` (cosine of the summed EP update
        with truncated BPTT over ``K`` steps and with recurrent backprop, weights and
        biases together); scalars ``free_residual`` (max :math:`|G(s_T) - s_T|`).
        Neuron entries are per sample and restricted to the active set at :math:`s^*`
        (``active_fraction`` per layer: units held at a bound, or prototypical units
        with :math:`\sigma'(u) = 0`, do not move in the nudged phase while BPTT's
        :math:`\partial\mathcal L/\partial s` of them is not zero; they carry no
        gradient); synapse entries are batch means.
    """
    beta = float(beta)
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be finite and > 0, got {beta!r}")
    if net.cost != "squared":
        raise ValueError(
            "gdu needs cost='squared' (the readout of cross-entropy is outside the dynamics)"
        )
    T, K = int(T), int(K)
    if T < 1 or not 1 <= K <= T:
        raise ValueError(f"need T >= 1 and 1 <= K <= T, got T={T}, K={K}")
    from eqprop.network import check_input, check_target, contrast_gradient

    net = G.as_dtype(net, dtype)
    x = check_input(net, x)
    d = check_target(net, d, x.shape[0])
    B = x.shape[0]
    model = G.StepModel(net, eps=eps)

    # free phase: T steps from zero, keep the last K + 1 states (memory independent of T)
    step0 = G.make_step(net, x, eps=eps)
    tail = [net.zero_state(B)]
    for _ in range(T):
        tail.append(step0(tail[-1]))
        if len(tail) > K + 1:
            tail.pop(0)
    traj = np.stack(tail)
    s_star = traj[-1]
    free_res = float(np.max(np.abs(step0(s_star) - s_star)))

    # BPTT over the last K steps: lambda_{T-t} and per-step parameter contributions
    lams, grads = G._bptt_backward(model, x, d, traj, K, per_step=True)

    # active set at s*: units neither held at a bound nor outside sigma's linear range
    active = model.coefficients(x, s_star)[2] != 0
    off = model.offsets
    act_frac = np.full(len(net.weights), math.nan)
    for l in range(model.n_state_layers):
        act_frac[l] = float(np.mean(active[:, off[l] : off[l + 1]]))

    # EP: nudged phase from s*, K steps (continual EP: with an update after each)
    cont_updates = None
    if continual_lr is None:
        stepb = G.make_step(net, x, beta=beta, d=d, eps=eps, nudge=nudge)
        nud = [s_star]
        for _ in range(K):
            nud.append(stepb(nud[-1]))
    else:
        from eqprop.optim import SGD
        from eqprop.phases import Dynamics
        from eqprop.rules.continual import continual_phase

        lr = float(continual_lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"continual_lr must be finite and > 0, got {continual_lr!r}")
        dyn_c = Dynamics(T=T, K=K, eps=eps, nudge=nudge, method="fixed")
        run = continual_phase(
            net.copy(), x, d, dyn_c, beta, s_star, K, SGD([lr] * len(net.weights)).step
        )
        nud, cont_updates = run.states, run.updates
    bt = eps * beta if net.kind == "hopfield" else beta
    signal = bt * float(np.max(np.abs(lams[0])))  # size of the first nudged step
    if not free_res <= 0.01 * signal:
        warnings.warn(
            f"the free phase has not reached its steady state (max |G(s_T) - s_T| = "
            f"{free_res:.3g}, more than 1% of the first nudged step {signal:.3g}): the EP "
            "updates then mix the free drift with the nudge. Raise T (the dataset records "
            "free_residual).",
            RuntimeWarning,
            stacklevel=2,
        )

    L = len(net.weights)
    nS = model.n_state_layers
    shape = (K, L, len(QUANTITIES))
    rmse = np.full(shape, np.nan)
    rel = np.full(shape, np.nan)
    cos = np.full(shape, np.nan)
    sgn = np.full(shape, np.nan)
    rng = np.random.default_rng(seed)
    picks: dict[tuple[int, int], np.ndarray] = {}
    sizes_q = {
        0: [model.state_sizes[l] if l < nS else 0 for l in range(L)],
        1: [net.weights[l].size for l in range(L)],
        2: [net.biases[l].size for l in range(L)],
    }
    for q in range(3):
        for l in range(L):
            n = sizes_q[q][l]
            picks[(l, q)] = (
                np.sort(rng.choice(n, size=min(n_trace, n), replace=False))
                if n
                else np.zeros(0, dtype=np.int64)
            )
    ep_tr = np.full((*shape, n_trace), np.nan)
    bp_tr = np.full((*shape, n_trace), np.nan)
    sum_ep = [np.zeros(net.weights[l].size + net.biases[l].size) for l in range(L)]
    sum_bp = [np.zeros_like(v) for v in sum_ep]
    cum = np.full(shape, np.nan)

    for t in range(K):
        ds = (nud[t + 1] - nud[t]) / bt
        lam = lams[t]
        gW, gb = grads[t]
        if cont_updates is None:
            dth = contrast_gradient(
                net, x, d, [nud[t + 1], nud[t]], [0.0, 0.0], [-1.0 / beta, 1.0 / beta]
            )
        else:  # the applied update, normalised: (theta_{t+1} - theta_t) / lr = -g_t
            g_t = cont_updates[t]
            dth = type(g_t)([-w for w in g_t.dW], [-b for b in g_t.db])
        for l in range(L):
            pairs = []
            if l < nS:
                o0, o1 = model.offsets[l], model.offsets[l + 1]
                pairs.append((0, ds[:, o0:o1], -lam[:, o0:o1]))
            pairs.append((1, np.asarray(dth.dW[l]), -gW[l] / B))
            pairs.append((2, np.asarray(dth.db[l]), -gb[l] / B))
            for q, ep, bp in pairs:
                ep = np.asarray(ep, dtype=np.float64)
                bp = np.asarray(bp, dtype=np.float64)
                idx = picks[(l, q)]
                src_ep = ep[0] if q == 0 else ep.ravel()
                src_bp = bp[0] if q == 0 else bp.ravel()
                ep_tr[t, l, q, : idx.size] = src_ep[idx]
                bp_tr[t, l, q, : idx.size] = src_bp[idx]
                if q == 0:  # neurons: the active set only (clipped units carry no gradient)
                    m = active[:, o0:o1]
                    ep, bp = ep[m], bp[m]
                    if ep.size == 0:
                        continue
                diff = ep - bp
                rmse[t, l, q] = float(np.sqrt(np.mean(diff**2)))
                rms = float(np.sqrt(np.mean(bp**2)))
                rel[t, l, q] = rmse[t, l, q] / rms if rms > 0 else math.nan
                cos[t, l, q] = _cos(ep.ravel(), bp.ravel())
                nz = bp != 0  # BPTT exactly zero (not yet reached): no sign to agree with
                sgn[t, l, q] = (
                    float(np.mean(np.sign(ep[nz]) == np.sign(bp[nz]))) if nz.any() else math.nan
                )
            sum_ep[l] += np.concatenate([np.ravel(dth.dW[l]), np.ravel(dth.db[l])])
            sum_bp[l] += np.concatenate([np.ravel(-gW[l] / B), np.ravel(-gb[l] / B)])
            nW = net.weights[l].size
            for q, part in ((1, slice(0, nW)), (2, slice(nW, None))):
                rms_bp = float(np.sqrt(np.mean(sum_bp[l][part] ** 2)))
                err = float(np.sqrt(np.mean((sum_ep[l][part] - sum_bp[l][part]) ** 2)))
                cum[t, l, q] = err / rms_bp if rms_bp > 0 else math.nan

    # final updates versus recurrent backprop at s*
    rbp = G.recurrent_backprop(net, x, d, s_star=s_star, eps=eps, check_fixed_point=None)
    fin_bptt = np.array([_cos(sum_ep[l], sum_bp[l]) for l in range(L)])
    fin_rbp = np.array(
        [
            _cos(sum_ep[l], -np.concatenate([np.ravel(rbp.dW[l]), np.ravel(rbp.db[l])]))
            for l in range(L)
        ]
    )

    cfg = {
        "sizes": list(net.sizes),
        "kind": net.kind,
        "activation": net.activation,
        "cost": net.cost,
        "beta": beta,
        "T": T,
        "K": K,
        "eps": eps,
        "nudge": nudge,
        "dtype": str(net.dtype),
        "batch": B,
        "n_trace": n_trace,
        "seed": seed,
        "continual_lr": continual_lr,
    }
    if config:
        cfg.update(config)
    dims = ("t", "layer", "quantity")
    tdims = (*dims, "element")

    def v(dims_, data, long_name, units="1"):
        return xr.Variable(dims_, data, attrs={"long_name": long_name, "units": units})

    idx_arr = np.full((L, 3, n_trace), -1, dtype=np.int64)
    for (l, q), idx in picks.items():
        idx_arr[l, q, : idx.size] = idx
    try:
        from eqprop.provenance import dataset_attrs

        attrs = dataset_attrs(
            "GDU: EP nudged-phase updates versus BPTT gradients", cfg, command=command
        )
    except ImportError:  # pragma: no cover
        attrs = {"title": "GDU"}
    ds_out = xr.Dataset(
        {
            "rmse": v(dims, rmse, "RMS of EP update + BPTT gradient"),
            "rel_rmse": v(dims, rel, "RMS of EP update + BPTT gradient over RMS of BPTT"),
            "cosine": v(dims, cos, "cosine of EP update and minus BPTT gradient"),
            "sign_agreement": v(
                dims,
                sgn,
                "fraction of entries whose EP update and minus BPTT gradient have the same sign",
            ),
            "cum_rel_rmse": v(
                dims,
                cum,
                "RMS of accumulated EP updates + accumulated BPTT gradients over RMS of the "
                "latter (weights, biases)",
            ),
            "ep": v(tdims, ep_tr, "EP update Delta^EP(t) of traced entries"),
            "bptt": v(tdims, bp_tr, "minus BPTT gradient -nabla^BPTT(t) of traced entries"),
            "trace_index": v(
                ("layer", "quantity", "element"),
                idx_arr,
                "flat index of the traced entry (-1: none)",
            ),
            "final_cosine_bptt": v(
                ("layer",),
                fin_bptt,
                "cosine of summed EP update and minus truncated BPTT gradient (K steps)",
            ),
            "final_cosine_rbp": v(
                ("layer",),
                fin_rbp,
                "cosine of summed EP update and minus recurrent-backprop gradient",
            ),
            "free_residual": v((), free_res, "max |G(s_T) - s_T| at the end of the free phase"),
            "active_fraction": v(
                ("layer",),
                act_frac,
                "fraction of the units of layer l on the active set at the free steady state",
            ),
        },
        coords={
            "t": v(("t",), np.arange(K), "step of the nudged phase / steps before T in BPTT"),
            "layer": v(
                ("layer",),
                [f"W{l}" for l in range(1, L + 1)],
                "layer l (neurons s_l, weights W_l, biases b_l)",
            ),
            "quantity": v(("quantity",), list(QUANTITIES), "updated quantity"),
            "element": v(("element",), np.arange(n_trace), "traced entry"),
        },
        attrs=attrs,
    )
    return ds_out


def plot_gdu(ds: xr.Dataset, quantity: str = "weights", ax: Any = None):
    """EP (solid) and BPTT (dashed) curves of the traced entries over ``t``, per layer.

    Like Fig. 2-3 of Ernoult et al. (2019). Returns the matplotlib figure (matplotlib is
    imported here, not at module import).
    """
    import matplotlib.pyplot as plt

    layers = list(ds.layer.values)
    if ax is None:
        fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 3), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(ax)
        fig = axes[0].figure
    t = ds.t.values
    for a, layer in zip(axes, layers):
        ep = ds.ep.sel(layer=layer, quantity=quantity).values
        bp = ds.bptt.sel(layer=layer, quantity=quantity).values
        for e in range(ep.shape[1]):
            if np.all(np.isnan(ep[:, e])):
                continue
            (line,) = a.plot(t, ep[:, e], "-", lw=1.5)
            a.plot(t, bp[:, e], "--", lw=1.5, color=line.get_color())
        a.set_title(f"{quantity} {layer}")
        a.set_xlabel("t")
    axes[0].set_ylabel(r"$\Delta^{EP}$ (solid), $-\nabla^{BPTT}$ (dashed)")
    fig.tight_layout()
    return fig
