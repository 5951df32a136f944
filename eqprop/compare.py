r"""Compare Equilibrium Propagation estimates with reference gradients, layer by layer.

:func:`compare` runs, for one network and one batch, every EP estimator at every
``beta`` (via :mod:`eqprop.rules`) and every reference (:mod:`eqprop.gradients`) and
returns an :class:`xarray.Dataset` with dims ``layer``, ``estimator``, ``beta``,
``reference`` holding, for layer :math:`l` (the entries of :math:`W_l` and :math:`b_l`
together),

* ``cosine``: :math:`\langle g_{EP}, g_{ref}\rangle / (\|g_{EP}\|\,\|g_{ref}\|)`;
* ``rel_error``: :math:`\|g_{EP} - g_{ref}\| / \|g_{ref}\|`;
* ``sign_agreement``: fraction of entries with :math:`\mathrm{sign}(g_{EP}) =
  \mathrm{sign}(g_{ref})`.

A free phase that did not converge is recorded (``free_converged`` per sample, attr
``free_phase_converged``) and a :class:`RuntimeWarning` is emitted: the references and EP
then describe different points and the numbers should not be trusted.

:func:`compare_main` is the ``eqprop compare`` command.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from eqprop import gradients as G
from eqprop._cli_options import (
    Parser,
    UsageError,
    error_line,
    finite_float,
    float_list,
    name_list,
    nonnegative_int,
    positive_float,
    positive_int,
    sizes,
)
from eqprop.graph.model import ACTIVATIONS as GRAPH_ACTIVATIONS
from eqprop.graph.model import FEEDBACK_MODES, GraphNetwork
from eqprop.network import ACTIVATIONS, Network

__all__ = [
    "GROUPINGS",
    "REFERENCES",
    "chain_named",
    "compare",
    "compare_main",
    "graph_as_dtype",
    "graph_groups",
    "group_metrics",
    "layer_metrics",
]

REFERENCES = ("rbp", "bptt", "finite-difference")
ESTIMATORS = ("one-sided", "random-sign", "symmetric")


def _metrics(a: np.ndarray, r: np.ndarray) -> tuple[float, float, float, float, float]:
    """cosine, rel_error, sign_agreement, norm, ref_norm of two flat float64 vectors."""
    na, nr = float(np.linalg.norm(a)), float(np.linalg.norm(r))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = float(a @ r) / (na * nr) if na > 0 and nr > 0 else math.nan
        rel = float(np.linalg.norm(a - r)) / nr if nr > 0 else (math.nan if na == 0 else math.inf)
    return cos, rel, float(np.mean(np.sign(a) == np.sign(r))), na, nr


def group_metrics(
    g: Mapping[str, Any], ref: Mapping[str, Any], groups: Sequence[tuple[str, Sequence[str]]]
) -> dict[str, np.ndarray]:
    """Per-group cosine, relative error and sign agreement of two gradients by name.

    Parameters
    ----------
    g, ref : mapping of str to ndarray
        Gradients by parameter name (``ref`` is the reference); every name of ``groups``
        must be in both, with equal shapes.
    groups : sequence of (label, names)
        The entries of the arrays ``names`` are taken together (flattened, in order).

    Returns
    -------
    dict of ndarray (n_groups,)
        ``cosine``, ``rel_error``, ``sign_agreement``, ``norm``, ``ref_norm`` (float64),
        as :func:`layer_metrics`.
    """
    out: dict[str, list[float]] = {k: [] for k in _METRICS}
    for label, names in groups:
        parts_a, parts_r = [], []
        for name in names:
            if name not in g or name not in ref:
                raise ValueError(
                    f"group {label!r}: parameter {name!r} is missing from "
                    f"{'the estimate' if name not in g else 'the reference'}; compare "
                    "gradients of the same network"
                )
            if np.shape(g[name]) != np.shape(ref[name]):
                raise ValueError(
                    f"parameter {name!r}: shapes {np.shape(g[name])} and "
                    f"{np.shape(ref[name])} differ; compare gradients of the same network"
                )
            parts_a.append(np.ravel(g[name]))
            parts_r.append(np.ravel(ref[name]))
        a = np.concatenate(parts_a).astype(np.float64)
        r = np.concatenate(parts_r).astype(np.float64)
        for k, v in zip(_METRICS, _metrics(a, r), strict=True):
            out[k].append(v)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


_METRICS = ("cosine", "rel_error", "sign_agreement", "norm", "ref_norm")


def chain_named(grad: Any) -> dict[str, np.ndarray]:
    """A chain gradient (``dW``, ``db`` lists) by name: ``W1 .. WL`` then ``b1 .. bL``."""
    out = {f"W{l}": w for l, w in enumerate(grad.dW, start=1)}
    out.update({f"b{l}": b for l, b in enumerate(grad.db, start=1)})
    return out


def layer_metrics(g: Any, ref: Any) -> dict[str, np.ndarray]:
    """Per-layer cosine, relative error and sign agreement of two gradient-like objects.

    Parameters
    ----------
    g, ref
        Objects with ``dW`` and ``db`` lists of equal shapes (``ref`` is the reference).

    Returns
    -------
    dict of ndarray (L,)
        ``cosine``, ``rel_error``, ``sign_agreement``, ``norm``, ``ref_norm`` (float64).
        A zero reference gives ``rel_error = inf`` (``nan`` when both are zero) and a
        ``nan`` cosine.
    """
    if len(g.dW) != len(ref.dW) or len(g.db) != len(ref.db):
        raise ValueError(
            f"gradients have {len(g.dW)} and {len(ref.dW)} layers; compare gradients of "
            "the same network"
        )
    return group_metrics(chain_named(g), chain_named(ref), _chain_groups(len(g.dW), "layer"))


#: Values of ``compare(by=...)``.
GROUPINGS = ("layer", "parameter")


def _chain_groups(L: int, by: str) -> list[tuple[str, list[str]]]:
    if by == "layer":
        return [(f"W{l}", [f"W{l}", f"b{l}"]) for l in range(1, L + 1)]
    return [
        (n, [n]) for n in [*(f"W{l}" for l in range(1, L + 1)), *(f"b{l}" for l in range(1, L + 1))]
    ]


def graph_groups(net: GraphNetwork, by: str = "parameter") -> list[tuple[str, list[str]]]:
    """Parameter groups of a graph network for :func:`compare`.

    ``by="parameter"``: one group per name of :meth:`GraphNetwork.parameters` (a
    coupling's ``W``, a free feedback's ``B``, a layer's ``b``), in that order.
    ``by="layer"``: one group per layer that parameters drive, labelled by the layer's
    name, in layer order: the ``W`` (and free ``B``) of every coupling into it and its
    bias. On a chain (:func:`eqprop.graph.build.from_network`) the group of layer ``l``
    is the chain's ``W_l`` with ``b_l``.
    """
    names = list(net.parameters())
    if by == "parameter":
        return [(n, [n]) for n in names]
    out = []
    for layer in net.layers:
        into = {f"{c.name}.W" for c in net.couplings if c.target == layer.name}
        into |= {f"{c.name}.B" for c in net.couplings if c.target == layer.name}
        into.add(f"{layer.name}.b")
        group = [n for n in names if n in into]
        if group:
            out.append((layer.name, group))
    return out


def _var(dims, data, long_name, units, **attrs):
    return xr.Variable(dims, data, attrs={"long_name": long_name, "units": units, **attrs})


def _attrs(title: str, config: dict[str, Any], command: Any) -> dict[str, Any]:
    try:
        from eqprop.provenance import dataset_attrs
    except ImportError:  # pragma: no cover - provenance is part of the package
        return {"title": title}
    return dataset_attrs(title, config, command=command)


def _check_request(betas, estimators, references, by, net) -> tuple[list[float], str]:
    betas = [float(b) for b in betas]
    for b in betas:
        if not (math.isfinite(b) and b > 0):
            raise ValueError(f"every beta must be finite and > 0, got {b!r}")
    if not betas:
        raise ValueError("give at least one beta")
    for e in estimators:
        if e not in ESTIMATORS:
            raise ValueError(f"unknown estimator {e!r}; choose from {ESTIMATORS}")
    for r in references:
        if r not in REFERENCES:
            raise ValueError(f"unknown reference {r!r}; choose from {REFERENCES}")
    if by is None:
        by = "parameter" if isinstance(net, GraphNetwork) else "layer"
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping by={by!r}; choose one of {', '.join(GROUPINGS)}")
    return betas, by


def _chain_references(net, x, d, dyn, s_free, references, dtype, rbp_method, fd_step):
    """``{reference: (gradient by name, loss)}`` of a layered network (eqprop.gradients)."""
    refs: dict[str, tuple[dict[str, np.ndarray], float]] = {}
    for r in references:
        if r == "rbp":
            g = G.recurrent_backprop(
                net,
                x,
                d,
                s_star=s_free,
                dyn=dyn,
                method=rbp_method,
                dtype=dtype,
                check_fixed_point=None,
            )
        elif r == "bptt":
            g = G.bptt(net, x, d, dyn=dyn, dtype=dtype)
        else:
            g = G.finite_difference(net, x, d, dyn=dyn, h=fd_step, dtype=dtype)
        refs[r] = (chain_named(g), float(g.loss))
    return refs


def graph_as_dtype(net: GraphNetwork, dtype: Any) -> GraphNetwork:
    """``net`` itself, or a copy with its parameters cast to ``dtype``."""
    if dtype is None or np.dtype(dtype) == net.dtype:
        return net
    c = net.copy()
    return GraphNetwork(c.layers, c.couplings, c.kind, c.cost, np.dtype(dtype))


def _graph_references(net, x, d, dyn, s_free, references, dtype, rbp_method, fd_step):
    """``{reference: (gradient by name, loss)}`` of a graph network
    (:mod:`eqprop.graph.backprop`, in ``dtype``)."""
    from eqprop.graph import backprop as BP

    work = graph_as_dtype(net, dtype)
    refs: dict[str, tuple[dict[str, np.ndarray], float]] = {}
    for r in references:
        if r == "rbp":
            res = BP.recurrent_backprop(
                work,
                x,
                d,
                np.asarray(s_free, dtype=work.dtype),
                eps=dyn.eps,
                check_fixed_point=None,
            )
        else:
            a = G.iteration_damping(dyn, None, f"compare(references=[{r!r}])")
            if r == "bptt":
                res = BP.bptt(work, x, d, dyn.T, eps=dyn.eps, damping=a)
            else:
                res = BP.finite_difference(work, x, d, dyn.T, eps=dyn.eps, damping=a, h=fd_step)
        refs[r] = (res.grads, float(res.loss))
    return refs


def compare(
    net: Any,
    x: Any,
    d: Any,
    dyn: Any,
    *,
    betas: Sequence[float] = (0.001, 0.01, 0.1),
    estimators: Sequence[str] = ESTIMATORS,
    references: Sequence[str] = ("rbp", "bptt"),
    seed: int = 0,
    dtype: Any = "float64",
    rbp_method: str = "dense",
    fd_step: float = 1e-6,
    by: str | None = None,
    config: dict[str, Any] | None = None,
    command: Any = None,
) -> xr.Dataset:
    """EP estimates against reference gradients, per layer or per parameter.

    Parameters
    ----------
    net : Network or GraphNetwork
        A layered chain (:func:`eqprop.init_network`) or a graph network of any feedback
        mode (tied, scaled, free, random), with skip couplings and any output activation
        (:mod:`eqprop.graph`); real dtypes (a complex network is refused: holomorphic EP
        is compared by :mod:`eqprop.graph.holomorphic`). On a graph network the
        references are those of :mod:`eqprop.graph.backprop` (non-symmetric Jacobian
        for untied feedback) and EP's estimate is vector-field EP's local contrast, which
        is the gradient only for tied feedback (docs/gradients.rst).
    x : ndarray (batch, n_in)
    d : ndarray (batch, n_out)
    dyn : Dynamics
        Dynamics of every phase. The references follow it: ``"rbp"`` solves the adjoint at
        the free phase's state (any method), ``"bptt"`` and ``"finite-difference"``
        follow the ``dyn.T`` steps of the damped iteration
        :math:`s \\leftarrow \\Pi((1 - a) s + a G(s))` (``eps``, ``damping``); a ``dyn``
        they cannot follow (another method, tolerance mode, ``record_energy``) raises
        ``ValueError`` naming the field before anything runs
        (:func:`eqprop.gradients.iteration_damping`).
    betas : sequence of float
        Nudging strengths, each finite and > 0 (ValueError otherwise).
    estimators : sequence of {"one-sided", "random-sign", "symmetric"}
    references : sequence of {"rbp", "bptt", "finite-difference"}
        ``"rbp"``: recurrent backprop at the free phase's state; ``"bptt"``: through the
        ``T`` free steps from zero; ``"finite-difference"``: central differences of the
        loss after ``T`` steps (2 free phases per parameter: small networks only).
    seed : int
        Seed of the random-sign estimator's generator.
    dtype
        Dtype of the reference computations (float64 by default; EP runs in the
        network's dtype).
    rbp_method : {"dense", "iterative"}
        ``"iterative"``: layered networks only (a graph network's adjoint is dense).
    fd_step : float
        Step ``h`` of the finite differences.
    by : {"layer", "parameter"} or None
        What one entry of the ``layer`` dim holds. ``"layer"``: every parameter that
        drives one layer (a chain's :math:`W_l` with :math:`b_l`, labelled ``"W1"``,
        ``"W2"``, ...; on a graph network the couplings into a layer and its bias,
        labelled by the layer's name, :func:`graph_groups`). ``"parameter"``: each array
        alone (a chain's ``"W1"``, ..., ``"b1"``, ...; a graph's names of
        :meth:`~eqprop.graph.GraphNetwork.parameters`, e.g. ``"h1->y.W"``,
        ``"h1->y.B"``, ``"y.b"``). None (default): ``"layer"`` for a chain,
        ``"parameter"`` for a graph network.
    config, command
        Recorded in the provenance attributes (``config`` is completed with the settings).

    Returns
    -------
    xarray.Dataset
        Variables ``cosine``, ``rel_error``, ``sign_agreement`` (layer, estimator, beta,
        reference), ``ep_norm`` (layer, estimator, beta), ``ref_norm`` (layer,
        reference), ``free_converged`` and ``free_residual`` (sample), ``loss``; attrs
        ``free_phase_converged`` (1/0) and provenance (``config["groups"]`` lists the
        parameter names of each ``layer`` entry).

    Raises
    ------
    TypeError
        ``net`` is neither a :class:`~eqprop.network.Network` nor a
        :class:`~eqprop.graph.GraphNetwork`.
    ValueError
        Bad betas, estimators, references, grouping, shapes, a complex graph network, or
        ``rbp_method="iterative"`` on a graph network (one line naming it).
    """
    is_graph = isinstance(net, GraphNetwork)
    if not (is_graph or isinstance(net, Network)):
        raise TypeError(
            "compare takes an eqprop.network.Network or an eqprop.graph.GraphNetwork, got "
            f"{type(net).__name__}"
        )
    betas, by = _check_request(betas, estimators, references, by, net)
    from eqprop.phases import Dynamics, free_phase

    if not isinstance(dyn, Dynamics):
        raise ValueError(f"dyn must be an eqprop.Dynamics, got {type(dyn).__name__}")
    if is_graph:
        from eqprop.graph import reference as GR

        if net.dtype.kind == "c":
            raise ValueError(
                f"compare compares real gradients; this graph network is {net.dtype.name} "
                "(holomorphic EP: eqprop.graph.holomorphic, rule 'holomorphic')"
            )
        if rbp_method != "dense":
            raise ValueError(
                f"rbp_method={rbp_method!r}: a graph network's recurrent backprop solves the "
                "adjoint densely; use rbp_method='dense'"
            )
        x = GR._batch(net, x, net.n_in, "x", None)
        d = GR._batch(net, d, net.n_out, "d", x.shape[0])
    else:
        from eqprop.network import check_input, check_target

        x = check_input(net, x)
        d = check_target(net, d, x.shape[0])
    if rbp_method not in ("dense", "iterative"):
        raise ValueError(f"rbp_method must be 'dense' or 'iterative', got {rbp_method!r}")
    for r in references:
        if r in ("bptt", "finite-difference"):
            G.iteration_damping(dyn, None, f"compare(references=[{r!r}])")

    free = free_phase(net, x, dyn)
    res = free.result
    conv = np.asarray(res.converged, dtype=bool) if res is not None else np.ones(len(x), bool)
    fres = res.final_residual if res is not None else np.zeros(len(x), dtype=np.float64)
    all_conv = bool(np.all(conv))
    if not all_conv:
        warnings.warn(
            f"the free phase did not converge for {int(np.sum(~conv))} of {len(conv)} "
            f"samples (max residual {np.nanmax(fres):.3g}); EP and the references then "
            "describe different states. Raise T / max_iter or lower eps. The dataset "
            "records it (free_converged, attr free_phase_converged=0).",
            RuntimeWarning,
            stacklevel=2,
        )

    run_refs = _graph_references if is_graph else _chain_references
    refs = run_refs(net, x, d, dyn, free.state, references, dtype, rbp_method, fd_step)
    groups = graph_groups(net, by) if is_graph else _chain_groups(len(net.weights), by)

    est = G.ep_estimates(net, x, d, dyn, betas, estimators, seed=seed)
    L = len(groups)
    shape4 = (L, len(estimators), len(betas), len(references))
    cos = np.full(shape4, np.nan)
    rel = np.full(shape4, np.nan)
    sgn = np.full(shape4, np.nan)
    epn = np.full(shape4[:3], np.nan)
    refn = np.full((L, len(references)), np.nan)
    for i, e in enumerate(estimators):
        for j, b in enumerate(betas):
            g = est[(e, b)].gradient
            named = dict(g) if is_graph else chain_named(g)
            for k, r in enumerate(references):
                m = group_metrics(named, refs[r][0], groups)
                cos[:, i, j, k] = m["cosine"]
                rel[:, i, j, k] = m["rel_error"]
                sgn[:, i, j, k] = m["sign_agreement"]
                epn[:, i, j] = m["norm"]
                refn[:, k] = m["ref_norm"]

    if is_graph:
        from eqprop.train import graph_description

        cfg: dict[str, Any] = {"network": graph_description(net)}
    else:
        cfg = {
            "sizes": list(net.sizes),
            "kind": net.kind,
            "activation": net.activation,
            "cost": net.cost,
        }
    cfg.update(
        {
            "net_dtype": str(net.dtype),
            "reference_dtype": str(np.dtype(dtype)),
            "betas": betas,
            "estimators": list(estimators),
            "references": list(references),
            "seed": int(seed),
            "batch": int(x.shape[0]),
            "rbp_method": rbp_method,
            "by": by,
            "groups": {label: list(names) for label, names in groups},
            "dynamics": _dyn_config(dyn),
        }
    )
    if config:
        cfg.update(config)
    dims4 = ("layer", "estimator", "beta", "reference")
    if by == "layer" and not is_graph:
        group_name = "weight layer (W_l and b_l together)"
    elif by == "layer":
        group_name = "layer driven (the couplings into it and its bias together)"
    else:
        group_name = "parameter array"
    ds = xr.Dataset(
        {
            "cosine": _var(dims4, cos, "cosine similarity of EP estimate and reference", "1"),
            "rel_error": _var(dims4, rel, "relative error ||g_EP - g_ref|| / ||g_ref||", "1"),
            "sign_agreement": _var(
                dims4, sgn, "fraction of parameters whose EP and reference signs agree", "1"
            ),
            "ep_norm": _var(dims4[:3], epn, "norm of the EP estimate over the group", "1"),
            "ref_norm": _var(("layer", "reference"), refn, "norm of the reference", "1"),
            "free_converged": _var(("sample",), conv, "free phase met its tolerance", "1"),
            "free_residual": _var(
                ("sample",), fres, "last fixed-point residual of the free phase", "1"
            ),
            "loss": _var(
                (),
                refs[references[0]][1] if references else np.nan,
                "batch-mean loss at the free state",
                "1",
            ),
        },
        coords={
            "layer": _var(("layer",), [label for label, _ in groups], group_name, "1"),
            "estimator": _var(("estimator",), list(estimators), "EP estimator", "1"),
            "beta": _var(("beta",), np.asarray(betas), "nudging strength", "1"),
            "reference": _var(("reference",), list(references), "reference gradient", "1"),
            "sample": _var(("sample",), np.arange(x.shape[0]), "index within the batch", "1"),
        },
        attrs=_attrs("EP gradient estimates versus reference gradients", cfg, command),
    )
    ds.attrs["free_phase_converged"] = int(all_conv)
    return ds


def _dyn_config(dyn: Any) -> dict[str, Any]:
    keys = ("T", "K", "eps", "method", "damping", "nudge", "fixed_steps", "atol", "max_iter")
    out = {k: getattr(dyn, k) for k in keys if getattr(dyn, k, None) is not None}
    if not isinstance(out.get("method", ""), str):
        out["method"] = repr(out["method"])  # a solvers method object
    return out


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="eqprop compare",
        description="Compare EP gradient estimates with recurrent backprop, BPTT and finite "
        "differences on a random batch; writes an xarray dataset (netCDF).",
    )
    p.add_argument("--sizes", type=sizes, default=[20, 30, 10], help="layer sizes, input first")
    p.add_argument(
        "--kind", default="hopfield", choices=["hopfield", "prototypical"], help="network kind"
    )
    p.add_argument("--activation", default="sigmoid", choices=list(ACTIVATIONS), help="activation")
    p.add_argument(
        "--cost", default="squared", choices=["squared", "cross-entropy"], help="output cost"
    )
    p.add_argument(
        "--betas",
        type=float_list,
        default=[1e-3, 1e-2, 1e-1],
        help="comma-separated nudging strengths > 0",
    )
    p.add_argument(
        "--estimators",
        type=name_list,
        default=list(ESTIMATORS),
        help="comma-separated EP estimators",
    )
    p.add_argument(
        "--references",
        type=name_list,
        default=["rbp", "bptt"],
        help="comma-separated subset of rbp,bptt,finite-difference",
    )
    p.add_argument("-T", "--T", type=positive_int, default=200, help="free-phase steps")
    p.add_argument(
        "-K", "--K", type=positive_int, default=None, help="nudged-phase steps (default: T)"
    )
    p.add_argument(
        "--eps", type=positive_float, default=0.5, help="Euler step of the hopfield kind"
    )
    p.add_argument("--gain", type=positive_float, default=1.0, help="Glorot gain of the weights")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="weights seed (data: seed + 1)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="samples in the batch")
    p.add_argument(
        "--dtype", default="float64", choices=["float32", "float64"], help="floating type"
    )
    p.add_argument(
        "--rbp-method",
        default="dense",
        choices=["dense", "iterative"],
        help="recurrent backprop: dense linear solve or iterated adjoint",
    )
    p.add_argument(
        "--output-activation",
        dest="output_activation",
        default=None,
        choices=list(GRAPH_ACTIVATIONS),
        help="activation of the output layer (identity: a linear output); a graph network "
        "(default: None, the --activation)",
    )
    p.add_argument(
        "--feedback",
        default="tied",
        choices=list(FEEDBACK_MODES),
        help="feedback of the couplings between state layers: tied, scaled (gamma W^T), "
        "free (learned B) or random (fixed B, feedback alignment); other than tied: a "
        "graph network",
    )
    p.add_argument(
        "--feedback-scale",
        dest="feedback_scale",
        type=finite_float,
        default=1.0,
        help="gamma of --feedback scaled",
    )
    p.add_argument(
        "--skip",
        default=None,
        help="skip couplings 'i-j' between layer indices (0 = input), comma-separated, "
        "e.g. 0-2,1-3; a graph network (default: None, no skips)",
    )
    p.add_argument(
        "--by",
        default=None,
        choices=list(GROUPINGS),
        help="one row per layer (W_l with b_l; a graph: the couplings into the layer and "
        "its bias) or per parameter array (default: None, layer for a chain, parameter for "
        "a graph network)",
    )
    p.add_argument(
        "-o", "--output", default=None, help="write the dataset to this .nc file (default: none)"
    )
    return p


def _network(a: argparse.Namespace) -> Any:
    """The chain of the options, or its graph network when a network option asks for one
    (:func:`eqprop.graph.build.extend_chain`, skips and random feedback drawn from
    ``seed``, as ``eqprop train`` builds them)."""
    from eqprop.network import init_network

    net = init_network(
        a.sizes,
        kind=a.kind,
        activation=a.activation,
        cost=a.cost,
        dtype=a.dtype,
        seed=a.seed,
        gain=a.gain,
    )
    graph = (
        a.output_activation is not None
        or a.feedback != "tied"
        or a.feedback_scale != 1.0
        or bool(a.skip)
    )
    if not graph:
        return net
    from eqprop.graph.build import extend_chain, from_network, parse_skip

    return extend_chain(
        from_network(net),
        output_activation=a.output_activation,
        feedback=a.feedback,
        gamma=a.feedback_scale,
        skip=parse_skip(a.skip, len(a.sizes)),
        seed=a.seed,
    )


def compare_main(argv: Sequence[str] | None = None) -> int:
    """``eqprop compare``: parse ``argv``, run :func:`compare`, print a table, write .nc.

    Returns the exit status: 0 on success, 2 on bad options, 1 when the free phase did not
    converge (the dataset is still written).
    """
    parser = _parser()
    try:
        a = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse exits on --help (0)
        return int(exc.code or 0)
    except UsageError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    try:
        from eqprop.phases import Dynamics

        net = _network(a)
        rng = np.random.default_rng(a.seed + 1)
        x = rng.uniform(0.0, 1.0, (a.batch_size, a.sizes[0])).astype(a.dtype)
        d = np.eye(a.sizes[-1], dtype=a.dtype)[rng.integers(0, a.sizes[-1], a.batch_size)]
        dyn = Dynamics(T=a.T, K=a.T if a.K is None else a.K, eps=a.eps, method="fixed")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = compare(
                net,
                x,
                d,
                dyn,
                betas=a.betas,
                estimators=a.estimators,
                references=a.references,
                seed=a.seed,
                rbp_method=a.rbp_method,
                by=a.by,
                config={
                    "command": "eqprop compare",
                    "data": "uniform random x, one-hot d",
                    "data_seed": a.seed + 1,
                    "gain": a.gain,
                    "network_options": {
                        "output_activation": a.output_activation,
                        "feedback": a.feedback,
                        "feedback_scale": a.feedback_scale,
                        "skip": a.skip,
                    },
                },
                command=["eqprop", "compare", *(argv or [])],
            )
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except ValueError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    _print_table(ds)
    if a.output:
        from eqprop.provenance import write_netcdf

        path = write_netcdf(ds, a.output)
        print(f"wrote {path}")
    return 0 if ds.attrs.get("free_phase_converged", 1) else 1


def _print_table(ds: xr.Dataset) -> None:
    w = max(6, *(len(str(v)) for v in ds.layer.values))
    print(
        f"{'layer':>{w}} {'estimator':>12} {'beta':>9} {'reference':>18} "
        f"{'cosine':>9} {'rel_err':>10} {'sign':>6}"
    )
    for layer in ds.layer.values:
        for e in ds.estimator.values:
            for b in ds.beta.values:
                for r in ds.reference.values:
                    sel = {"layer": layer, "estimator": e, "beta": b, "reference": r}
                    print(
                        f"{layer!s:>{w}} {e!s:>12} {b:9.2e} {r!s:>18} "
                        f"{float(ds.cosine.sel(sel)):9.6f} "
                        f"{float(ds.rel_error.sel(sel)):10.3e} "
                        f"{float(ds.sign_agreement.sel(sel)):6.3f}"
                    )
