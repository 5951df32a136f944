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
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from eqprop import gradients as G
from eqprop._cli_options import (
    Parser,
    UsageError,
    error_line,
    float_list,
    name_list,
    nonnegative_int,
    positive_float,
    positive_int,
    sizes,
)
from eqprop.network import ACTIVATIONS, Network

__all__ = ["REFERENCES", "compare", "compare_main", "layer_metrics"]

REFERENCES = ("rbp", "bptt", "finite-difference")
ESTIMATORS = ("one-sided", "random-sign", "symmetric")


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
    out: dict[str, list[float]] = {
        k: [] for k in ("cosine", "rel_error", "sign_agreement", "norm", "ref_norm")
    }
    for l, (w, b, rw, rb) in enumerate(zip(g.dW, g.db, ref.dW, ref.db), start=1):
        if np.shape(w) != np.shape(rw) or np.shape(b) != np.shape(rb):
            raise ValueError(
                f"layer {l}: shapes {np.shape(w)}/{np.shape(b)} and {np.shape(rw)}/"
                f"{np.shape(rb)} differ; compare gradients of the same network"
            )
        a = np.concatenate([np.ravel(w), np.ravel(b)]).astype(np.float64)
        r = np.concatenate([np.ravel(rw), np.ravel(rb)]).astype(np.float64)
        na, nr = float(np.linalg.norm(a)), float(np.linalg.norm(r))
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = float(a @ r) / (na * nr) if na > 0 and nr > 0 else math.nan
            rel = (
                float(np.linalg.norm(a - r)) / nr if nr > 0 else (math.nan if na == 0 else math.inf)
            )
        out["cosine"].append(cos)
        out["rel_error"].append(rel)
        out["sign_agreement"].append(float(np.mean(np.sign(a) == np.sign(r))))
        out["norm"].append(na)
        out["ref_norm"].append(nr)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _var(dims, data, long_name, units, **attrs):
    return xr.Variable(dims, data, attrs={"long_name": long_name, "units": units, **attrs})


