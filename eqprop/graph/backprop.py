"""Reference gradients of a graph network: recurrent backprop, BPTT, finite differences.

Every feedback mode: for untied feedback the adjoints use the non-symmetric Jacobian.
:func:`recurrent_backprop` is exact at a fixed point; :func:`bptt` differentiates the
``T`` (damped) free steps of :func:`free_trajectory`; :func:`finite_difference` checks
both (central differences of the loss after ``T`` steps).

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
Dense per-sample Jacobians: small networks only (O(batch n^3)). BPTT applies
:math:`J^\\top\\lambda = c\\odot\\lambda + q\\odot M(r\\odot\\lambda)` without forming
:math:`J` (dense couplings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqprop.graph import reference as R
from eqprop.graph.model import GraphNetwork, layer_activation

__all__ = [
    "RBPResult",
    "bptt",
    "coupling_matrices",
    "coupling_matrix",
    "finite_difference",
    "free_equilibrium",
    "free_trajectory",
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


def _local_feedback_matrix(c, a_src: np.ndarray, n_dst: int) -> np.ndarray:
    """Per-sample matrix (batch, n_dst, n_src) of a non-dense coupling's feedback map
    (``row j = fb(e_j)`` with the max-pool routing of ``a_src``); for tied feedback the
    transpose of :func:`_local_matrix`. Small layers only."""
    m = R.coupling_module(c)
    eye = np.eye(n_dst, dtype=a_src.dtype)
    return np.stack([m.feedback_drive(c, eye, np.repeat(a[None], n_dst, 0)) for a in a_src])


def coupling_matrices(net: GraphNetwork, acts: dict[str, np.ndarray]) -> np.ndarray:
    """Per-sample :math:`M` (batch, n_state, n_state) at the activities ``acts``
    (:func:`eqprop.graph.reference.activities`): :func:`coupling_matrix` for dense
    couplings plus, for a ``conv2d`` coupling, the matrix of its map linearised at the
    source activity (with max pooling the argmax routing, hence M, depends on the state;
    the routing's own derivative is zero almost everywhere): block ``[src, dst]`` its
    forward map, block ``[dst, src]`` its feedback map (the forward's transpose when tied,
    times :math:`\\gamma` when scaled, the transposed convolution with ``B`` when free or
    random, probed the same way). Small networks only."""
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
        if c.feedback in ("tied", "scaled"):
            M[:, di, si] += (c.gamma if c.feedback == "scaled" else 1.0) * np.swapaxes(F, 1, 2)
        else:
            M[:, di, si] += _local_feedback_matrix(c, acts[c.source], di.stop - di.start)
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


def _readout_error(net: GraphNetwork, acts, d) -> np.ndarray | None:
    """:math:`\\mathrm{softmax}(z) - d` of a readout (batch, n_out), or None."""
    if net.output_layer.role != "readout":
        return None
    return R._softmax(R.readout_logits(net, acts)) - d


def _parameter_vjp(net: GraphNetwork, acts, mu: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:math:`\\lambda^\\top\\partial G/\\partial\\theta` summed over the batch, by name,
    for the parameters the map reads (not a readout's), with :math:`\\mu = r\\odot\\lambda`
    split by layer (module docstring)."""
    off = net.offsets
    out_layer = net.output_layer
    B = next(iter(acts.values())).shape[0]
    grads: dict[str, np.ndarray] = {}
    for cpl in net.couplings:
        if cpl.target == out_layer.name and out_layer.role == "readout":
            continue
        a_src = acts[cpl.source]
        if cpl.type != "dense":
            # lambda^T dG/dW = mu_dst . df_W(a_src)/dW + gamma mu_src . d[Df_W(a_src)^T
            # a_dst]/dW; f is linear in W (and in a_src at fixed routing), so both terms
            # are the module's weight gradient (-batch x) of a pair of activities, the
            # second with the max-pool routing of a_src. Free / random feedback: the second
            # term belongs to the kernel B (the same formula: the feedback is linear in B),
            # learned (free) or fixed (random); W's routing has zero derivative a.e.
            m = R.coupling_module(cpl)
            gW = -B * m.weight_gradient(cpl, a_src, mu[cpl.target])
            if cpl.source in off:
                back = m.weight_gradient(cpl, mu[cpl.source], acts[cpl.target], at=a_src)
                if cpl.feedback in ("tied", "scaled"):
                    gain = cpl.gamma if cpl.feedback == "scaled" else 1.0
                    gW = gW - gain * B * back
                elif cpl.feedback == "free":
                    grads[f"{cpl.name}.B"] = -B * back
            grads[f"{cpl.name}.W"] = gW
            continue
        gW = a_src.T @ mu[cpl.target]
        if cpl.source in off:
            back = mu[cpl.source].T @ acts[cpl.target]
            if cpl.feedback == "tied":
                gW = gW + back
            elif cpl.feedback == "scaled":
                gW = gW + cpl.gamma * back
            elif cpl.feedback == "free":
                grads[f"{cpl.name}.B"] = back.T
        grads[f"{cpl.name}.W"] = gW
    for layer in net.layers:
        if layer.bias is not None and layer.role != "readout":
            grads[f"{layer.name}.b"] = layer.bias_gradient(mu[layer.name].sum(axis=0))
    return grads


def _readout_gradient(net: GraphNetwork, acts, d) -> dict[str, np.ndarray]:
    """The direct :math:`\\partial C/\\partial\\theta` of a readout's couplings and bias,
    summed over the batch (empty without a readout)."""
    err = _readout_error(net, acts, d)
    if err is None:
        return {}
    out_layer = net.output_layer
    grads = {
        f"{c.name}.W": acts[c.source].T @ err for c in net.couplings if c.target == out_layer.name
    }
    if out_layer.bias is not None:
        grads[f"{out_layer.name}.b"] = err.sum(axis=0)
    return grads


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
    grads = {k: v / B for k, v in _parameter_vjp(net, acts, net.split(r * lam)).items()}
    grads.update({k: v / B for k, v in _readout_gradient(net, acts, d).items()})
    info = {"fixed_point_residual": fp, "adjoint_residual": adj, "lambda": lam}
    return RBPResult(grads, loss(net, x, s, d), info)


# ----------------------------------------------------------------------------- BPTT and FD
def _check_steps(T, damping: float) -> tuple[int, float]:
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T < 0:
        raise ValueError(f"T must be an integer >= 0, got {T!r}")
    a = float(damping)
    if not (np.isfinite(a) and 0 < a < 2):
        raise ValueError(f"damping must be in (0, 2), got {damping!r}")
    return int(T), a


def _outer_box(net: GraphNetwork, a: float) -> tuple[float, float] | None:
    """The box of the outer projection of a damped step: the solvers' ``bounds`` (the box
    every state layer shares, :func:`eqprop.graph.kernels.common_box`), acting for
    ``a > 1`` only (for ``a <= 1`` the damped step of projected states stays inside)."""
    if a <= 1.0:
        return None
    boxes = {la.box for la in net.state_layers}
    return next(iter(boxes)) if len(boxes) == 1 else None


def free_trajectory(
    net: GraphNetwork, x, T: int, *, eps: float = 0.5, damping: float = 1.0, s0=None
) -> np.ndarray:
    """States of ``T`` free steps :math:`s_{t+1} = \\Pi_o((1 - a)\\,s_t + a\\,G(s_t))` from
    ``s0`` (default zeros), (T + 1, batch, n_state), in the network's dtype.

    :math:`G` is :func:`eqprop.graph.reference.fixed_point_map` (NumPy, per-layer
    projection), :math:`a` the damping, :math:`\\Pi_o` the clip to the box all state layers
    share, for :math:`a > 1` only (what the phases' ``solvers.Picard(damping)`` does; row
    0 is ``s0`` clipped to that box, as the solvers project the initial state). Row
    ``T`` equals :func:`eqprop.free_phase` with ``Dynamics(method="fixed", T=T,
    eps=eps, damping=a)`` to round-off. Raises ValueError when a state is not finite.
    """
    T, a = _check_steps(T, damping)
    x = R._batch(net, x, net.n_in, "x", None)
    s = net.zero_state(x.shape[0]) if s0 is None else R._batch(net, s0, net.n_state, "s0", None)
    if s.shape[0] != x.shape[0]:
        raise ValueError(f"s0 must have shape ({x.shape[0]}, {net.n_state}), got {s.shape}")
    box = _outer_box(net, 2.0)  # the initial projection of the solvers: any damping
    traj = np.empty((T + 1, *s.shape), dtype=net.dtype)
    traj[0] = s if box is None else np.clip(s, box[0], box[1])
    outer = _outer_box(net, a)
    a_t = net.dtype.type(a)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            if not np.isfinite(traj[t]).all():
                raise ValueError(
                    f"the free trajectory is not finite from step {t} on (eps={eps:g}, "
                    f"damping={a:g}); lower eps or damping"
                )
            g = R.fixed_point_map(net, x, traj[t], eps=eps)
            if a != 1.0:
                g = traj[t] + a_t * (g - traj[t])
                if outer is not None:
                    np.clip(g, outer[0], outer[1], out=g)
            traj[t + 1] = g
    if not np.isfinite(traj[-1]).all():
        raise ValueError(
            f"the free trajectory is not finite after {T} steps (eps={eps:g}, damping={a:g}); "
            "lower eps or damping"
        )
    return traj


def _state_vjp(net: GraphNetwork, M, mu: np.ndarray, acts) -> np.ndarray:
    """:math:`M\\mu` per sample, (batch, n_state): ``M`` the constant coupling matrix of a
    dense network, or None (then the per-sample matrices at ``acts``)."""
    if M is not None:
        return mu @ M.T
    return np.einsum("bij,bj->bi", coupling_matrices(net, acts), mu)


def bptt(
    net: GraphNetwork,
    x,
    d,
    T: int,
    *,
    K: int | None = None,
    eps: float = 0.5,
    damping: float = 1.0,
    s0=None,
) -> RBPResult:
    """Gradient of the batch-mean loss after ``T`` free steps, backpropagated through time.

    Forward: :func:`free_trajectory`, :math:`s_{t+1} = D(s_t) = \\Pi_o((1 - a)\\,s_t +
    a\\,G(s_t))`. Backward, with the per-step coefficients :math:`c, r, q` of the module
    docstring at :math:`s_t` (any feedback: :math:`M` is not symmetric for untied
    couplings):

    .. math:: \\lambda_T = \\partial C/\\partial s(s_T), \\quad
              \\nabla_\\theta \\mathrel{+}= \\lambda_{t+1}^\\top\\partial D/\\partial\\theta,
              \\quad \\lambda_t = J_D(s_t)^\\top\\lambda_{t+1}
              = c_D\\odot\\lambda_{t+1} + q\\odot M(r_D\\odot\\lambda_{t+1}),

    :math:`t = T-1, \\dots, T-K`, with :math:`c_D = O(1 - a + a c)`, :math:`r_D = a O r`
    (:math:`O` the units the outer projection leaves free; all for :math:`a \\le 1`), the
    parameter terms of :func:`recurrent_backprop` with :math:`\\mu = r_D\\odot\\lambda_{t+1}`,
    and a readout's direct :math:`\\partial C/\\partial\\theta` at :math:`s_T`. The graph
    counterpart of :func:`eqprop.gradients.bptt` (same equations on a layered chain).

    Parameters
    ----------
    net : GraphNetwork
        Any feedback mode; dense couplings (matrix-free backward) or conv (per-sample
        matrices, small layers only).
    x, d : ndarray
        Input (batch, n_in), targets (batch, n_out).
    T : int
        Free steps (>= 0).
    K : int, optional
        Backpropagate through the last ``K`` steps only (default ``T``).
    eps, damping : float
        Hopfield Euler step and damping :math:`a` in (0, 2).
    s0 : ndarray (batch, n_state), optional
        Initial state (default zeros).

    Returns
    -------
    RBPResult
        ``grads`` by the names of :meth:`GraphNetwork.parameters` (batch mean), ``loss``
        at :math:`s_T`; ``info`` has ``T``, ``K``, ``damping`` and ``lambda``
        (:math:`\\lambda_{T-K}`, per sample).
    """
    T, a = _check_steps(T, damping)
    K = T if K is None else K
    if isinstance(K, bool) or not isinstance(K, int | np.integer) or not 0 <= K <= T:
        raise ValueError(f"K must be an integer in [0, T={T}], got {K!r}")
    traj = free_trajectory(net, x, T, eps=eps, damping=a, s0=s0)
    x, s_T, d = R._inputs(net, x, traj[-1], d)
    B = x.shape[0]
    acts_T = R.activities(net, x, s_T)
    lam = R._cost_state_gradient(net, acts_T, s_T, d)
    grads = {name: np.zeros_like(p) for name, p in net.parameters().items()}
    for k, v in _readout_gradient(net, acts_T, d).items():
        grads[k] += v
    M = coupling_matrix(net) if all(c.type == "dense" for c in net.couplings) else None
    outer = _outer_box(net, a)
    for t in range(T - 1, T - K - 1, -1):
        s = traj[t]
        c, r, q, acts = _coefficients(net, x, s, eps)
        if a != 1.0:
            O = np.ones_like(s)
            if outer is not None:
                z = (1.0 - a) * s + a * R.fixed_point_map(net, x, s, eps=eps)
                O = ((z > outer[0]) & (z < outer[1])).astype(s.dtype)
            c = O * (1.0 - a + a * c)
            r = a * O * r
        mu = r * lam
        for k, v in _parameter_vjp(net, acts, net.split(mu)).items():
            grads[k] += v
        lam = c * lam + q * _state_vjp(net, M, mu, acts)
    grads = {k: v / B for k, v in grads.items()}
    info = {"T": T, "K": int(K), "damping": a, "lambda": lam}
    return RBPResult(grads, loss(net, x, s_T, d), info)


def finite_difference(
    net: GraphNetwork,
    x,
    d,
    T: int,
    *,
    eps: float = 0.5,
    damping: float = 1.0,
    h: float = 1e-6,
    s0=None,
) -> RBPResult:
    """Central differences of the batch-mean loss after ``T`` free steps, by name.

    :math:`\\partial\\mathcal L/\\partial\\theta_i \\approx (\\mathcal L(\\theta + h e_i) -
    \\mathcal L(\\theta - h e_i)) / (2h)` for every entry of every array of
    :meth:`GraphNetwork.parameters` (a random feedback ``B`` is fixed: not perturbed),
    the forward run being :func:`free_trajectory` (the function :func:`bptt`
    differentiates). Truncation error :math:`O(h^2)`, round-off
    :math:`O(\\epsilon_{mach}/h)`: use float64 and ``h`` ~ 1e-6. Costs two forward runs
    per parameter entry: small networks only. The network is not modified.
    """
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"h must be finite and > 0, got {h!r}")
    T, a = _check_steps(T, damping)
    work = net.copy()
    x = R._batch(work, x, work.n_in, "x", None)
    d = R._batch(work, d, work.n_out, "d", x.shape[0])

    def run() -> float:
        s = free_trajectory(work, x, T, eps=eps, damping=a, s0=s0)[-1]
        return loss(work, x, s, d)

    grads: dict[str, np.ndarray] = {}
    for name, arr in work.parameters().items():
        g = np.zeros_like(arr)
        flat, gflat = arr.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            v = flat[i]
            flat[i] = v + h
            lp = run()
            flat[i] = v - h
            lm = run()
            flat[i] = v
            gflat[i] = (lp - lm) / (2 * h)
        grads[name] = g
    return RBPResult(grads, run(), {"h": h, "T": T, "damping": a})
