r"""Reference gradients of the loss at the free equilibrium, without an autodiff framework.

Every function here takes a network (:func:`eqprop.init_network`), a batch ``x``
(batch, sizes[0]) and one-hot targets ``d`` (batch, sizes[-1]) and returns a
:class:`ReferenceGradient`: lists ``dW`` / ``db`` shaped like ``net.weights`` /
``net.biases`` holding :math:`\partial \mathcal L / \partial \theta` **averaged over the
batch**, so they compare directly with
:meth:`eqprop.EquilibriumPropagation.estimate` (``step.gradient``).

References
----------
``recurrent_backprop``
    Exact gradient at the fixed point :math:`s^* = G(s^*)` by implicit differentiation
    (Almeida 1987; Pineda 1987): solve the linear adjoint system
    :math:`\lambda = \partial \ell / \partial s + J^\top \lambda` at :math:`s^*`
    (:math:`J = \partial G/\partial s`), then
    :math:`\nabla_\theta \mathcal L = (\partial G/\partial \theta)^\top \lambda`.
    ``method="dense"`` factorises :math:`I - J^\top` per sample (small networks),
    ``method="iterative"`` runs :func:`solvers.solve_fixed_point` on the adjoint map.
``bptt``
    Backpropagation through exactly the ``T`` stored steps
    :math:`s_{t+1} = \Pi((1 - a)\,s_t + a\,G(s_t))` of the free phase, :math:`a` its
    ``damping`` (1: :math:`s_{t+1} = G(s_t)`; ``K`` < ``T``: truncated to the last ``K``
    steps).
``finite_difference``
    Central differences of the loss after ``T`` free steps (checking only: two forward
    runs per parameter).
``ep_estimates``
    EP estimates at given ``beta`` for each estimator, via :mod:`eqprop.rules`.

Every function here that takes a :class:`eqprop.Dynamics` follows each of its fields that
changes the result, or raises ``ValueError`` naming the field (never drops it):
``bptt``, ``free_trajectory`` and ``finite_difference`` follow ``T``, ``eps`` and
``damping`` of ``method="fixed"``/``"fused"``/``"picard"`` run for fixed steps and refuse
other methods, tolerance mode and ``record_energy`` (:func:`iteration_damping`);
``recurrent_backprop`` runs the free phase with any ``Dynamics`` and solves the adjoint of
the damped map, whose gradient at a fixed point does not depend on the damping.

The step map G (one step of the free dynamics)
----------------------------------------------
Write :math:`p_l` for what layer :math:`l` sends to its neighbours
(:math:`p_l = \rho(s_l)` in the energy-based network, :math:`p_l = s_l` in the
prototypical one; :math:`p_0` is the clamped input) and

.. math:: u_l = p_{l-1} W_l + b_l + p_{l+1} W_{l+1}^\top

(the last term absent for the last state layer). Then

* ``kind="hopfield"`` (Scellier & Bengio 2017): :math:`E = \tfrac12 \sum_l \|s_l\|^2
  - \sum_l p_{l-1} W_l p_l^\top - \sum_l b_l p_l^\top`,
  :math:`\partial E/\partial s_l = s_l - \rho'(s_l) \odot u_l`, and the projected Euler
  step :math:`G(s) = \Pi(s - \epsilon\, \partial E/\partial s)`, :math:`\Pi` the clip to
  the activation's box (none for ``tanh`` when the network has no bounds).
* ``kind="prototypical"`` (Ernoult et al. 2019): :math:`G(s)_l = \sigma(u_l)`,
  i.e. :math:`s_{t+1} = \sigma(\partial\Phi/\partial s)` with
  :math:`\Phi = \sum_l s_{l-1} W_l s_l^\top + \sum_l b_l s_l^\top`.

Both Jacobians share one structure, used by every backward pass here:

.. math:: J^\top \lambda = c \odot \lambda + q \odot \big(M (r \odot \lambda)\big),
          \qquad (\partial G/\partial W_l)^\top \lambda = p_{l-1}^\top \mu_l
          + \mu_{l-1}^\top p_l, \quad (\partial G/\partial b_l)^\top \lambda = \mu_l,

with :math:`\mu = r \odot \lambda`, :math:`M` the symmetric block matrix of the weights
between state layers, and

* hopfield: :math:`c = P \odot (1 - \epsilon + \epsilon \rho''(s) \odot u)`,
  :math:`r = \epsilon P \odot \rho'(s)`, :math:`q = \rho'(s)`;
* prototypical: :math:`c = 0`, :math:`r = \sigma'(u)`, :math:`q = 1`.

**Active-set rule.** :math:`P_i = 1` when the unclipped update of unit :math:`i` lies
strictly inside the box and 0 otherwise. A unit held at 0 or 1 by the projection (or a
hard-sigmoid unit outside its linear range, :math:`\sigma'(u_i) = 0`) has a zero row in
:math:`J` and zero :math:`\mu_i`: it carries no gradient.

**Damping.** The damped step :math:`D(s) = \Pi_o((1 - a)\,s + a\,G(s))`
(``Dynamics.damping`` :math:`a`; :math:`\Pi_o` clips only for :math:`a > 1`) has the same
structure with :math:`c \to O\,(1 - a + a c)` and :math:`r \to a\,O\,r`, :math:`O_i = 1`
when :math:`(1 - a) s_i + a G(s)_i` lies strictly inside the box (always for
:math:`a \le 1`). A unit clipped by :math:`G` then keeps the diagonal :math:`1 - a`.

Loss
----
``cost="squared"``: :math:`\ell = \tfrac12 \|s_L - d\|^2` per sample on the output layer
(part of the state). ``cost="cross-entropy"``: softmax readout outside the energy,
:math:`y = \mathrm{softmax}(p_{L-1} W_L + b_L)`, :math:`\ell = -\sum_k d_k \log y_k`;
its weights get the direct gradient :math:`p_{L-1}^\top (y - d)`. The loss is averaged
over the batch.

Dtypes and tolerances
---------------------
Computations run in the network's dtype, or in ``dtype="float64"`` when asked (weights,
input and targets are cast; the network is not modified). In float64, BPTT agrees with
central finite differences to a relative error ~1e-9 (tests: <= 1e-6) for smooth activations and
recurrent backprop with BPTT to ~1e-15 once ``T`` steps have converged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from eqprop.network import Gradient, activation_functions

__all__ = [
    "FIXED_STEP_METHODS",
    "ReferenceGradient",
    "StepModel",
    "as_dtype",
    "bptt",
    "ep_estimates",
    "finite_difference",
    "free_trajectory",
    "iteration_damping",
    "loss",
    "make_step",
    "recurrent_backprop",
]


# --------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class ReferenceGradient(Gradient):
    """A reference gradient: an :class:`eqprop.network.Gradient` with diagnostics.

    Attributes
    ----------
    dW, db : list of ndarray
        :math:`\\partial \\mathcal L/\\partial W_l` and :math:`\\partial \\mathcal L/\\partial
        b_l`, averaged over the batch, shapes of ``net.weights`` / ``net.biases``
        (``flat()`` packs them as ``W_1..W_L, b_1..b_L`` like the network).
    loss : float
        Batch-mean loss at the state the gradient refers to.
    method : str
        ``"rbp-dense"``, ``"rbp-iterative"``, ``"bptt"``, ``"finite-difference"``.
    info : dict
        Extra diagnostics (adjoint residual, iterations, active fraction, ...).
    """

    loss: float = math.nan
    method: str = ""
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Activations (value, first and second derivative)
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# The step map and its Jacobian structure
# --------------------------------------------------------------------------------------


class StepModel:
    r"""Jacobian structure and loss of one free step :math:`G` of a network (the backward
    side; the forward step itself is the network's kernel, see :func:`make_step`).

    Built from a network and the step size; holds float arrays in one dtype. See the
    module docstring for the equations.

    Parameters
    ----------
    net : Network
        ``kind``, ``activation``, ``cost``, ``sizes``, ``weights``, ``biases``.
    eps : float
        Euler step of the energy-based network (ignored by the prototypical one).
    dtype : str or numpy dtype, optional
        Computation dtype; default the network's.
    damping : float
        Damping :math:`a` in (0, 2) of the step, :math:`D(s) = \Pi((1 - a)\,s + a\,G(s))`
        (:class:`eqprop.phases.Dynamics` ``damping``; the outer projection only acts for
        :math:`a > 1`). 1 is the plain step :math:`G`.
    """

    def __init__(self, net: Any, eps: float = 0.5, dtype: Any = None, damping: float = 1.0) -> None:
        self.kind = str(net.kind)
        if self.kind not in ("hopfield", "prototypical"):
            raise ValueError(f"unknown network kind {self.kind!r}")
        self.cost = str(net.cost)
        if self.cost not in ("squared", "cross-entropy"):
            raise ValueError(f"unknown cost {self.cost!r}")
        self.dtype = np.dtype(dtype if dtype is not None else net.weights[0].dtype)
        self.sizes = tuple(int(n) for n in net.sizes)
        self.W = [np.ascontiguousarray(w, dtype=self.dtype) for w in net.weights]
        self.b = [np.ascontiguousarray(b, dtype=self.dtype).reshape(-1) for b in net.biases]
        self.eps = float(eps)
        if self.kind == "hopfield" and not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.damping = float(damping)
        if not (math.isfinite(self.damping) and 0 < self.damping < 2):
            raise ValueError(f"damping must be in (0, 2), got {damping!r}")
        self.f, self.df, self.d2f, box = activation_functions(str(net.activation))
        self.box = _bounds_of(net, box) if self.kind == "hopfield" else None
        self.n_layers = len(self.sizes) - 1
        self.readout = self.cost == "cross-entropy"
        self.n_state_layers = self.n_layers - 1 if self.readout else self.n_layers
        ns = self.sizes[1 : 1 + self.n_state_layers]
        self.state_sizes = ns
        self.offsets = np.concatenate([[0], np.cumsum(ns)]).astype(np.int64)
        self.n_state = int(self.offsets[-1])

    # -- helpers -----------------------------------------------------------------------
    def split(self, s: np.ndarray) -> list[np.ndarray]:
        """Views of the state per state layer."""
        return [s[:, self.offsets[k] : self.offsets[k + 1]] for k in range(self.n_state_layers)]

    def presyn(self, x: np.ndarray, s: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``p`` per layer (index 0 = input) and ``q = dp/ds`` per state layer."""
        layers = self.split(s)
        if self.kind == "hopfield":
            p = [_input_signal(self, x)] + [self.f(v) for v in layers]
            q = [self.df(v) for v in layers]
        else:
            p = [x, *layers]
            q = [np.ones_like(v) for v in layers]
        return p, q

    def drive(self, p: list[np.ndarray], drive0: np.ndarray | None = None) -> list[np.ndarray]:
        """:math:`u_l = p_{l-1} W_l + b_l + p_{l+1} W_{l+1}^T` per state layer.

        ``drive0``: the precomputed input drive :math:`x W_1 + b_1` (constant in time).
        """
        u = []
        for k in range(self.n_state_layers):
            if k == 0 and drive0 is not None:
                v = drive0
            else:
                v = p[k] @ self.W[k] + self.b[k]
            if k + 1 < self.n_state_layers:
                v = v + p[k + 2] @ self.W[k + 1].T
            u.append(v)
        return u

    def readout_output(self, p: list[np.ndarray]) -> np.ndarray:
        """Softmax readout ``y`` (batch, sizes[-1]) of the cross-entropy network."""
        z = p[self.n_state_layers] @ self.W[-1] + self.b[-1]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    # -- loss --------------------------------------------------------------------------
    def loss_per_sample(self, x: np.ndarray, s: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Per-sample loss :math:`\\ell` at state ``s`` (batch,) in float64."""
        p, _ = self.presyn(x, s)
        if self.readout:
            y = self.readout_output(p)
            return -np.sum(d * np.log(np.maximum(y, np.finfo(y.dtype).tiny)), axis=1)
        out = self.split(s)[-1]
        return 0.5 * np.sum((out - d) ** 2, axis=1)

    def loss_grad_state(
        self, p: list[np.ndarray], q: list[np.ndarray], layers: list[np.ndarray], d: np.ndarray
    ) -> np.ndarray:
        """:math:`\\partial \\ell/\\partial s` of the last state layer, per sample."""
        if self.readout:
            y = self.readout_output(p)
            return q[-1] * ((y - d) @ self.W[-1].T)
        return layers[-1] - d

    def loss_grad(self, x: np.ndarray, s: np.ndarray, d: np.ndarray):
        """Per-sample ``dl/ds`` (batch, n_state) and direct parameter sums (readout).

        Returns ``(g, dW_direct, db_direct)``: the readout's direct gradient summed over
        the batch (zeros for the other layers).
        """
        p, q = self.presyn(x, s)
        g = np.zeros_like(s)
        g[:, self.offsets[-2] :] = self.loss_grad_state(p, q, self.split(s), d)
        dW = [np.zeros_like(w) for w in self.W]
        db = [np.zeros_like(b) for b in self.b]
        if self.readout:
            y = self.readout_output(p)
            dW[-1] = p[self.n_state_layers].T @ (y - d)
            db[-1] = (y - d).sum(axis=0)
        return g, dW, db

    # -- Jacobian structure ------------------------------------------------------------
    def coefficients(self, x: np.ndarray, s: np.ndarray, drive0: np.ndarray | None = None):
        """``(c, q, r, p)`` of :math:`J^T \\lambda = c\\lambda + q M(r\\lambda)` at ``s``.

        ``drive0``: optional precomputed :math:`x W_1 + b_1`.
        """
        p, q = self.presyn(x, s)
        u = self.drive(p, drive0)
        layers = self.split(s)
        cs, rs, gs = [], [], []
        for k in range(self.n_state_layers):
            if self.kind == "hopfield":
                z = layers[k] - self.eps * (layers[k] - q[k] * u[k])
                if self.box is not None:
                    act = ((z > self.box[0]) & (z < self.box[1])).astype(s.dtype)
                    gs.append(np.clip(z, self.box[0], self.box[1]))
                else:
                    act = np.ones_like(z)
                cs.append(act * (1.0 - self.eps + self.eps * self.d2f(layers[k]) * u[k]))
                rs.append(act * self.eps * q[k])
            else:
                cs.append(np.zeros_like(u[k]))
                rs.append(self.df(u[k]))
        c = np.concatenate(cs, axis=1)
        r = np.concatenate(rs, axis=1)
        a = self.damping
        if a != 1.0:
            # D = P((1 - a) s + a G(s)): J_D = O ((1 - a) I + a J_G), O the outer active set
            c = (1.0 - a) + a * c
            r = a * r
            if a > 1.0 and self.box is not None:
                zo = s + a * (np.concatenate(gs, axis=1) - s)
                outer = ((zo > self.box[0]) & (zo < self.box[1])).astype(s.dtype)
                c = c * outer
                r = r * outer
        qq = np.ascontiguousarray(np.concatenate(q, axis=1))
        return np.ascontiguousarray(c), qq, np.ascontiguousarray(r), p

    def mprod(self, mu: np.ndarray) -> np.ndarray:
        """:math:`(M \\mu)_l = \\mu_{l-1} W_l + \\mu_{l+1} W_{l+1}^T` between state layers."""
        m = self.split(mu)
        out = []
        for k in range(self.n_state_layers):
            v = np.zeros_like(m[k])
            if k >= 1:
                v = v + m[k - 1] @ self.W[k]
            if k + 1 < self.n_state_layers:
                v = v + m[k + 1] @ self.W[k + 1].T
            out.append(v)
        return np.concatenate(out, axis=1)

    def vjp_state(self, coef, lam: np.ndarray) -> np.ndarray:
        """:math:`J^T \\lambda` per sample."""
        c, q, r, _ = coef
        return c * lam + q * self.mprod(r * lam)

    def vjp_params(self, coef, lam: np.ndarray, dW: list[np.ndarray], db: list[np.ndarray]):
        """Accumulate :math:`(\\partial G/\\partial\\theta)^T \\lambda` (batch sum) in place."""
        _, _, r, p = coef
        mu = self.split(r * lam)
        for k in range(self.n_state_layers):
            dW[k] += p[k].T @ mu[k]
            if k >= 1:
                dW[k] += mu[k - 1].T @ p[k + 1]
            db[k] += mu[k].sum(axis=0)

    def dense_jt(self, coef) -> np.ndarray:
        """Per-sample dense :math:`J^T` (batch, n, n) (small networks only)."""
        c, q, r, _ = coef
        n = self.n_state
        M = np.zeros((n, n), dtype=c.dtype)
        o = self.offsets
        for k in range(1, self.n_state_layers):
            w = self.W[k]  # couples state layer k-1 (rows) and k (cols)
            M[o[k - 1] : o[k], o[k] : o[k + 1]] = w
            M[o[k] : o[k + 1], o[k - 1] : o[k]] = w.T
        jt = q[:, :, None] * M[None, :, :] * r[:, None, :]
        idx = np.arange(n)
        jt[:, idx, idx] += c
        return jt


def _bounds_of(net: Any, default):
    """The clipping box of the energy-based network: ``net.bounds`` if it says, else by
    activation (hard-sigmoid and sigmoid [0, 1], tanh unbounded)."""
    b = getattr(net, "bounds", default)
    if b is None:
        return None
    return (float(b[0]), float(b[1]))


def _input_signal(model: StepModel, x: np.ndarray) -> np.ndarray:
    """What the clamped input sends in the energy-based network: ``x`` itself."""
    return x


# --------------------------------------------------------------------------------------
# The forward step: the network's own kernel (eqprop.kernels), one place for the dynamics
# --------------------------------------------------------------------------------------


def as_dtype(net: Any, dtype: Any = None) -> Any:
    """The network itself, or a copy with parameters cast to ``dtype`` (e.g. float64)."""
    if dtype is None or np.dtype(dtype) == net.dtype:
        return net
    from eqprop.network import Network

    dt = np.dtype(dtype)
    return Network(
        net.sizes,
        net.kind,
        net.activation,
        net.cost,
        [np.array(w, dtype=dt) for w in net.weights],
        [np.array(b, dtype=dt) for b in net.biases],
    )


def make_step(
    net: Any,
    x: Any,
    *,
    beta: float = 0.0,
    d: Any = None,
    eps: float = 0.5,
    nudge: str = "inside",
):
    """One synchronous step :math:`s \\mapsto \\Pi(g_\\beta(s))` of the network's dynamics.

    Wraps :func:`eqprop.kernels.fixed_point_map` (the map every phase hands to
    ``solvers``) and the projection onto ``net.bounds``, with the arguments built exactly
    as :func:`eqprop.phases.run_phase` builds them, so a stored trajectory equals the
    phase's output step for step. Returns ``step(s) -> new array``.
    """
    from eqprop import kernels as K
    from eqprop.network import check_target
    from eqprop.phases import clamp

    cx = clamp(net, x)
    B = cx.batch
    if d is None:
        if beta != 0.0:
            raise ValueError("a nudged step (beta != 0) needs targets d")
        target = np.zeros((B, net.n_out), dtype=net.dtype)
    else:
        target = check_target(net, d, B)
    lay = net.layout(nudge)
    args = (
        cx.theta,
        lay,
        cx.drive,
        target,
        np.array([beta, eps], dtype=net.dtype),
        K.make_work(lay, B, net.dtype),
    )
    bounds = net.bounds

    def step(s: np.ndarray) -> np.ndarray:
        out = np.empty_like(s)
        K.fixed_point_map(s, out, args)
        if bounds is not None:
            np.clip(out, bounds[0], bounds[1], out=out)
        return out

    return step


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _is_clamped(x: Any) -> bool:
    return hasattr(x, "drive") and hasattr(x, "theta") and hasattr(x, "x")


def _check_batch(model: StepModel, x: Any, d: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    d = np.asarray(d)
    if x.ndim != 2 or x.shape[1] != model.sizes[0]:
        raise ValueError(
            f"x must have shape (batch, {model.sizes[0]}) for sizes {model.sizes}, got {x.shape}"
        )
    if d.ndim != 2 or d.shape != (x.shape[0], model.sizes[-1]):
        raise ValueError(
            f"d must have shape ({x.shape[0]}, {model.sizes[-1]}) (one row per sample of x, "
            f"one column per output unit), got {d.shape}"
        )
    if x.shape[0] < 1:
        raise ValueError("the batch is empty")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(d))):
        raise ValueError("x and d must be finite")
    return (
        np.ascontiguousarray(x, dtype=model.dtype),
        np.ascontiguousarray(d, dtype=model.dtype),
    )


def _check_state(model: StepModel, s: Any, batch: int, name: str) -> np.ndarray:
    s = np.asarray(s)
    if s.shape != (batch, model.n_state):
        raise ValueError(f"{name} must have shape ({batch}, {model.n_state}), got {s.shape}")
    return np.ascontiguousarray(s, dtype=model.dtype)


def _dyn_value(dyn: Any, name: str, value: Any, default: Any) -> Any:
    if value is not None:
        return value
    if dyn is not None and getattr(dyn, name, None) is not None:
        return getattr(dyn, name)
    return default


#: Names of the ``Dynamics.method`` values whose ``T`` fixed steps are the iteration
#: :math:`s_{t+1} = \Pi((1 - a) s_t + a G(s_t))` that BPTT and finite differences follow.
FIXED_STEP_METHODS = ("fixed", "fused", "picard")


def _steps_of(dyn: Any, T: Any, caller: str) -> int:
    """``T`` given, else ``dyn.T``; a one-line ValueError when neither is."""
    T = _dyn_value(dyn, "T", T, None)
    if T is None:
        raise ValueError(f"{caller}: give the number of free steps T or a Dynamics (dyn=...)")
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T < 0:
        raise ValueError(f"{caller}: T must be an integer >= 0, got {T!r}")
    return int(T)


def iteration_damping(dyn: Any, damping: float | None, caller: str) -> float:
    r"""Damping :math:`a` of the fixed-step iteration that ``caller`` differentiates.

    The references that follow the free trajectory step by step (:func:`bptt`,
    :func:`free_trajectory`, :func:`finite_difference`) reproduce exactly
    ``Dynamics(method="fixed" | "fused" | "picard", fixed_steps=True)`` or a
    ``solvers.Picard`` object run for fixed steps: ``T`` synchronous steps
    :math:`s_{t+1} = \Pi((1 - a)\,s_t + a\,G(s_t))`. A ``Dynamics`` field they cannot
    follow raises ``ValueError`` naming it:

    * ``method`` other than those (Anderson, Gauss-Seidel, the ODE methods): their
      iterates are another map, and BPTT through the Picard steps would answer another
      question;
    * ``fixed_steps=False`` (or ``method="picard"`` left to its tolerance default): the
      number of steps then depends on ``atol`` / ``rtol`` / ``max_iter`` per sample;
    * ``record_energy=True``: nothing here records the energy.

    In fixed-steps mode ``atol``, ``rtol`` and ``max_iter`` do not change the iterates
    (they only set the phase's ``converged`` flag), ``K`` and ``nudge`` belong to nudged
    phases and ``record_every`` / ``raise_on_failure`` to the phase's report; they are
    not used. ``damping`` given explicitly replaces ``dyn``'s.
    """
    a = damping
    if dyn is not None:
        import solvers

        m = dyn.method
        if isinstance(m, str):
            if m not in FIXED_STEP_METHODS:
                raise ValueError(
                    f"{caller} follows T fixed synchronous steps s <- (1 - a) s + a G(s) and "
                    f"cannot differentiate Dynamics.method={m!r}; use method='fixed' "
                    "(or 'fused'/'picard' with fixed_steps=True)"
                )
            dyn_a = float(dyn.damping)
        elif type(m) is solvers.Picard:
            dyn_a = float(m.damping)
        else:
            raise ValueError(
                f"{caller} follows T fixed synchronous (Picard) steps and cannot "
                f"differentiate Dynamics.method={m!r}; use method='fixed'"
            )
        if not dyn.is_fixed_steps:
            raise ValueError(
                f"{caller} differentiates exactly T steps, but Dynamics.fixed_steps="
                f"{dyn.fixed_steps!r} with method {dyn.method_name!r} runs each sample to "
                f"its tolerance (atol={dyn.atol:g}, rtol={dyn.rtol:g}, max_iter="
                f"{dyn.max_iter}); pass fixed_steps=True or method='fixed'"
            )
        if dyn.record_energy:
            raise ValueError(
                f"{caller} records no energy (Dynamics.record_energy=True); run "
                "eqprop.free_phase for that"
            )
        if a is None:
            a = dyn_a
    a = 1.0 if a is None else float(a)
    if not (math.isfinite(a) and 0 < a < 2):
        raise ValueError(f"{caller}: damping must be in (0, 2), got {a!r}")
    return a


def _finish(model, dW, db, batch, loss_value, method, info) -> ReferenceGradient:
    return ReferenceGradient(
        dW=[w / batch for w in dW],
        db=[b / batch for b in db],
        loss=float(loss_value),
        method=method,
        info=info,
    )


# --------------------------------------------------------------------------------------
# Forward trajectory and loss
# --------------------------------------------------------------------------------------


def free_trajectory(
    net: Any,
    x: Any,
    T: int | None = None,
    *,
    eps: float | None = None,
    damping: float | None = None,
    dyn: Any = None,
    s0: Any = None,
    dtype: Any = None,
) -> np.ndarray:
    r"""States of ``T`` free steps from ``s0`` (default zeros): array (T + 1, batch, n_state).

    Row 0 is ``s0`` (projected onto ``net.bounds``, as the solvers do); row ``t + 1`` is
    :math:`\Pi((1 - a)\,s_t + a\,G(s_t))` with :math:`G` one step of the network's
    free dynamics (:func:`make_step`) and :math:`a` the damping (``dyn.damping``, or the
    ``damping`` given; the outer projection :math:`\Pi` only acts for :math:`a > 1`).
    Row ``T`` equals the state of :func:`eqprop.free_phase` with the same ``Dynamics``
    (``method="fixed"``; ``"fused"`` to round-off). ``dyn`` fields that change the
    iterates but cannot be followed raise ``ValueError`` (see :func:`iteration_damping`).
    Memory: ``(T + 1) * batch * n_state`` values (this is what BPTT stores).

    Raises
    ------
    ValueError
        A state became non-finite (the dynamics diverged): the message names the step
        and the number of samples.
    """
    T = _steps_of(dyn, T, "free_trajectory")
    a = iteration_damping(dyn, damping, "free_trajectory")
    net = as_dtype(net, dtype)
    eps_v = float(_dyn_value(dyn, "eps", eps, 0.5))
    step = make_step(net, x, eps=eps_v)
    x = np.ascontiguousarray(x, dtype=net.dtype)
    s = net.zero_state(x.shape[0]) if s0 is None else s0
    model = StepModel(net)
    s = _check_state(model, s, x.shape[0], "s0")
    bounds = net.bounds
    traj = np.empty((T + 1, *s.shape), dtype=net.dtype)
    traj[0] = s if bounds is None else np.clip(s, bounds[0], bounds[1])
    a_t = np.asarray(a, dtype=net.dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # a divergence is raised below
        for t in range(T):
            g = step(traj[t])
            if a != 1.0:  # the solvers' damped Picard update, in the state dtype
                g = traj[t] + a_t * (g - traj[t])
                if bounds is not None and a > 1.0:
                    np.clip(g, bounds[0], bounds[1], out=g)
            traj[t + 1] = g
    bad = ~np.isfinite(traj[-1]).all(axis=1)
    if bad.any():
        finite_steps = np.isfinite(traj).all(axis=(1, 2))  # (T + 1,)
        first = int(np.argmin(finite_steps))
        raise ValueError(
            f"the free trajectory is not finite from step {first} on for {int(bad.sum())} "
            f"of {bad.size} samples (eps={eps_v:g}, damping={a:g}); lower eps or damping"
        )
    return traj


def loss(net: Any, x: Any, d: Any, s: Any, *, dtype: Any = None) -> float:
    """Batch-mean loss at state ``s`` (see the module docstring for the costs)."""
    model = StepModel(net, dtype=dtype)
    x, d = _check_batch(model, x, d)
    s = _check_state(model, s, x.shape[0], "s")
    return float(np.mean(model.loss_per_sample(x, s, d)))


# --------------------------------------------------------------------------------------
# BPTT
# --------------------------------------------------------------------------------------


def bptt(
    net: Any,
    x: Any,
    d: Any,
    T: int | None = None,
    *,
    K: int | None = None,
    eps: float | None = None,
    damping: float | None = None,
    dyn: Any = None,
    s0: Any = None,
    dtype: Any = None,
    return_trajectory: bool = False,
):
    r"""Gradient of the loss after ``T`` free steps by backpropagation through time.

    Forward: :math:`s_{t+1} = D(s_t) = \Pi\big((1 - a)\,s_t + a\,G(s_t)\big)`,
    ``t = 0..T-1``, from ``s0`` (zeros by default), storing all ``T + 1`` states
    (:func:`free_trajectory`; :math:`a` = ``damping``, 1 is the plain step :math:`G`;
    :math:`a = 0.2` with the prototypical kind is the ``dt = 0.2`` iteration of the code
    of Ernoult et al. 2019). Backward (hand-derived adjoint):

    .. math:: \lambda_T = \partial\ell/\partial s_T, \quad
              \nabla_\theta \mathrel{+}= (\partial D/\partial\theta)^\top\lambda_{t+1},
              \quad \lambda_t = J_D(s_t)^\top \lambda_{t+1}, \quad t = T-1, \dots, T-K,

    with :math:`J_D = O\,((1 - a) I + a J_G)` and :math:`\partial D/\partial\theta =
    a\,O\,\partial G/\partial\theta` (:math:`O` the units the outer projection leaves
    free; all of them for :math:`a \le 1`).

    Parameters
    ----------
    net, x, d
        Network, input (batch, sizes[0]) and targets (batch, sizes[-1]).
    T : int
        Number of free steps (default ``dyn.T``).
    K : int, optional
        Truncation: backpropagate through the last ``K`` steps only (default ``T``).
        Not ``dyn.K`` (the nudged phases' steps).
    eps : float, optional
        Euler step of the energy-based network (default ``dyn.eps``, else 0.5).
    damping : float, optional
        Damping :math:`a` in (0, 2) (default ``dyn.damping``, else 1).
    dyn : Dynamics, optional
        ``T``, ``eps``, ``damping`` and the method: ``"fixed"``, ``"fused"``,
        ``"picard"`` (fixed steps) or a ``solvers.Picard`` (its damping); any other method,
        tolerance mode or ``record_energy`` raises ``ValueError`` naming the field
        (:func:`iteration_damping`).
    s0 : array (batch, n_state), optional
        Initial state (default zeros).
    dtype : optional
        Computation dtype (e.g. ``"float64"``).
    return_trajectory : bool
        Also return the stored trajectory (T + 1, batch, n_state).

    Returns
    -------
    ReferenceGradient (and the trajectory when asked); ``info["lambda"]`` holds
    :math:`\lambda_{T-K}`, ``info["damping"]`` the damping and
    ``info["trajectory_nbytes"]`` the memory stored.
    """
    T = _steps_of(dyn, T, "bptt")
    K = T if K is None else int(K)
    if not 0 <= K <= T:
        raise ValueError(f"K must be in [0, T={T}], got {K}")
    a = iteration_damping(dyn, damping, "bptt")
    eps = _dyn_value(dyn, "eps", eps, 0.5)
    model = StepModel(net, eps=eps, dtype=dtype, damping=a)
    x, d = _check_batch(model, x, d)
    traj = free_trajectory(net, x, T, eps=eps, damping=a, s0=s0, dtype=model.dtype)
    dW_, db_ = _bptt_backward(model, x, d, traj, K)
    lam = dW_.pop()
    g_loss = float(np.mean(model.loss_per_sample(x, traj[-1], d)))
    info = {"T": T, "K": K, "damping": a, "lambda": lam, "trajectory_nbytes": int(traj.nbytes)}
    res = _finish(model, dW_, db_, x.shape[0], g_loss, "bptt", info)
    return (res, traj) if return_trajectory else res


def _bptt_backward(model: StepModel, x, d, traj, K: int, per_step: bool = False):
    """Backward pass over the stored trajectory; returns ``(dW + [lambda], db)``.

    With ``per_step`` it returns ``(lams, grads)``: :math:`\\lambda_{T-t}` for
    ``t = 0..K`` and the per-step parameter contributions for ``t = 0..K-1``
    (batch sums).
    """
    T = traj.shape[0] - 1
    lam, dW, db = model.loss_grad(x, traj[T], d)
    lams = [lam.copy()]
    grads = []
    drive0 = x @ model.W[0] + model.b[0]  # constant input drive, once
    for t in range(T - 1, T - K - 1, -1):
        coef = model.coefficients(x, traj[t], drive0)
        if per_step:
            gW = [np.zeros_like(w) for w in model.W]
            gb = [np.zeros_like(b) for b in model.b]
            model.vjp_params(coef, lam, gW, gb)
            grads.append((gW, gb))
        else:
            model.vjp_params(coef, lam, dW, db)
        lam = model.vjp_state(coef, lam)
        if per_step:
            lams.append(lam.copy())
    if per_step:
        return lams, grads
    return [*dW, lam], db


# --------------------------------------------------------------------------------------
# Recurrent backprop (implicit differentiation at the fixed point)
# --------------------------------------------------------------------------------------


@njit(cache=True)
def _adjoint_map(lam, out, args):
    """``out = g + c*lam + q * M(r*lam)`` for the layered coupling matrix ``M``.

    ``args = (c, q, r, g, wflat, woff, offsets)``: ``wflat`` holds the couplings between
    consecutive state layers (row-major, layer k-1 by layer k) at ``woff[k-1]``.
    """
    c, q, r, g, wflat, woff, offsets = args
    batch, n = lam.shape
    nl = offsets.shape[0] - 1
    for b in range(batch):
        for i in range(n):
            out[b, i] = g[b, i] + c[b, i] * lam[b, i]
        for k in range(1, nl):
            a0 = offsets[k - 1]
            a1 = offsets[k]
            b1 = offsets[k + 1]
            na = a1 - a0
            nb = b1 - a1
            base = woff[k - 1]
            # rows: layer k-1 (i), cols: layer k (j); W[i, j] = wflat[base + i*nb + j]
            for i in range(na):
                mi = r[b, a0 + i] * lam[b, a0 + i]
                acc = 0.0
                for j in range(nb):
                    w = wflat[base + i * nb + j]
                    out[b, a1 + j] += q[b, a1 + j] * w * mi
                    acc += w * r[b, a1 + j] * lam[b, a1 + j]
                out[b, a0 + i] += q[b, a0 + i] * acc


def _adjoint_args(model: StepModel, coef, g):
    c, q, r, _ = coef
    ws = [np.ravel(model.W[k]) for k in range(1, model.n_state_layers)]
    wflat = np.ascontiguousarray(np.concatenate(ws) if ws else np.zeros(0), dtype=model.dtype)
    woff = np.concatenate([[0], np.cumsum([w.size for w in ws])]).astype(np.int64)
    return (c, q, r, np.ascontiguousarray(g), wflat, woff, model.offsets)


def _free_state(net, x, dyn, model: StepModel):
    """Run the network's free phase (``eqprop.phases``) and return ``(state, result)``."""
    from eqprop.phases import free_phase

    ph = free_phase(net, x.astype(net.weights[0].dtype), dyn)
    return np.ascontiguousarray(ph.state, dtype=model.dtype), getattr(ph, "result", None)


def recurrent_backprop(
    net: Any,
    x: Any,
    d: Any,
    *,
    s_star: Any = None,
    dyn: Any = None,
    eps: float | None = None,
    damping: float | None = None,
    method: str = "dense",
    atol: float = 1e-12,
    max_iter: int = 100000,
    dtype: Any = None,
    check_fixed_point: float | None = 1e-6,
) -> ReferenceGradient:
    r"""Exact gradient at the free fixed point by implicit differentiation (RBP).

    Solves the adjoint system at :math:`s^* = G(s^*)`,

    .. math:: (I - J^\top)\,\lambda = \partial\ell/\partial s(s^*), \qquad
              \nabla_\theta\mathcal L = (\partial G/\partial\theta)^\top\lambda
              + \partial\ell/\partial\theta,

    which for the energy-based network equals
    :math:`-\partial^2 E/\partial\theta\,\partial s_A\, H_{AA}^{-1}\, \partial\ell/\partial s_A`
    on the active set :math:`A` (units not held at a bound; the others carry no gradient),
    independently of ``eps``.

    **Damping.** The system is solved for the damped map
    :math:`D(s) = \Pi((1 - a)\,s + a\,G(s))` of the phases (``damping`` :math:`a`):
    :math:`D` has the fixed points of :math:`G`, and there
    :math:`I - J_D^\top = a\,(I - J_G^\top)` and :math:`\partial D/\partial\theta =
    a\,\partial G/\partial\theta` (units left free by the outer projection), so
    :math:`\lambda_D = \lambda_G / a` and the gradient does not depend on :math:`a` at an
    exact fixed point (tested to round-off). BPTT through ``T`` damped steps does depend on
    it: it differentiates the trajectory, which is slower for :math:`a < 1`.

    Parameters
    ----------
    net, x, d
        Network and batch; ``x`` may be the :class:`eqprop.phases.Clamped` input of the
        free phase (its input drive is then reused, valid while the parameters are
        unchanged).
    s_star : array (batch, n_state), optional
        The free fixed point; default: run :func:`eqprop.free_phase` with ``dyn``.
    dyn : Dynamics, optional
        Dynamics of the free phase (any method: only its fixed point matters), ``eps``
        and ``damping``.
    eps : float, optional
        Step of the energy-based map (only sets the active-set test); default ``dyn.eps``.
    damping : float, optional
        Damping :math:`a` of the map whose adjoint is solved; default ``dyn.damping``
        (a ``solvers.Picard`` method's own damping), else 1. Does not change the gradient
        at a fixed point (see above).
    method : {"dense", "iterative"}
        ``"dense"``: batched LU solve of the ``n_state x n_state`` system per sample
        (O(batch n^3), small networks). ``"iterative"``: :func:`solvers.solve_fixed_point`
        (Anderson) on :math:`\lambda \mapsto g + J^\top\lambda` to ``atol`` (max-norm).
    check_fixed_point : float or None
        Warn when :math:`\max|G(s^*) - s^*|` exceeds this (the gradient is then not exact).

    Returns
    -------
    ReferenceGradient with ``info`` keys ``fixed_point_residual``, ``active_fraction``,
    ``adjoint_residual``, and for the iterative method ``n_iter`` and ``converged``.
    """
    if method not in ("dense", "iterative"):
        raise ValueError(f"method must be 'dense' or 'iterative', got {method!r}")
    eps = _dyn_value(dyn, "eps", eps, 0.5)
    if damping is None and dyn is not None:
        m = getattr(dyn, "method", None)
        damping = getattr(m, "damping", None) if not isinstance(m, str) else None
        if damping is None:
            damping = getattr(dyn, "damping", 1.0)
    model = StepModel(net, eps=eps, dtype=dtype, damping=1.0 if damping is None else damping)
    given = x if _is_clamped(x) else None
    x, d = _check_batch(model, given.x if given is not None else x, d)
    if s_star is None:
        if dyn is None:
            raise ValueError("give s_star or dyn (to run the free phase)")
        s_star, _ = _free_state(net, x, dyn, model)
    s = _check_state(model, s_star, x.shape[0], "s_star")
    from eqprop.phases import clamp

    net_c = as_dtype(net, model.dtype)
    if given is not None and net_c is net and given.drive.dtype == model.dtype:
        cx = given  # the caller's clamped input: its drive x W_1 + b_1 is reused
    else:
        cx = clamp(net_c, x)  # the input drive x W_1 + b_1, computed once
    step = make_step(net_c, cx, eps=float(eps))
    fp_res = float(np.max(np.abs(step(s) - s)))
    if check_fixed_point is not None and not fp_res <= check_fixed_point:
        warnings.warn(
            f"s_star is not a fixed point (max |G(s) - s| = {fp_res:.3g} > "
            f"{check_fixed_point:g}); the recurrent-backprop gradient is not exact there. "
            "Run the free phase longer (larger T / max_iter).",
            RuntimeWarning,
            stacklevel=2,
        )
    coef = model.coefficients(x, s, cx.drive)
    g, dW, db = model.loss_grad(x, s, d)
    info: dict[str, Any] = {
        "damping": model.damping,
        "fixed_point_residual": fp_res,
        "active_fraction": float(np.mean(coef[2] != 0)),
    }
    if method == "dense":
        jt = model.dense_jt(coef)
        A = np.eye(model.n_state, dtype=model.dtype)[None] - jt
        lam = np.linalg.solve(A, g[:, :, None])[:, :, 0]
    elif method == "iterative":
        lam, extra = _iterative_adjoint(model, coef, g, atol=atol, max_iter=max_iter)
        info.update(extra)
    else:
        raise ValueError(f"method must be 'dense' or 'iterative', got {method!r}")
    info["adjoint_residual"] = float(np.max(np.abs(g + model.vjp_state(coef, lam) - lam)))
    info["lambda"] = lam
    model.vjp_params(coef, lam, dW, db)
    lval = float(np.mean(model.loss_per_sample(x, s, d)))
    return _finish(model, dW, db, x.shape[0], lval, f"rbp-{method}", info)


def _iterative_adjoint(model: StepModel, coef, g, *, atol: float, max_iter: int):
    args = _adjoint_args(model, coef, g)
    try:
        from solvers import Anderson, solve_fixed_point
    except ImportError:  # solvers not available: plain Picard iteration in numpy
        lam = g.copy()
        out = np.empty_like(lam)
        for k in range(max_iter):
            _adjoint_map(lam, out, args)
            r = float(np.max(np.abs(out - lam)))
            lam, out = out, lam
            if r <= atol:
                return lam, {"n_iter": k + 1, "converged": True, "solver": "picard-numpy"}
        return lam, {"n_iter": max_iter, "converged": False, "solver": "picard-numpy"}
    # The adjoint map is linear, and over-relaxed (damping > 1) its Jacobian can have
    # spectral radius > 1: plain steps then diverge, so neither Anderson's plain warm-up
    # steps (delay) nor its fall-back to damped Picard can help, while the extrapolation
    # (GMRES-like on a linear map) converges. Both safeguards are off for this solve.
    method = Anderson(delay=0, window=2**31 - 1, progress=1.0, regress=float("inf"))
    res = solve_fixed_point(
        _adjoint_map, g.copy(), args, method=method, atol=atol, max_iter=max_iter
    )
    if not np.all(res.converged):
        warnings.warn(
            f"the adjoint solve did not converge for {int(np.sum(~res.converged))} sample(s) "
            f"({res.message}); raise max_iter or use method='dense'",
            RuntimeWarning,
            stacklevel=3,
        )
    return np.ascontiguousarray(res.x), {
        "n_iter": int(np.max(res.n_iter)),
        "converged": bool(np.all(res.converged)),
        "solver": res.method,
        "nfev": int(res.nfev),
    }


# --------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------


def finite_difference(
    net: Any,
    x: Any,
    d: Any,
    T: int | None = None,
    *,
    eps: float | None = None,
    damping: float | None = None,
    dyn: Any = None,
    h: float = 1e-6,
    s0: Any = None,
    dtype: Any = "float64",
    forward: Any = None,
) -> ReferenceGradient:
    r"""Central differences of the batch-mean loss after ``T`` free steps.

    :math:`\partial\mathcal L/\partial\theta_i \approx
    (\mathcal L(\theta + h e_i) - \mathcal L(\theta - h e_i)) / (2h)`, truncation error
    :math:`O(h^2)`, round-off :math:`O(\epsilon_{mach}/h)`: use float64 (default) and
    ``h`` ~ 1e-6. Costs ``2 * n_params`` forward runs: small networks only.

    The forward run is :func:`free_trajectory` with ``T``, ``eps`` and ``damping`` (given,
    else from ``dyn``; a ``dyn`` it cannot follow raises, see :func:`iteration_damping`).
    ``forward(net_copy, x) -> state`` may replace it (e.g. the network's own free phase);
    the network copy has perturbed weights, and ``dyn`` then only supplies ``T``/``eps``.
    """
    T = _steps_of(dyn, T, "finite_difference")
    a = iteration_damping(dyn if forward is None else None, damping, "finite_difference")
    eps = _dyn_value(dyn, "eps", eps, 0.5)
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h!r}")
    base = StepModel(net, eps=eps, dtype=dtype)
    x, d = _check_batch(base, x, d)
    work = as_dtype(net, base.dtype)
    if work is net:
        work = net.copy()

    def run() -> float:
        if forward is not None:
            s = np.asarray(forward(work, x), dtype=base.dtype)
        else:
            s = free_trajectory(work, x, T, eps=eps, damping=a, s0=s0)[-1]
        m = StepModel(work, eps=eps)
        return float(np.mean(m.loss_per_sample(x, s, d)))

    out_W: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    for group, out in ((work.weights, out_W), (work.biases, out_b)):
        for arr in group:
            gr = np.zeros_like(arr)
            flat = arr.reshape(-1)
            gflat = gr.reshape(-1)
            for i in range(flat.size):
                v = flat[i]
                flat[i] = v + h
                lp = run()
                flat[i] = v - h
                lm = run()
                flat[i] = v
                gflat[i] = (lp - lm) / (2 * h)
            out.append(gr)
    return ReferenceGradient(
        dW=out_W,
        db=out_b,
        loss=run(),
        method="finite-difference",
        info={"h": h, "T": T, "damping": a},
    )


# --------------------------------------------------------------------------------------
# EP estimates
# --------------------------------------------------------------------------------------


def ep_estimates(
    net: Any,
    x: Any,
    d: Any,
    dyn: Any,
    betas: Sequence[float],
    estimators: Sequence[str] = ("one-sided", "random-sign", "symmetric"),
    *,
    seed: int = 0,
) -> dict[tuple[str, float], Any]:
    """EP gradient estimates ``{(estimator, beta): RuleStep}`` via :mod:`eqprop.rules`.

    Each estimate uses a fresh ``numpy.random.default_rng(seed)`` (the random-sign
    estimator draws its sign from it), so results are reproducible.
    ``beta`` must be > 0 (the sign is the estimator's business).
    """
    from eqprop.rules import EquilibriumPropagation

    out = {}
    for beta in betas:
        b = float(beta)
        if not (math.isfinite(b) and b > 0):
            raise ValueError(f"beta must be finite and > 0, got {beta!r}")
        for est in estimators:
            rule = EquilibriumPropagation(beta=b, estimator=est)
            out[(est, b)] = rule.estimate(net, x, d, dyn, rng=np.random.default_rng(seed))
    return out
