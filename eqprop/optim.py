"""Optimizers that apply a gradient estimate to a :class:`~eqprop.network.Network` in place.

A learning rule (e.g. :class:`eqprop.rules.EquilibriumPropagation`) returns a
:class:`~eqprop.rules.Gradient`: estimates ``dW[l]``, ``db[l]`` of the derivative of the
loss with respect to the weights and biases of layer ``l + 1``, shaped like
``net.weights[l]`` and ``net.biases[l]``. :class:`SGD` turns them into an update.

Update rule (one call of :meth:`SGD.step`, layer index ``l``, rate ``lr_l = lrs[l]``)::

    g_W = dW_l + weight_decay * W_l        g_b = db_l          (no decay on biases)
    v_W = momentum * v_W + g_W             v_b = momentum * v_b + g_b
    W_l = W_l - lr_l * v_W                 b_l = b_l - lr_l * v_b

With ``momentum == 0`` no buffer is kept and the step is ``W -= lr * (dW + wd * W)``
(plain SGD, the update of Scellier & Bengio 2017 with per-layer rates). The momentum form
is the "heavy ball" convention (as in PyTorch's ``SGD`` without dampening): the buffer
starts at zero, so the first step equals a plain SGD step.

Arithmetic is done in the network's dtype (``float32`` or ``float64``): rates are cast to
that dtype, so a float32 network stays float32 and its arrays are modified in place
(their identity, shape, dtype and C-contiguity are kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from scipy.linalg import blas as _blas

from eqprop.graph.model import GraphNetwork

__all__ = ["SGD", "graph_rates"]


class _NetworkLike(Protocol):
    weights: list[np.ndarray]
    biases: list[np.ndarray]


class _GradientLike(Protocol):
    dW: list[np.ndarray]
    db: list[np.ndarray]


def _as_rates(lrs: float | Sequence[float]) -> tuple[float, ...]:
    if np.isscalar(lrs):
        rates: tuple[float, ...] = (float(lrs),)  # type: ignore[arg-type]
    else:
        rates = tuple(float(v) for v in lrs)  # type: ignore[union-attr]
    if not rates:
        raise ValueError("learning rates: give at least one rate (one per weight layer)")
    for i, r in enumerate(rates):
        if not np.isfinite(r) or r < 0:
            raise ValueError(f"learning rate {i + 1} is {r}; rates must be finite and >= 0")
    return rates


_AXPY: dict[np.dtype, Any] = {}


def _flat(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """1-D C-contiguous view (or converted copy) of ``a`` in ``dtype``."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def _axpy(x: np.ndarray, y: np.ndarray, a: float) -> None:
    """``y += a * x`` in place for 1-D contiguous arrays of one dtype (BLAS ``?axpy``).

    One pass over memory and no temporary, several times faster than ``y -= a * x`` in
    numpy for the weight matrices of a step; this is the per-minibatch cost of the
    optimizer.
    """
    if x.size == 0:
        return
    fn = _AXPY.get(y.dtype)
    if fn is None:
        fn = _AXPY[y.dtype] = _blas.get_blas_funcs("axpy", (y,))
    out = fn(x, y, a=a)
    if not np.shares_memory(out, y):  # pragma: no cover - BLAS copied: write back
        y[...] = out


def graph_rates(net: GraphNetwork, lrs: Sequence[float]) -> dict[str, float]:
    """Learning rate of each parameter of a graph network, by name.

    The layers after the input are numbered 1, 2, ... in the order of ``net.layers`` (as
    the chain's layers); ``lrs[l-1]`` is the rate of every coupling into layer ``l``
    (``W`` and a free ``B``; a skip coupling ``h1 -> y`` takes ``y``'s rate) and of
    layer ``l``'s bias: on a chain, exactly the chain's per-layer rates.
    """
    index = {la.name: i for i, la in enumerate(net.layers[1:])}
    rates: dict[str, float] = {}
    for name in net.parameters():
        owner, what = name.rsplit(".", 1)
        if what == "b":
            rates[name] = lrs[index[owner]]
        else:
            rates[name] = lrs[index[net.coupling(owner).target]]
    return rates


