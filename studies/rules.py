r"""Rule study: every learning rule's update against the exact gradient, per layer.

For each ``seed``, one network (``init_network(sizes, ..., seed=net_seed + seed)``) and one
batch (:func:`studies.beta.make_batch` with seed ``net_seed + seed + 7919``) are fixed. The
free phase runs to the tolerance ``atol`` and the exact gradient
:math:`g = \partial\mathcal L/\partial\theta` at its state is computed by recurrent
backprop (:func:`eqprop.gradients.recurrent_backprop`, dense adjoint, float64). Each rule
(:data:`RULES`) then gives its update :math:`\hat g` on the same network and batch as a
function of its own parameter, the grid ``strength``:

* ``ep-one-sided``, ``ep-random-sign``, ``ep-symmetric``: :math:`\beta` of
  :class:`eqprop.rules.EquilibriumPropagation` (the seed draws the random sign);
* ``coupled-positive``, ``coupled-negative``, ``coupled-centered``: :math:`\eta` of
  :class:`eqprop.rules.CoupledLearning`;
* ``recirculation``: the regression :math:`\lambda` of
  :class:`eqprop.recirculation.RecirculationSettings`;
* ``chl-scaled``: the feedback gain :math:`\gamma` of
  :class:`eqprop.rules.ScaledFeedbackCHL` on the graph chain
  ``eqprop.graph.chain(sizes, feedback="scaled", gamma=strength)`` (same kind,
  activation, seed; its weights are drawn by the graph builder, so it is not the same
  network as the others);
* ``feedback-alignment``: :math:`\beta` of symmetric EP on the chain with fixed random
  feedback ``feedback="random"`` (the error reaches the hidden layers through random
  matrices, as in feedback alignment, Lillicrap et al. 2016), against the exact gradient of
  that network;
* ``coupled-limit``: the :math:`\eta \to 0` limit of coupled learning, computed directly
  from the clamped output's sensitivity at the free state
  (:func:`eqprop.rules.coupled_limit`: the output error preconditioned by the
  Schur complement of the hidden block, :math:`(dy^0/d\theta)^\top S\,(y^0 - d)`; in a
  box, the positive variant's limit), beside the exact gradient it is not;
* ``chl``, ``generec-basic``, ``generec-symmetric``, ``generec-midpoint``,
  ``coupled-limit``, ``rbp``, ``bptt``: none (parameter-free: the same value at every
  ``strength``).

The second phases of EP, CHL, GeneRec and coupled learning start from the free state and
run to the same tolerance. ``rbp`` is the reference itself (a check: cosine 1); ``bptt``
backpropagates through ``T_bptt`` fixed free steps from zero (:func:`eqprop.gradients.bptt`).

**Recirculation** (Hinton & McClelland 1988) runs on its own loop, visible group
``sizes[0]`` (the batch's inputs) and hidden group ``sizes[1]`` (weights from
:func:`eqprop.recirculation.init_loop`, seeded), logistic units; its reference is minus the
exact gradient of the squared reconstruction error through the loop's first pass,
:func:`eqprop.recirculation.reconstruction_gradient` (batch mean), and its update is
:func:`~eqprop.recirculation.recirculation_update` with learning rate 1 (batch mean), to be
*added* to the weights. Layer ``W1`` is its encoder (visible to hidden, with the hidden
bias), ``W2`` its decoder (hidden to visible, with the visible bias).

Per weight layer :math:`l` (the entries of :math:`W_l` and :math:`b_l` together), with
:math:`r` the reference (:math:`g`, or for recirculation the negative reconstruction
gradient):

* ``cosine`` (rule, strength, seed, layer): :math:`\hat g\cdot r / (\|\hat g\|\|r\|)`
  (NaN when either is zero);
* ``rel_error``: :math:`\|\hat g - r\| / \|r\|` (no rescaling: a rule that gets the
  direction right at another scale has a cosine near 1 and a large relative error);
* ``sign_agreement``: the fraction of the entries with :math:`r_i \neq 0` where
  :math:`\mathrm{sign}(\hat g_i) = \mathrm{sign}(r_i)`;
* ``ref_norm``: :math:`\|r\|`.

Dataset: dims ``rule``, ``strength``, ``seed``, ``layer``; attribute ``study="rules"``;
``ds.sel(rule="ep-symmetric", strength=0.01)`` selects by keyword.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from eqprop.provenance import variable

from .setup import BatchSetup, NetworkSetup, SolverSetup, int_tuple
from .sweep import sweep

__all__ = ["PARAMETER", "RULES", "RulesSetup", "rule_metrics", "rules_point", "rules_study"]

#: Rule names of the study -> the name of the rule's own parameter (None: none).
PARAMETER: dict[str, str | None] = {
    "ep-one-sided": "beta",
    "ep-random-sign": "beta",
    "ep-symmetric": "beta",
    "chl": None,
    "generec-basic": None,
    "generec-symmetric": None,
    "generec-midpoint": None,
    "coupled-positive": "eta",
    "coupled-negative": "eta",
    "coupled-centered": "eta",
    "coupled-limit": None,
    "rbp": None,
    "bptt": None,
    "recirculation": "lambda",
    "chl-scaled": "gamma",
    "feedback-alignment": "beta",
}

RULES = tuple(PARAMETER)

#: Default strengths: 1e-3 .. 0.9 (valid for beta, eta and lambda alike).
STRENGTHS = (1e-3, 1e-2, 0.1, 0.3, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class RulesSetup:
    """What every point of the rule study shares: network, batch, solver, seeds.

    Attributes
    ----------
    network : NetworkSetup
        Layer sizes (input, hidden..., output), kind and activation; the study's networks
        have the squared cost and float64 (others are refused).
    batch : BatchSetup
        The batch of each seed (:func:`studies.setup.make_batch`).
    solver : SolverSetup
        Every phase (tolerance mode; Picard, the only method the study runs).
    seeds : tuple of int
        Each seed is one network and batch (and the random sign of ``ep-random-sign``).
    net_seed : int
        Offset of the seeds: seed ``s`` draws the network from ``net_seed + s`` and the
        batch from ``net_seed + s + 7919``.
    T_bptt : int
        Free steps that ``bptt`` differentiates (fixed steps from zero).

    Raises
    ------
    ValueError
        Fewer than three layer sizes, another cost, dtype or solver method.
    """

    network: NetworkSetup = field(default_factory=NetworkSetup)
    batch: BatchSetup = field(default_factory=BatchSetup)
    solver: SolverSetup = field(default_factory=SolverSetup)
    seeds: tuple[int, ...] = (0, 1, 2)
    net_seed: int = 0
    T_bptt: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", int_tuple(self.seeds))
        object.__setattr__(self, "net_seed", int(self.net_seed))
        object.__setattr__(self, "T_bptt", int(self.T_bptt))
        sizes = self.network.sizes
        if len(sizes) < 3:
            raise ValueError(
                f"sizes {list(sizes)}: the rule study needs a hidden layer (input, hidden, output)"
            )
        fixed = {"cost": ("squared", self.network.cost), "dtype": ("float64", self.network.dtype)}
        fixed["method"] = ("picard", self.solver.method)
        for name, (only, given) in fixed.items():
            if given != only:
                raise ValueError(f"the rule study runs {name} {only!r} only, got {given!r}")


def _flat_layers(dW: Sequence[np.ndarray], db: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate([np.ravel(w), np.ravel(b)]).astype(np.float64) for w, b in zip(dW, db)]


def rule_metrics(est: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """``(cosine, rel_error, sign_agreement)`` of one layer's update against its reference
    (1-D float64 arrays of the same length; see the module docstring)."""
    ne, nr = float(np.linalg.norm(est)), float(np.linalg.norm(ref))
    cos = float(est @ ref / (ne * nr)) if ne > 0 and nr > 0 else np.nan
    rel = float(np.linalg.norm(est - ref) / nr) if nr > 0 else np.nan
    nz = ref != 0
    sign = float(np.mean(np.sign(est[nz]) == np.sign(ref[nz]))) if nz.any() else np.nan
    return cos, rel, sign


def _make_rule(rule: str, strength: float) -> Any:
    from eqprop import rules as R

    if rule.startswith("ep-"):
        return R.EquilibriumPropagation(beta=strength, estimator=rule[3:])
    if rule.startswith("coupled-"):
        return R.CoupledLearning(eta=strength, variant=rule[8:])
    if rule.startswith("generec-"):
        return R.GeneRec(form=rule[8:])
    return {"chl": R.ContrastiveHebbian, "rbp": R.RecurrentBackprop}[rule]()


def _recirculation_layers(x: np.ndarray, n_hidden: int, lam: float, seed: int):
    """(update layers, reference layers) of recirculation on a ``x.shape[1]``-``n_hidden``
    loop: W1 = encoder + hidden bias, W2 = decoder + visible bias; batch means."""
    from eqprop import recirculation as RC

    loop = RC.init_loop((x.shape[1], n_hidden), np.random.default_rng(seed))
    settings = RC.RecirculationSettings(learning_rate=1.0, regression=lam)
    upd = RC.recirculation_update(loop, RC.recirculate(loop, x, settings), settings, "mean")
    grad = RC.reconstruction_gradient(loop, x, settings, "mean")
    est = _flat_layers(upd.weights, upd.biases[::-1])
    ref = [-r for r in _flat_layers(grad.weights, grad.biases[::-1])]
    return est, ref


def _graph_layers(rule, strength, x, d, setup, seed):
    """(update layers, exact-gradient layers, free residual) of a rule on a graph chain with
    scaled (``chl-scaled``) or random (``feedback-alignment``) feedback; layer ``W_l`` is
    the coupling into chain layer ``l`` with that layer's bias."""
    from eqprop.graph import chain
    from eqprop.graph.backprop import recurrent_backprop
    from eqprop.graph.build import chain_layer_names
    from eqprop.phases import free_phase
    from eqprop.rules import EquilibriumPropagation, ScaledFeedbackCHL

    sizes, kind, activation = setup.network.sizes, setup.network.kind, setup.network.activation
    eps = setup.solver.eps
    if rule == "chl-scaled":
        net = chain(
            sizes, kind=kind, activation=activation, feedback="scaled", gamma=strength, seed=seed
        )
        rule_obj: Any = ScaledFeedbackCHL()
    else:
        net = chain(sizes, kind=kind, activation=activation, feedback="random", seed=seed)
        rule_obj = EquilibriumPropagation(beta=strength, estimator="symmetric")
    dyn = setup.solver.dynamics()
    free = free_phase(net, x, dyn)
    ref = recurrent_backprop(net, x, d, free.state, eps=eps, check_fixed_point=None).grads
    step = rule_obj.estimate(net, x, d, dyn, s0=free.state)
    names = chain_layer_names(len(sizes))
    pairs = [(f"{names[l - 1]}->{names[l]}.W", f"{names[l]}.b") for l in range(1, len(sizes))]
    est = [
        np.concatenate([np.ravel(step.gradient[w]), np.ravel(step.gradient[b])]) for w, b in pairs
    ]
    exact = [np.concatenate([np.ravel(ref[w]), np.ravel(ref[b])]) for w, b in pairs]
    return est, exact, float(np.max(free.result.final_residual))


