"""Recurrent backprop on a graph network, with the non-symmetric Jacobian of untied feedback.

The exact gradient of the loss :math:`\\mathcal L = \\overline{C(s^*)}` (batch mean) at a
free fixed point :math:`s^* = G(s^*)` of the map of :mod:`eqprop.graph.reference`
(Almeida 1987; Pineda 1987): solve the adjoint system per sample

.. math:: (I - J^\\top)\\,\\lambda = \\partial C/\\partial s(s^*), \\qquad
          \\nabla_\\theta\\mathcal L = \\overline{\\lambda^\\top \\partial G/\\partial\\theta
          + \\partial C/\\partial\\theta}.

Write :math:`a = \\rho(s)` (hopfield) or :math:`s` (prototypical), :math:`q = da/ds`, and
:math:`M` the ``(n_state, n_state)`` matrix with :math:`\\partial u_j/\\partial a_i =
M_{ij}`: block ``[src, dst]`` is :math:`W_c`, block ``[dst, src]`` is the feedback
matrix (:math:`W_c^\\top`, :math:`\\gamma W_c^\\top` or :math:`B_c`), so :math:`M` is
symmetric only when every coupling is tied. Then

.. math:: J = \\mathrm{diag}(c) + \\mathrm{diag}(r)\\, M^\\top \\mathrm{diag}(q)

with, on the active set (units whose unprojected update lies strictly inside their box;
the others have a zero row), hopfield :math:`c = 1 - \\epsilon + \\epsilon\\rho''(s) u`,
:math:`r = \\epsilon\\rho'(s)`; prototypical :math:`c = 0`, :math:`r = \\sigma'(u)`. With
:math:`\\mu = r\\odot\\lambda`, a coupling gets :math:`a_{src}^\\top\\mu_{dst}` (forward) plus
:math:`\\mu_{src}^\\top a_{dst}` (tied), :math:`\\gamma\\mu_{src}^\\top a_{dst}` (scaled), or
its ``B`` gets :math:`a_{dst}^\\top\\mu_{src}` (free; random ``B`` is fixed); a bias gets
:math:`\\mu_l`; a readout's parameters get the direct :math:`\\partial C/\\partial\\theta`.
Dense per-sample Jacobians: small networks only (O(batch n^3)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqprop.graph import reference as R
from eqprop.graph.model import GraphNetwork, layer_activation

__all__ = [
    "RBPResult",
    "coupling_matrices",
    "coupling_matrix",
    "free_equilibrium",
    "jacobian",
    "loss",
    "recurrent_backprop",
]


def coupling_matrix(net: GraphNetwork) -> np.ndarray:
    """:math:`M` (n_state, n_state): :math:`\\partial u_j/\\partial a_i`, couplings between
    state layers only (module docstring)."""
    n, off = net.n_state, net.offsets
    M = np.zeros((n, n), dtype=net.dtype)
    for c in net.couplings:
        if c.source not in off or c.target not in off:
            continue
        if c.type != "dense":
            raise ValueError(
                f"coupling {c.name!r}: a {c.type!r} coupling's matrix may depend on the state "
                "(max pooling); use coupling_matrices(net, activities)"
            )
        si, di = slice(*off[c.source]), slice(*off[c.target])
        M[si, di] += c.W
        if c.feedback == "tied":
            M[di, si] += c.W.T
        elif c.feedback == "scaled":
            M[di, si] += c.gamma * c.W.T
        else:
            M[di, si] += c.B
    return M


def _local_matrix(c, a_src: np.ndarray) -> np.ndarray:
    """Per-sample matrix (batch, n_src, n_dst) of a non-dense coupling's forward map
    linearised at ``a_src`` (probed with the identity: ``row i = f(e_i)`` with the max-pool
    routing of ``a_src``). Small layers only."""
    m = R.coupling_module(c)
    n_src = a_src.shape[1]
    eye = np.eye(n_src, dtype=a_src.dtype)
    return np.stack([m.forward_drive(c, eye, at=np.repeat(a[None], n_src, 0)) for a in a_src])


def coupling_matrices(net: GraphNetwork, acts: dict[str, np.ndarray]) -> np.ndarray:
    """Per-sample :math:`M` (batch, n_state, n_state) at the activities ``acts``
    (:func:`eqprop.graph.reference.activities`): :func:`coupling_matrix` for dense
    couplings plus, for a ``conv2d`` coupling, the matrix of its map linearised at the
    source activity (with max pooling the argmax routing, hence M, depends on the state;
    the routing's own derivative is zero almost everywhere). Small networks only."""
    off = net.offsets
    batch = next(iter(acts.values())).shape[0]
    M = np.zeros((batch, net.n_state, net.n_state), dtype=net.dtype)
    for c in net.couplings:
        if c.source not in off or c.target not in off:
            continue
        si, di = slice(*off[c.source]), slice(*off[c.target])
        if c.type == "dense":
            M[:, si, di] += c.W
            if c.feedback == "tied":
                M[:, di, si] += c.W.T
            elif c.feedback == "scaled":
                M[:, di, si] += c.gamma * c.W.T
            else:
                M[:, di, si] += c.B
            continue
        F = _local_matrix(c, acts[c.source])
        M[:, si, di] += F
        M[:, di, si] += (c.gamma if c.feedback == "scaled" else 1.0) * np.swapaxes(F, 1, 2)
    return M


def _jacobian(net: GraphNetwork, c, r, q, acts) -> np.ndarray:
    if all(cp.type == "dense" for cp in net.couplings):
        J = r[:, :, None] * coupling_matrix(net).T[None, :, :] * q[:, None, :]
    else:
        J = r[:, :, None] * np.swapaxes(coupling_matrices(net, acts), 1, 2) * q[:, None, :]
    idx = np.arange(net.n_state)
    J[:, idx, idx] += c
    return J


def _columns(net: GraphNetwork, s: np.ndarray, which: int) -> np.ndarray:
    """Per column: the layer activation's derivative of order ``which`` (1 or 2) at ``s``."""
    out = np.empty_like(s)
    for name, (a, b) in net.offsets.items():
        out[:, a:b] = layer_activation(net.layer(name).activation)[which](s[:, a:b])
    return out


def _active(net: GraphNetwork, z: np.ndarray) -> np.ndarray:
    """1 where the unprojected update ``z`` lies strictly inside its layer's box (or the
    layer has none), else 0."""
    P = np.ones_like(z)
    for name, (a, b) in net.offsets.items():
        box = net.layer(name).box
        if box is not None:
            P[:, a:b] = ((z[:, a:b] > box[0]) & (z[:, a:b] < box[1])).astype(z.dtype)
    return P


def _coefficients(net: GraphNetwork, x, s, eps):
    acts = R.activities(net, x, s)
    u = R._stack(net, R.drives(net, acts), s)
    if net.kind == "hopfield":
        d1 = _columns(net, s, 1)
        P = _active(net, s - eps * (s - d1 * u))
        c = P * (1.0 - eps + eps * _columns(net, s, 2) * u)
        r = P * eps * d1
        q = d1
    else:
        P = _active(net, _apply_activation(net, u))
        c = np.zeros_like(s)
        r = P * _columns(net, u, 1)
        q = np.ones_like(s)
    return c, r, q, acts


def _apply_activation(net, u):
    out = np.empty_like(u)
    for name, (a, b) in net.offsets.items():
        out[:, a:b] = layer_activation(net.layer(name).activation)[0](u[:, a:b])
    return out


def jacobian(net: GraphNetwork, x, s, *, eps: float = 0.5) -> np.ndarray:
    """Per-sample :math:`J = \\partial G/\\partial s` at ``s`` (free map), (batch, n, n)."""
    x, s, _ = R._inputs(net, x, s)
    c, r, q, acts = _coefficients(net, x, s, eps)
    return _jacobian(net, c, r, q, acts)


def loss(net: GraphNetwork, x, s, d) -> float:
    """Batch-mean cost :math:`\\overline{C(s)}`."""
    return float(np.mean(R.cost(net, x, s, d)))


def free_equilibrium(
    net: GraphNetwork,
    x,
    *,
    eps: float = 0.5,
    s0=None,
    atol: float = 1e-13,
    max_iter: int = 100000,
) -> np.ndarray:
    """The free fixed point by plain Picard iteration of the reference map (NumPy; a check
    route independent of the Numba kernels). Raises if it does not reach ``atol``."""
    x = R._batch(net, x, net.n_in, "x", None)
    s = net.zero_state(x.shape[0]) if s0 is None else np.array(s0, dtype=net.dtype)
    for _ in range(max_iter):
        g = R.fixed_point_map(net, x, s, eps=eps)
        res = float(np.max(np.abs(g - s)))
        s = g
        if res <= atol:
            return s
    raise ValueError(
        f"free_equilibrium: no fixed point to atol={atol:g} in {max_iter} iterations "
        f"(last update {res:.3g}); the dynamics may not contract"
    )


@dataclass(eq=False)
class RBPResult:
    """Recurrent-backprop gradient by parameter name (batch mean), with diagnostics."""

    grads: dict[str, np.ndarray]
    loss: float
    info: dict[str, Any] = field(default_factory=dict)


def recurrent_backprop(
    net: GraphNetwork,
    x,
    d,
    s_star,
    *,
    eps: float = 0.5,
    check_fixed_point: float | None = 1e-8,
) -> RBPResult:
    """Exact :math:`\\nabla_\\theta\\overline{C(s^*)}` at the free fixed point ``s_star``.

    Parameters
    ----------
    net : GraphNetwork
        Any feedback mode (the Jacobian is not symmetric for untied ones).
    x, d : ndarray
        Input (batch, n_in) and targets (batch, n_out).
    s_star : ndarray (batch, n_state)
        Fixed point of the free map (:func:`free_equilibrium`).
    eps : float
        Hopfield Euler step of the map (sets ``c``, ``r`` and the active set; the gradient
        does not depend on it at an interior fixed point).
    check_fixed_point : float or None
        Raise when :math:`\\max|G(s^*) - s^*|` exceeds it (the gradient would not be exact).

    Returns
    -------
    RBPResult
        ``grads`` keyed like :meth:`GraphNetwork.parameters`; ``info`` has
        ``fixed_point_residual`` and ``adjoint_residual``.
    """
    x, s, d = R._inputs(net, x, s_star, d)
    B = x.shape[0]
    fp = float(np.max(np.abs(R.fixed_point_map(net, x, s, eps=eps) - s)))
    if check_fixed_point is not None and not fp <= check_fixed_point:
        raise ValueError(
            f"s_star is not a fixed point (max |G(s) - s| = {fp:.3g} > {check_fixed_point:g}); "
            "relax the free phase further"
        )
    c, r, q, acts = _coefficients(net, x, s, eps)
    J = _jacobian(net, c, r, q, acts)
    g = R._cost_state_gradient(net, acts, s, d)
    A = np.eye(net.n_state, dtype=net.dtype)[None] - np.swapaxes(J, 1, 2)
    lam = np.linalg.solve(A, g[:, :, None])[:, :, 0]
    adj = float(np.max(np.abs(np.einsum("bij,bi->bj", J, lam) + g - lam)))
    mu = net.split(r * lam)
    off = net.offsets
    out_layer = net.output_layer
    grads: dict[str, np.ndarray] = {}
    err = None
    if out_layer.role == "readout":
        err = R._softmax(R.readout_logits(net, acts)) - d
    for cpl in net.couplings:
        a_src = acts[cpl.source]
        if cpl.target == out_layer.name and err is not None:
            grads[f"{cpl.name}.W"] = a_src.T @ err / B
            continue
        if cpl.type != "dense":
            # lambda^T dG/dW = mu_dst . df_W(a_src)/dW + gamma mu_src . d[Df_W(a_src)^T
            # a_dst]/dW; f is linear in W (and in a_src at fixed routing), so both terms
            # are the module's weight gradient (-batch x) of a pair of activities, the
            # second with the max-pool routing of a_src
            m = R.coupling_module(cpl)
            gW = -B * m.weight_gradient(cpl, a_src, mu[cpl.target])
            if cpl.source in off:
                gain = cpl.gamma if cpl.feedback == "scaled" else 1.0
                back = m.weight_gradient(cpl, mu[cpl.source], acts[cpl.target], at=a_src)
                gW = gW - gain * B * back
            grads[f"{cpl.name}.W"] = gW / B
            continue
        gW = a_src.T @ mu[cpl.target]
        if cpl.source in off:
            back = mu[cpl.source].T @ acts[cpl.target]
            if cpl.feedback == "tied":
                gW = gW + back
            elif cpl.feedback == "scaled":
                gW = gW + cpl.gamma * back
            elif cpl.feedback == "free":
                grads[f"{cpl.name}.B"] = back.T / B
        grads[f"{cpl.name}.W"] = gW / B
    for layer in net.layers:
        if layer.bias is None:
            continue
        if layer.role == "readout":
            assert err is not None
            grads[f"{layer.name}.b"] = err.mean(axis=0)
        else:
            grads[f"{layer.name}.b"] = layer.bias_gradient(mu[layer.name].sum(axis=0) / B)
    info = {"fixed_point_residual": fp, "adjoint_residual": adj, "lambda": lam}
    return RBPResult(grads, loss(net, x, s, d), info)