class SGD:
    """Stochastic gradient descent with per-layer rates, momentum and weight decay.

    Parameters
    ----------
    lrs : float or sequence of float
        Learning rate of each weight layer, input side first (``lrs[0]`` for ``W_1``, which
        maps the input to the first hidden layer). A single number is used for every layer
        only if the network has one weight layer; otherwise give one rate per layer.
        The bias of layer ``l`` uses the rate of ``W_l``.
    momentum : float, default 0
        Heavy-ball coefficient in ``[0, 1)``.
    weight_decay : float, default 0
        L2 coefficient ``>= 0`` added to the weight gradient (``dW + wd * W``); biases are
        not decayed.

    A :class:`~eqprop.graph.GraphNetwork` is updated by parameter name from a
    :class:`~eqprop.graph.gradient.GraphGradient`: one rate per layer after the input
    (:func:`graph_rates`), weight decay on the coupling matrices (``W``, a free ``B``),
    not on biases.

    Notes
    -----
    Momentum buffers are created lazily at the first :meth:`step` (zeros, the network's
    dtype) and exported by :meth:`state_dict` for checkpoints.
    """

    def __init__(
        self,
        lrs: float | Sequence[float],
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.lrs = _as_rates(lrs)
        momentum = float(momentum)
        weight_decay = float(weight_decay)
        if not (np.isfinite(momentum) and 0.0 <= momentum < 1.0):
            raise ValueError(f"momentum is {momentum}; use a value in [0, 1)")
        if not (np.isfinite(weight_decay) and weight_decay >= 0.0):
            raise ValueError(f"weight decay is {weight_decay}; use a finite value >= 0")
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.vW: list[np.ndarray] | None = None
        self.vb: list[np.ndarray] | None = None
        self.vP: list[np.ndarray] | None = None  # graph networks: one per parameter
        self.n_steps = 0

    def __repr__(self) -> str:
        return (
            f"SGD(lrs={list(self.lrs)}, momentum={self.momentum}, weight_decay={self.weight_decay})"
        )

    # ------------------------------------------------------------------ validation
    def check(self, net: _NetworkLike | GraphNetwork) -> None:
        """Raise ValueError if the rates do not match the network's number of weight layers."""
        if isinstance(net, GraphNetwork):
            n = len(net.layers) - 1
            if len(self.lrs) != n:
                raise ValueError(
                    f"{len(self.lrs)} learning rate(s) given for a graph network with {n} "
                    f"layers after the input; give exactly {n} rates, one per layer in the "
                    "order of net.layers (a layer's rate applies to every coupling into it)"
                )
            return
        n = len(net.weights)
        if len(self.lrs) != n:
            raise ValueError(
                f"{len(self.lrs)} learning rate(s) given for a network with {n} weight "
                f"layer(s); give exactly {n} rates, input side first"
            )

    def _check_grad(self, net: _NetworkLike, grad: _GradientLike) -> None:
        if len(grad.dW) != len(net.weights) or len(grad.db) != len(net.biases):
            raise ValueError(
                f"gradient has {len(grad.dW)} weight / {len(grad.db)} bias arrays, the "
                f"network {len(net.weights)} / {len(net.biases)}"
            )
        for l, (W, dW, b, db) in enumerate(zip(net.weights, grad.dW, net.biases, grad.db)):
            if dW.shape != W.shape or db.shape != b.shape:
                raise ValueError(
                    f"layer {l + 1}: gradient shapes {dW.shape}, {db.shape} differ from "
                    f"parameter shapes {W.shape}, {b.shape}"
                )

    # ------------------------------------------------------------------ update
    def step(self, net: _NetworkLike | GraphNetwork, grad: Any) -> None:
        """Apply one update to ``net.weights`` and ``net.biases`` in place.

        Parameters
        ----------
        net : Network or GraphNetwork
            Modified in place.
        grad : Gradient or GraphGradient
            ``dW``/``db`` shaped like the parameters (any float dtype; cast to the
            parameter's dtype); for a graph network a mapping by parameter name.
        """
        if isinstance(net, GraphNetwork):
            self._step_graph(net, grad)
            return
        self.check(net)
        self._check_grad(net, grad)
        mom = self.momentum
        wd = self.weight_decay
        if mom > 0.0 and self.vW is None:
            self.vW = [np.zeros_like(W) for W in net.weights]
            self.vb = [np.zeros_like(b) for b in net.biases]
        for l, (W, b) in enumerate(zip(net.weights, net.biases)):
            if not (W.flags.c_contiguous and b.flags.c_contiguous):
                raise ValueError(f"layer {l + 1}: parameters must be C-contiguous")
            dW = _flat(grad.dW[l], W.dtype)
            db = _flat(grad.db[l], b.dtype)
            lr = self.lrs[l]
            if mom > 0.0:
                assert self.vW is not None and self.vb is not None
                vW = self.vW[l].reshape(-1)
                vb = self.vb[l].reshape(-1)
                vW *= W.dtype.type(mom)  # v = mom * v + dW + wd * W
                _axpy(dW, vW, 1.0)
                if wd > 0.0:
                    _axpy(W.reshape(-1), vW, wd)
                vb *= b.dtype.type(mom)
                _axpy(db, vb, 1.0)
                _axpy(vW, W.reshape(-1), -lr)
                _axpy(vb, b.reshape(-1), -lr)
            else:
                if wd > 0.0:  # W <- W - lr * (dW + wd * W) = (1 - lr * wd) * W - lr * dW
                    Wf = W.reshape(-1)
                    Wf *= W.dtype.type(1.0 - lr * wd)
                _axpy(dW, W.reshape(-1), -lr)
                _axpy(db, b.reshape(-1), -lr)
        self.n_steps += 1

    def _step_graph(self, net: GraphNetwork, grad: Any) -> None:
        self.check(net)
        params = net.parameters()
        missing = [k for k in params if k not in grad]
        extra = [k for k in grad if k not in params]
        if missing or extra:
            raise ValueError(
                f"gradient names do not match the network's parameters: missing "
                f"{missing or 'none'}, unknown {extra or 'none'}"
            )
        rates = graph_rates(net, self.lrs)
        mom, wd = self.momentum, self.weight_decay
        if mom > 0.0 and self.vP is None:
            self.vP = [np.zeros_like(p) for p in params.values()]
        for i, (name, p) in enumerate(params.items()):
            g = np.asarray(grad[name])
            if g.shape != p.shape:
                raise ValueError(
                    f"parameter {name!r}: gradient shape {g.shape} differs from {p.shape}"
                )
            if not p.flags.c_contiguous:
                raise ValueError(f"parameter {name!r} must be C-contiguous")
            gf = _flat(g, p.dtype)
            pf = p.reshape(-1)
            lr = rates[name]
            decay = wd if not name.endswith(".b") else 0.0
            if mom > 0.0:
                assert self.vP is not None
                v = self.vP[i].reshape(-1)
                v *= p.dtype.type(mom)
                _axpy(gf, v, 1.0)
                if decay > 0.0:
                    _axpy(pf, v, decay)
                _axpy(v, pf, -lr)
            else:
                if decay > 0.0:
                    pf *= p.dtype.type(1.0 - lr * decay)
                _axpy(gf, pf, -lr)
        self.n_steps += 1

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Arrays and numbers that restore this optimizer exactly (for ``.npz`` checkpoints).

        Keys: ``lrs`` (float64 array), ``momentum``, ``weight_decay``, ``n_steps`` (0-d
        arrays) and, once created, ``vW{l}``/``vb{l}`` momentum buffers (copies).
        """
        out: dict[str, Any] = {
            "lrs": np.asarray(self.lrs, dtype=np.float64),
            "momentum": np.asarray(self.momentum, dtype=np.float64),
            "weight_decay": np.asarray(self.weight_decay, dtype=np.float64),
            "n_steps": np.asarray(self.n_steps, dtype=np.int64),
        }
        if self.vW is not None and self.vb is not None:
            for l, (vW, vb) in enumerate(zip(self.vW, self.vb)):
                out[f"vW{l}"] = vW.copy()
                out[f"vb{l}"] = vb.copy()
        if self.vP is not None:
            for i, v in enumerate(self.vP):
                out[f"vP{i}"] = v.copy()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output (buffers are copied, C-contiguous)."""
        self.lrs = _as_rates(np.asarray(state["lrs"]).tolist())
        self.momentum = float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])
        n_steps = np.asarray(state["n_steps"])
        if n_steps.shape != () or n_steps.dtype.kind not in "iu" or int(n_steps) < 0:
            raise ValueError(
                f"optimizer state n_steps is {n_steps.tolist()!r}; expected an integer >= 0"
            )
        self.n_steps = int(n_steps)
        n = sum(1 for k in state if k.startswith("vW"))
        if n:
            self.vW = [np.ascontiguousarray(np.array(state[f"vW{l}"])) for l in range(n)]
            self.vb = [np.ascontiguousarray(np.array(state[f"vb{l}"])) for l in range(n)]
        else:
            self.vW = None
            self.vb = None
        n = sum(1 for k in state if k.startswith("vP"))
        self.vP = [np.ascontiguousarray(np.array(state[f"vP{i}"])) for i in range(n)] or None