def rules_point(rule: str, strength: float, setup: RulesSetup | None = None) -> xr.Dataset:
    """One rule at one ``strength``, every seed: the variables of the module docstring.

    Parameters
    ----------
    rule : str
        From :data:`RULES`.
    strength : float
        The rule's parameter (:data:`PARAMETER`).
    setup : RulesSetup, optional
        Network, batch, solver and seeds (default ``RulesSetup()``).

    Returns
    -------
    xarray.Dataset
        ``cosine``, ``rel_error``, ``sign_agreement``, ``ref_norm`` (seed, layer) and
        ``free_residual`` (seed): the largest residual of the free phase.
    """
    from eqprop import gradients as G
    from eqprop.phases import Dynamics, free_phase
    from eqprop.rules import BackpropThroughTime
    from eqprop.rules.coupled import coupled_limit

    if rule not in PARAMETER:
        raise ValueError(f"unknown rule {rule!r}; choose from {', '.join(RULES)}")
    setup = setup or RulesSetup()
    seeds, sizes, eps = setup.seeds, setup.network.sizes, setup.solver.eps
    L = len(sizes) - 1
    shape = (len(seeds), L)
    out = {k: np.full(shape, np.nan) for k in ("cosine", "rel_error", "sign_agreement", "ref")}
    fres = np.full(len(seeds), np.nan)
    for i, seed in enumerate(seeds):
        s = setup.net_seed + seed
        x, d = setup.batch.make(sizes, s + 7919, "float64")
        if rule in ("chl-scaled", "feedback-alignment"):
            est, ref, fres[i] = _graph_layers(rule, float(strength), x, d, setup, s)
        elif rule == "recirculation":
            est, ref = _recirculation_layers(x, sizes[1], float(strength), s)
            est, ref = est + [np.full(1, np.nan)] * (L - 2), ref + [np.zeros(1)] * (L - 2)
        else:
            net = setup.network.build(s)
            dyn = setup.solver.dynamics()
            free = free_phase(net, x, dyn)
            fres[i] = float(np.max(free.result.final_residual))
            r = G.recurrent_backprop(
                net, x, d, s_star=free.state, eps=eps, method="dense", check_fixed_point=None
            )
            ref = _flat_layers(r.dW, r.db)
            if rule == "bptt":
                unrolled = Dynamics(T=setup.T_bptt, eps=eps)
                g = BackpropThroughTime().estimate(net, x, d, unrolled).gradient
            elif rule == "coupled-limit":
                g = coupled_limit(net, x, d, free.state, eps=eps, check_fixed_point=None)
            else:
                g = (
                    _make_rule(rule, float(strength))
                    .estimate(net, x, d, dyn, rng=np.random.default_rng(s), s0=free.state)
                    .gradient
                )
            est = _flat_layers(g.dW, g.db)
        for l in range(min(L, len(est))):
            if rule == "recirculation" and l >= 2:
                continue
            c, e, g = rule_metrics(est[l], ref[l])
            out["cosine"][i, l], out["rel_error"][i, l], out["sign_agreement"][i, l] = c, e, g
            out["ref"][i, l] = np.linalg.norm(ref[l])
    dims = ("seed", "layer")
    return xr.Dataset(
        {
            "cosine": variable(
                dims, out["cosine"], "cosine of the rule's update and the exact gradient", "1"
            ),
            "rel_error": variable(
                dims, out["rel_error"], "relative error ||update - gradient|| / ||gradient||", "1"
            ),
            "sign_agreement": variable(
                dims,
                out["sign_agreement"],
                "fraction of the gradient's nonzero entries whose sign the update matches",
                "1",
            ),
            "ref_norm": variable(dims, out["ref"], "norm of the exact gradient of the layer", "1"),
            "free_residual": variable(
                "seed", fres, "largest final residual of the free phase (NaN: recirculation)", "1"
            ),
            "parameter": variable(
                (), PARAMETER[rule] or "none", "name of the rule's parameter set by strength", "1"
            ),
        },
        coords={
            "seed": variable("seed", np.array([int(v) for v in seeds]), "random seed", "1"),
            "layer": variable(
                "layer",
                [f"W{l}" for l in range(1, L + 1)],
                "weight layer (W_l and b_l together)",
                "1",
            ),
        },
    )


