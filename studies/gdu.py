r"""GDU study: EP's nudged-phase updates versus BPTT, over beta and seeds.

Wraps :func:`eqprop.gdu.gdu` (Ernoult et al. 2019, "Updates of Equilibrium Prop Match
Gradients of Backprop Through Time in an RNN with Static Input"): for each ``beta`` and
``seed`` (network initialisation and batch), the first ``K`` steps of the nudged phase
are compared with BPTT's gradients step by step. Variables per point are those of
:func:`eqprop.gdu.gdu` (``rmse``, ``rel_rmse``, ``cosine``, ``sign_agreement`` over
``t``, ``layer``, ``quantity``; traced ``ep`` / ``bptt`` entries over ``element``;
``final_cosine_bptt`` / ``final_cosine_rbp`` per layer; ``free_residual``).

The GDU property predicts ``rel_rmse`` -> 0 (and ``cosine`` -> 1) as ``beta`` -> 0 once
the free phase has converged (``free_residual`` small). With ``continual_lr`` (``eqprop
study gdu --continual-lr LR``) the nudged phase is continual EP's (Ernoult et al. 2020,
"Equilibrium Propagation with Continual Weight Updates"): the parameters change after
every step, and the normalised updates track BPTT as long as ``LR / beta`` is small (the
extra error grows as ``LR / beta``; docs/studies.rst).

Dataset: dims ``beta``, ``seed``, ``t``, ``layer``, ``quantity``, ``element``;
attribute ``study="gdu"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

from .beta import make_batch
from .sweep import sweep

__all__ = ["gdu_point", "gdu_study"]


def gdu_point(
    beta: float,
    seed: int,
    *,
    sizes: Sequence[int] = (5, 50, 10),
    kind: str = "hopfield",
    activation: str = "tanh",
    eps: float = 0.08,
    T: int = 5000,
    K: int = 80,
    nudge: str = "inside",
    batch: int = 1,
    n_trace: int = 5,
    dtype: str = "float64",
    data: str | None = None,
    continual_lr: float | None = None,
) -> xr.Dataset:
    """One point: :func:`eqprop.gdu.gdu` on the network and batch of ``seed``
    (``continual_lr``: continual EP's learning rate, see :func:`eqprop.gdu.gdu`)."""
    from eqprop.gdu import gdu
    from eqprop.network import init_network

    net = init_network(
        tuple(int(n) for n in sizes),
        kind=kind,
        activation=activation,
        cost="squared",
        dtype=dtype,
        seed=int(seed),
    )
    x, d = make_batch(sizes, batch, int(seed) + 7919, data, net.dtype)
    ds = gdu(
        net,
        x,
        d,
        beta=float(beta),
        T=int(T),
        K=int(K),
        eps=float(eps),
        nudge=nudge,
        dtype=dtype,
        n_trace=int(n_trace),
        seed=int(seed),
        continual_lr=None if continual_lr is None else float(continual_lr),
    )
    return ds.drop_attrs(deep=False)


def gdu_study(
    betas: Sequence[float] = (1e-3, 1e-2, 1e-1),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    setting: str | None = "toy",
    **kwargs: Any,
) -> xr.Dataset:
    """GDU comparison over ``betas`` x ``seeds``.

    Parameters
    ----------
    betas, seeds : sequence
        Nudging strengths (> 0) and seeds of the network and batch.
    setting : str or None
        Start from :data:`eqprop.gdu.SETTINGS` (``"toy"``, ``"prototypical"``,
        ``"energy-based"``: the paper code's sizes, kind, eps, T, K); None: the defaults
        of :func:`gdu_point`.
    **kwargs
        Overrides of :func:`gdu_point`'s settings (``sizes``, ``kind``, ``activation``,
        ``eps``, ``T``, ``K``, ``nudge``, ``batch``, ``n_trace``, ``dtype``, ``data``,
        ``continual_lr``: continual EP, Ernoult et al. 2020);
        the rest go to :func:`studies.sweep.sweep` (``out_dir``, ``path``, ``workers``...).

    Returns
    -------
    xarray.Dataset
        ``study="gdu"``.
    """
    point_keys = {
        "sizes",
        "kind",
        "activation",
        "eps",
        "T",
        "K",
        "nudge",
        "batch",
        "n_trace",
        "dtype",
        "data",
        "continual_lr",
    }
    fixed: dict[str, Any] = {}
    if setting is not None:
        from eqprop.gdu import SETTINGS

        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; choose from {sorted(SETTINGS)}")
        fixed.update({k: v for k, v in SETTINGS[setting].items() if k in point_keys})
    fixed.update({k: v for k, v in kwargs.items() if k in point_keys})
    if "sizes" in fixed:
        fixed["sizes"] = [int(n) for n in fixed["sizes"]]
    sweep_kwargs = {k: v for k, v in kwargs.items() if k not in point_keys}
    for b in betas:
        if not float(b) > 0:
            raise ValueError(f"every beta must be > 0, got {b}")
    return sweep(
        gdu_point,
        {"beta": [float(b) for b in betas], "seed": [int(s) for s in seeds]},
        fixed=fixed,
        title=(
            "GDU: EP nudged-phase updates versus BPTT gradients, over beta and seeds"
            if fixed.get("continual_lr") is None
            else f"GDU: continual EP (learning rate {float(fixed['continual_lr']):g}) "
            "updates versus BPTT gradients, over beta and seeds"
        ),
        study="gdu",
        config={"setting": setting},
        seeds=[int(s) for s in seeds],
        **sweep_kwargs,
    )
