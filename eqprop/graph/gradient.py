"""Parameter gradients of a :class:`~eqprop.graph.model.GraphNetwork`, by parameter name.

:class:`GraphGradient` is what the learning rules (:mod:`eqprop.rules`) return for a
graph network: a read-only mapping from the names of
:meth:`GraphNetwork.parameters` (``"h1->y.W"``, ``"h1->y.B"`` for a free feedback,
``"y.b"``) to arrays of the parameters' shapes and dtype, estimates of
:math:`\\partial\\mathcal{L}/\\partial\\theta` averaged over the batch (SGD does
``p -= lr * g[name]``), in the order of ``parameters()``.

Each coupling's term comes from its type's module (:mod:`eqprop.graph.dense`,
:mod:`eqprop.graph.conv`): :func:`contrast` sums
:func:`eqprop.graph.reference.parameter_gradient` (itself a sum over the couplings'
``weight_gradient`` / ``feedback_gradient`` and the layers' bias terms) over the phases;
:func:`difference_gradient` (GeneRec) uses the same two functions on activity
differences, which is valid because they are bilinear in the two layers' activities.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eqprop.graph import reference as R
from eqprop.graph.build import chain_parameter_names
from eqprop.graph.model import GraphNetwork

__all__ = ["GraphGradient", "contrast", "difference_gradient", "from_chain_gradient"]


@dataclass(eq=False)
class GraphGradient(Mapping):
    """Gradient estimates of a graph network by parameter name (read-only mapping).

    Attributes
    ----------
    arrays : dict of str to ndarray
        One array per name of :meth:`GraphNetwork.parameters`, same shape and dtype, in
        that order. A ``random`` coupling's fixed ``B`` has none.
    """

    arrays: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise KeyError(
                f"no gradient for {name!r}; names are {', '.join(self.arrays)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def flat(self) -> np.ndarray:
        """All entries, one flat array, in the order of the names."""
        return np.concatenate([v.ravel() for v in self.arrays.values()])


def _ordered(net: GraphNetwork, grads: Mapping[str, np.ndarray]) -> GraphGradient:
    params = net.parameters()
    out = {}
    for name, p in params.items():
        out[name] = np.ascontiguousarray(grads[name], dtype=p.dtype).reshape(p.shape)
    return GraphGradient(out)


def contrast(
    net: GraphNetwork,
    x: np.ndarray,
    d: np.ndarray,
    states: Sequence[np.ndarray],
    betas: Sequence[float],
    coeffs: Sequence[float],
) -> GraphGradient:
    """:math:`\\sum_k c_k\\,\\partial F/\\partial\\theta(s_k, \\beta_k)`, batch mean, by name.

    The general path of every contrastive rule (EP: ``states=(s0, sb), betas=(0, b),
    coeffs=(-1/b, 1/b)``). With untied feedback there is no F; the terms are the local
    products :func:`eqprop.graph.reference.parameter_gradient` documents (vector-field
    EP). ``x`` (batch, n_in), ``d`` (batch, n_out), each state (batch, n_state).
    """
    if not (len(states) == len(betas) == len(coeffs)) or len(states) == 0:
        raise ValueError("states, betas and coeffs must be non-empty and of equal length")
    total: dict[str, np.ndarray] = {}
    for s, b, c in zip(states, betas, coeffs, strict=True):
        for name, g in R.parameter_gradient(net, x, s, d, float(b)).items():
            term = net.dtype.type(c) * g
            total[name] = term if name not in total else total[name] + term
    return _ordered(net, total)


def difference_gradient(
    net: GraphNetwork,
    x: np.ndarray,
    s_minus: np.ndarray,
    s_plus: np.ndarray,
    *,
    midpoint: bool = False,
    symmetric: bool = False,
) -> GraphGradient:
    """GeneRec's update (O'Reilly 1996) on a graph network, by name.

    For each coupling with presynaptic (source) activity :math:`a_i` and postsynaptic
    (target) activity :math:`a_j`: :math:`dW = G(\\tilde a_{src}, a^+_{dst} - a^-_{dst})`
    plus, when ``symmetric``, :math:`G(a^+_{src} - a^-_{src}, \\tilde a_{dst})`, with
    :math:`G` the coupling module's ``weight_gradient`` (:math:`-a_{src}^\\top
    a_{dst}/\\mathrm{batch}` for a dense coupling), :math:`\\tilde a = a^-` or the
    midpoint :math:`\\tfrac12(a^- + a^+)`. A free ``B`` (its presynaptic side is the
    target) gets the mirror terms from ``feedback_gradient``. Biases:
    :math:`-\\overline{a^+ - a^-}`. Needs the output in the state (no readout).
    """
    if net.output_layer.role == "readout":
        raise ValueError(
            f"layer {net.output_layer.name!r}: GeneRec clamps the output, which a readout "
            "keeps outside the state"
        )
    am = R.activities(net, x, s_minus)
    ap = R.activities(net, x, s_plus)
    grads: dict[str, np.ndarray] = {}
    for c in net.couplings:
        m = R.coupling_module(c)
        src_m, src_p = am[c.source], ap[c.source]
        dst_m, dst_p = am[c.target], ap[c.target]
        src_t = 0.5 * (src_m + src_p) if midpoint else src_m
        dst_t = 0.5 * (dst_m + dst_p) if midpoint else dst_m
        g = m.weight_gradient(c, src_t, dst_p - dst_m)
        if symmetric:
            g = g + m.weight_gradient(c, src_p - src_m, dst_t)
        grads[f"{c.name}.W"] = g
        if c.feedback == "free":
            gB = m.feedback_gradient(c, src_p - src_m, dst_t)
            if symmetric:
                gB = gB + m.feedback_gradient(c, src_t, dst_p - dst_m)
            grads[f"{c.name}.B"] = gB
    for layer in net.layers:
        if layer.bias is not None:
            diff = ap[layer.name] - am[layer.name]
            grads[f"{layer.name}.b"] = layer.bias_gradient(-diff.mean(axis=0))
    return _ordered(net, grads)


def from_chain_gradient(net: GraphNetwork, grad) -> GraphGradient:
    """A chain :class:`eqprop.network.Gradient` (``dW``, ``db`` lists) of
    :func:`eqprop.graph.build.to_network` ``(net)`` under ``net``'s parameter names."""
    w_names, b_names = chain_parameter_names(net)
    named = dict(zip(w_names, grad.dW, strict=True))
    named.update(zip(b_names, grad.db, strict=True))
    return _ordered(net, named)