def rules_study(
    rules: Sequence[str] = RULES,
    strengths: Sequence[float] = STRENGTHS,
    setup: RulesSetup | None = None,
    **sweep_kwargs: Any,
) -> xr.Dataset:
    """Every rule's update against the exact gradient over its own parameter (module docstring).

    Parameters
    ----------
    rules : sequence of str
        From :data:`RULES`.
    strengths : sequence of float
        The rules' parameter grid, each in (0, 1) (beta, eta, lambda; see the table above).
    setup : RulesSetup, optional
        Network, batch, solver (tolerance mode, Picard), seeds and ``T_bptt``, the same at
        every point (default ``RulesSetup()``).
    **sweep_kwargs
        Passed to :func:`studies.sweep.sweep` (``out_dir``, ``path``, ``workers``, ...).

    Returns
    -------
    xarray.Dataset
        ``study="rules"``; dims rule, strength, seed, layer.

    Raises
    ------
    ValueError
        An unknown rule, a strength outside (0, 1), or ``recirculation`` with ``sizes``
        that give no hidden group (the setup itself refuses fewer than two layers of
        sizes, see :class:`RulesSetup`).
    """
    setup = setup or RulesSetup()
    for r in rules:
        if r not in PARAMETER:
            raise ValueError(f"unknown rule {r!r}; choose from {', '.join(RULES)}")
    for v in strengths:
        if not 0.0 < float(v) < 1.0:
            raise ValueError(
                f"every strength must be in (0, 1) (beta, eta in (0, 1] and the recirculation "
                f"regression lambda in [0, 1) share the grid), got {v}"
            )
    return sweep(
        rules_point,
        {"rule": list(rules), "strength": [float(v) for v in strengths]},
        fixed={"setup": setup},
        title="Each learning rule's update against the exact gradient (recurrent backprop)",
        study="rules",
        seeds=list(setup.seeds),
        config={"parameter": {r: PARAMETER[r] for r in rules}},
        **sweep_kwargs,
    )