def _attrs(title: str, config: dict[str, Any], command: Any) -> dict[str, Any]:
    try:
        from eqprop.provenance import dataset_attrs
    except ImportError:  # pragma: no cover - provenance is part of the package
        return {"title": title}
    return dataset_attrs(title, config, command=command)


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
    config: dict[str, Any] | None = None,
    command: Any = None,
) -> xr.Dataset:
    """EP estimates against reference gradients, per layer.

    Parameters
    ----------
    net : Network
    x : ndarray (batch, sizes[0])
    d : ndarray (batch, sizes[-1])
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
    config, command
        Recorded in the provenance attributes (``config`` is completed with the settings).

    Returns
    -------
    xarray.Dataset
        Variables ``cosine``, ``rel_error``, ``sign_agreement`` (layer, estimator, beta,
        reference), ``ep_norm`` (layer, estimator, beta), ``ref_norm`` (layer,
        reference), ``free_converged`` and ``free_residual`` (sample), ``loss``; attrs
        ``free_phase_converged`` (1/0) and provenance.
    """
    if not isinstance(net, Network):
        raise TypeError(
            f"compare takes a layered eqprop.network.Network, got {type(net).__name__}; for "
            "a graph network (untied feedback, skips, linear output) compare a rule's "
            "estimate with eqprop.graph.backprop.recurrent_backprop, or use "
            "eqprop.rules.RecurrentBackprop, which accepts graph networks"
        )
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
    from eqprop.network import check_input, check_target
    from eqprop.phases import Dynamics, free_phase

    x = check_input(net, x)
    d = check_target(net, d, x.shape[0])
    if not isinstance(dyn, Dynamics):
        raise ValueError(f"dyn must be an eqprop.Dynamics, got {type(dyn).__name__}")
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

    refs: dict[str, Any] = {}
    for r in references:
        if r == "rbp":
            refs[r] = G.recurrent_backprop(
                net,
                x,
                d,
                s_star=free.state,
                dyn=dyn,
                method=rbp_method,
                dtype=dtype,
                check_fixed_point=None,
            )
        elif r == "bptt":
            refs[r] = G.bptt(net, x, d, dyn=dyn, dtype=dtype)
        else:
            refs[r] = G.finite_difference(net, x, d, dyn=dyn, h=fd_step, dtype=dtype)

    est = G.ep_estimates(net, x, d, dyn, betas, estimators, seed=seed)
    L = len(net.weights)
    shape4 = (L, len(estimators), len(betas), len(references))
    cos = np.full(shape4, np.nan)
    rel = np.full(shape4, np.nan)
    sgn = np.full(shape4, np.nan)
    epn = np.full(shape4[:3], np.nan)
    refn = np.full((L, len(references)), np.nan)
    for i, e in enumerate(estimators):
        for j, b in enumerate(betas):
            step = est[(e, b)]
            g = step.gradient
            for k, r in enumerate(references):
                m = layer_metrics(g, refs[r])
                cos[:, i, j, k] = m["cosine"]
                rel[:, i, j, k] = m["rel_error"]
                sgn[:, i, j, k] = m["sign_agreement"]
                epn[:, i, j] = m["norm"]
                refn[:, k] = m["ref_norm"]

    cfg = {
        "sizes": list(net.sizes),
        "kind": net.kind,
        "activation": net.activation,
        "cost": net.cost,
        "net_dtype": str(net.dtype),
        "reference_dtype": str(np.dtype(dtype)),
        "betas": betas,
        "estimators": list(estimators),
        "references": list(references),
        "seed": int(seed),
        "batch": int(x.shape[0]),
        "rbp_method": rbp_method,
        "dynamics": _dyn_config(dyn),
    }
    if config:
        cfg.update(config)
    dims4 = ("layer", "estimator", "beta", "reference")
    ds = xr.Dataset(
        {
            "cosine": _var(dims4, cos, "cosine similarity of EP estimate and reference", "1"),
            "rel_error": _var(dims4, rel, "relative error ||g_EP - g_ref|| / ||g_ref||", "1"),
            "sign_agreement": _var(
                dims4, sgn, "fraction of parameters whose EP and reference signs agree", "1"
            ),
            "ep_norm": _var(dims4[:3], epn, "norm of the EP estimate (W_l and b_l)", "1"),
            "ref_norm": _var(("layer", "reference"), refn, "norm of the reference", "1"),
            "free_converged": _var(("sample",), conv, "free phase met its tolerance", "1"),
            "free_residual": _var(
                ("sample",), fres, "last fixed-point residual of the free phase", "1"
            ),
            "loss": _var(
                (),
                float(refs[references[0]].loss) if references else np.nan,
                "batch-mean loss at the free state",
                "1",
            ),
        },
        coords={
            "layer": _var(
                ("layer",),
                [f"W{l}" for l in range(1, L + 1)],
                "weight layer (W_l and b_l together)",
                "1",
            ),
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
        "-o", "--output", default=None, help="write the dataset to this .nc file (default: none)"
    )
    return p


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
        from eqprop.network import init_network
        from eqprop.phases import Dynamics

        net = init_network(
            a.sizes,
            kind=a.kind,
            activation=a.activation,
            cost=a.cost,
            dtype=a.dtype,
            seed=a.seed,
            gain=a.gain,
        )
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
                config={
                    "command": "eqprop compare",
                    "data": "uniform random x, one-hot d",
                    "data_seed": a.seed + 1,
                    "gain": a.gain,
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
    print(
        f"{'layer':>6} {'estimator':>12} {'beta':>9} {'reference':>18} "
        f"{'cosine':>9} {'rel_err':>10} {'sign':>6}"
    )
    for layer in ds.layer.values:
        for e in ds.estimator.values:
            for b in ds.beta.values:
                for r in ds.reference.values:
                    sel = {"layer": layer, "estimator": e, "beta": b, "reference": r}
                    print(
                        f"{layer!s:>6} {e!s:>12} {b:9.2e} {r!s:>18} "
                        f"{float(ds.cosine.sel(sel)):9.6f} "
                        f"{float(ds.rel_error.sel(sel)):10.3e} "
                        f"{float(ds.sign_agreement.sel(sel)):6.3f}"
                    )
