"""EP training of a dense tied chain on the CUDA backend: the GPU path of the Trainer.

``Trainer(config)`` with ``config.run.device == "cuda"`` (``eqprop train --device
cuda``) runs its epochs through :class:`DeviceRun`: the training inputs, one-hot
targets, labels, persistent particles, the parameters and the optimizer's momentum
buffers are uploaded once and live on the device for the whole run. Each minibatch is

1. gathered on the device (``X[idx]``; the permutation is the CPU trainer's, drawn from
   the same generator);
2. the free phase and the rule's nudged phase(s) (:func:`eqprop.gpu.dense.device_phase`:
   damped Picard, the fused iterates or Gauss-Seidel sweeps), from the free state;
3. the EP estimate (:func:`ep_gradient`, the contrast of
   :func:`eqprop.network.contrast_gradient`):
   :math:`\\widehat{\\nabla}_\\theta = \\sum_k c_k\\,\\partial F/\\partial\\theta(s_k,
   \\beta_k)`, with :math:`\\partial F/\\partial W_l = -\\rho(s_{l-1})^\\top\\rho(s_l)/B`,
   :math:`\\partial F/\\partial b_l = -\\overline{\\rho(s_l)}` (Hopfield kind; the
   prototypical kind uses :math:`s`; :math:`\\rho(s_0) = x`), and ``(c, beta)`` those of
   :class:`eqprop.rules.EquilibriumPropagation` (one-sided
   :math:`(-1/\\beta, 1/\\beta)` at :math:`(0, \\beta)`, random-sign, and symmetric /
   centered :math:`(-1/2\\beta, 1/2\\beta)` at :math:`(-\\beta, \\beta)`, Scellier &
   Bengio 2017; Laborieux et al. 2021);
4. the SGD update of :class:`eqprop.optim.SGD` (per-layer rates, heavy-ball momentum,
   weight decay on the weights), as device array operations.

Only metrics come back per minibatch (the batch's cost and error count, and the phases'
per-sample flags and iteration counts); parameters, momentum buffers and particles come
back once per epoch (for the evaluation, the checkpoint and the non-finite check). The
evaluation's free phases also run on the device (their states come back: the evaluation
reads the outputs). A phase that fails raises the CPU trainer's error (the failed
phase's state is fetched then).

A conv architecture (a :class:`~eqprop.graph.model.GraphNetwork` with ``conv2d``
couplings) runs through :class:`GraphDeviceRun`: the phases of :mod:`eqprop.gpu.graph`,
the estimate :func:`graph_parameter_gradient`, the update :class:`GraphDeviceSGD`.

The arithmetic is the CPU trainer's (same iterates, same products up to summation order):
``tests/test_gpu_sim.py`` checks one and several training steps against
:class:`eqprop.train.Trainer` to 1e-12 in float64 and 2e-5 in float32 under Numba's CUDA
simulator with the NumPy stand-in.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from eqprop.gpu import kernels as GK
from eqprop.gpu.backend import ArrayBackend, get_backend
from eqprop.gpu.dense import DeviceChain, DeviceParams, DevicePhase, device_phase, run_phase
from eqprop.phases import Dynamics, Phase

__all__ = [
    "DeviceRun",
    "DeviceSGD",
    "ep_estimate",
    "ep_gradient",
    "ep_plan_coefficients",
    "mixed_precision_cosines",
]

_DIVERGENCE_BOUND = 1e8


def ep_plan_coefficients(phases: dict[str, Any], estimator: str):
    """``(states, betas, coeffs)`` of the EP estimate from the phases by name, as
    :meth:`eqprop.rules.EquilibriumPropagation.combine`: symmetric
    ``(s-, s+), (-b, b), (-1/2b, 1/2b)``; otherwise ``(s0, sb), (0, b), (-1/b, 1/b)``."""
    if estimator == "symmetric":
        p, m = phases["nudged+"], phases["nudged-"]
        diff = p.beta - m.beta
        return [m.state, p.state], [m.beta, p.beta], [-1.0 / diff, 1.0 / diff]
    (n,) = [p for name, p in phases.items() if name != "free"]
    return [phases["free"].state, n.state], [0.0, n.beta], [-1.0 / n.beta, 1.0 / n.beta]


def _activities(be: ArrayBackend, net_kind: int, act: int, s):
    """:math:`\\rho(s)` (Hopfield kind, a device kernel) or ``s`` (prototypical)."""
    if net_kind != 0:
        return s
    a = be.empty(s.shape, s.dtype)
    GK.launch(GK.activities_kernel, a.size, s, a, act)
    return a


def ep_gradient(chain: DeviceChain, xd, states, coeffs):
    """:math:`\\sum_k c_k\\,\\partial F/\\partial\\theta(s_k)` on the device, averaged over
    the batch (squared cost: the nudge term has no parameter gradient), as
    ``eqprop.network._contrast``: layer 1 ``x^T (sum_k c_k a_1^k)``, deeper layers one
    product over the states stacked along the batch; ``-1/B`` folded into the
    coefficients.

    Returns
    -------
    (dW, db) : lists of device arrays shaped like the parameters (the network's dtype).
    """
    be, dt, off = chain.be, chain.dt, chain.off
    xp = be.xp
    B = int(xd.shape[0])
    cs = np.asarray(coeffs, dtype=dt) * dt.type(-1.0 / B)
    A = [_activities(be, chain.kind, chain.act, s) for s in states]
    dW, db = [], []
    for l in range(1, len(off)):
        cols = slice(off[l - 1], off[l])
        if l == 1:
            csum = cs[0] * A[0][:, cols]
            for k in range(1, len(A)):
                csum += cs[k] * A[k][:, cols]
            dW.append(be.matmul(xd.T, csum))
            db.append(csum.sum(axis=0))
        else:
            below = slice(off[l - 2], off[l - 1])
            prev = xp.concatenate([a[:, below] for a in A], axis=0)
            cl = xp.concatenate([cs[k] * A[k][:, cols] for k in range(len(A))], axis=0)
            dW.append(be.matmul(prev.T, cl))
            db.append(cl.sum(axis=0))
    return dW, db


class DeviceSGD:
    """:class:`eqprop.optim.SGD`'s update on device arrays (same formulas, the
    parameters' dtype): ``v = m v + dW + wd W``, ``W -= lr v`` (momentum), or
    ``W = (1 - lr wd) W - lr dW``; biases undecayed. Momentum buffers start from the
    host optimizer's (a resumed run) or zeros; :meth:`to_host` writes them back."""

    def __init__(self, opt: Any, params: DeviceParams):
        self.opt = opt
        self.params = params
        be = params.be
        self.vW = self.vb = None
        if opt.momentum > 0.0 and opt.vW is not None:
            self.vW = [be.to_device(v) for v in opt.vW]
            self.vb = [be.to_device(v) for v in opt.vb]

    def step(self, dW, db) -> None:
        p, opt = self.params, self.opt
        dt = p.dtype.type
        mom, wd = opt.momentum, opt.weight_decay
        if mom > 0.0 and self.vW is None:
            xp = p.be.xp
            self.vW = [xp.zeros_like(W) for W in p.W]
            self.vb = [xp.zeros_like(b) for b in p.b]
        for l, (W, b) in enumerate(zip(p.W, p.b)):
            lr = dt(opt.lrs[l])
            if mom > 0.0:
                assert self.vW is not None and self.vb is not None
                vW, vb = self.vW[l], self.vb[l]
                vW *= dt(mom)
                vW += dW[l]
                if wd > 0.0:
                    vW += dt(wd) * W
                vb *= dt(mom)
                vb += db[l]
                W -= lr * vW
                b -= lr * vb
            else:
                if wd > 0.0:
                    W *= dt(1.0 - opt.lrs[l] * wd)
                W -= lr * dW[l]
                b -= lr * db[l]
        opt.n_steps += 1

    def to_host(self) -> None:
        """The momentum buffers into the host optimizer (for checkpoints)."""
        if self.vW is not None and self.vb is not None:
            be = self.params.be
            self.opt.vW = [np.ascontiguousarray(be.to_host(v)) for v in self.vW]
            self.opt.vb = [np.ascontiguousarray(be.to_host(v)) for v in self.vb]


def _failed(ph: DevicePhase) -> np.ndarray:
    """:func:`eqprop.train.failed_samples` of a device phase, from its host flags (the
    result flags non-finite states; the fused result's last residual above the bound)."""
    res = ph.result
    bad = np.asarray(res.failed, dtype=bool).copy()
    if str(res.method).startswith("fused"):
        B = bad.shape[0]
        last = np.asarray(res.residual)[np.asarray(res.n_iter) - 1, np.arange(B)]
        bad |= ~(last <= _DIVERGENCE_BOUND)
    return bad


class DeviceRun:
    """The device half of a :class:`eqprop.train.Trainer` with ``device="cuda"``.

    Parameters
    ----------
    trainer : eqprop.train.Trainer
        After its data, network, rule, optimizer and particles are set up (and a
        checkpoint restored): they are uploaded here.
    backend : {"cupy", "numpy"} or ArrayBackend
        ``"cupy"`` on a GPU; ``"numpy"`` the tests' stand-in (with the CUDA simulator).
    """

    def __init__(self, trainer: Any, backend: str | ArrayBackend = "cupy"):
        be = self.be = get_backend(backend)
        self.net = trainer.net
        self.params: Any = DeviceParams(trainer.net, be)
        self.sgd: Any = DeviceSGD(trainer.optimizer, self.params)
        self._upload_data(trainer)
        self._chains: dict[tuple[str, float], DeviceChain] = {}

    def chain(self, dyn: Dynamics) -> DeviceChain:
        """The device map for ``dyn``'s nudge placement and ``eps`` (cached)."""
        key = (dyn.nudge, float(dyn.eps))
        if key not in self._chains:
            self._chains[key] = DeviceChain(self.net, self.params, dyn.nudge, dyn.eps)
        return self._chains[key]

    def _upload_data(self, trainer: Any) -> None:
        """The trainer's training inputs, targets, labels and particles onto the device."""
        be = self.be
        self.X = be.to_device(trainer.x_train)
        self.D = be.to_device(trainer.d_train)
        self.Y = be.to_device(trainer.y_train)
        self.particles = None if trainer.particles is None else be.to_device(trainer.particles)

    # ------------------------------------------------------------------ host sync
    def to_host(self, trainer: Any) -> None:
        """Parameters, momentum buffers and particles into the trainer's host arrays."""
        self._parameters_to_host(trainer)
        self.sgd.to_host()
        if self.particles is not None:
            trainer.particles[...] = self.be.to_host(self.particles)

    def _parameters_to_host(self, trainer: Any) -> None:
        """The device parameters into the trainer's network."""
        self.params.to_network(trainer.net)

    def eval_free_phase(self, net: Any, x, dyn: Dynamics, s0=None) -> Phase:
        """The trainer's evaluation free phase on the device parameters (host result)."""
        if net is not self.net:
            raise ValueError("DeviceRun evaluates its own trainer's network only")
        return run_phase(net, x, dyn, beta=0.0, s0=s0, steps=dyn.T, params=self.params)

    @property
    def out_cols(self) -> tuple[int, int]:
        """State columns ``[a, b)`` of the output layer."""
        net = self.net
        if hasattr(net, "output_layer"):  # a graph network
            a, b = net.offsets[net.output_layer.name]
            return int(a), int(b)
        return int(net.n_state - net.n_out), int(net.n_state)

    def _phase(self, chain, s, dyn: Dynamics, n_steps: int) -> DevicePhase:
        """One phase of ``chain`` from the device state ``s``."""
        return device_phase(chain, s, dyn, n_steps)

    # ------------------------------------------------------------------ one step
    def step(self, idx_d, dyn: Dynamics, free_dyn: Dynamics, rule: Any, rng: Any):
        """One EP training step on the minibatch ``idx_d`` (device indices); returns the
        phases by name (device states) and the device scalars (cost sum, errors)."""
        be = self.be
        xp = be.xp
        x = self.X[idx_d]
        d = self.D[idx_d]
        B = int(x.shape[0])
        if self.particles is not None:
            s = self.particles[idx_d]
        else:
            s = be.zeros((B, self.net.n_state), self.net.dtype)
        fchain = self.chain(free_dyn)
        fchain.set_input(x, d, 0.0)
        free = self._phase(fchain, s, free_dyn, free_dyn.T)
        phases: dict[str, DevicePhase] = {"free": free}
        for spec in rule.plan(rng):
            chain = self.chain(dyn)
            if chain is fchain:  # same map: the input drive is the free phase's
                chain.set_beta(spec.beta)
            else:
                chain.set_input(x, d, spec.beta)
            ph = self._phase(chain, free.state.copy(), dyn, dyn.K)
            phases[spec.name] = ph._replace(beta=spec.beta)
        if self.particles is not None:
            self.particles[idx_d] = free.state
        a, b = self.out_cols
        out = free.state[:, a:b]
        err = out - d
        cost = 0.5 * (err * err).sum(axis=1)
        wrong = (xp.argmax(out, axis=1) != self.Y[idx_d]).sum()
        return phases, x, cost, wrong

    def update(self, x, phases: dict[str, DevicePhase], estimator: str) -> None:
        """The EP estimate of the phases and the SGD step, on the device."""
        states, _, coeffs = ep_plan_coefficients(phases, estimator)
        chain = next(iter(self._chains.values()))
        dW, db = ep_gradient(chain, x, states, coeffs)
        self.sgd.step(dW, db)

    # ------------------------------------------------------------------ one epoch
    def train_epoch(self, trainer: Any) -> dict[str, float]:
        """:meth:`eqprop.train.Trainer.train_epoch` on the device (same order of draws,
        same measurements, same errors)."""
        from eqprop.train import epoch_measurements, loss_diverged, non_finite_parameter_error

        be = self.be
        c = trainer.config
        n = trainer.x_train.shape[0]
        bs = c.run.batch_size
        n_batches = (n + bs - 1) // bs
        perm = trainer.rng.permutation(n) if c.run.shuffle else np.arange(n)
        wrong = 0
        loss_sum = 0.0
        conv = iters = nudged_conv = nudged_total = 0
        dyn, rule, rng = trainer.dyn, trainer.rule, trainer.rng
        free_dyn = trainer._epoch_free_dynamics()
        estimator = rule.estimator
        trainer.progress.start_epoch(trainer.epoch + 1, trainer._target_epochs, n_batches)
        t0 = time.perf_counter()
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            idx_d = be.to_device(np.ascontiguousarray(idx, dtype=np.int64))
            phases, x, cost, n_wrong = self.step(idx_d, dyn, free_dyn, rule, rng)
            for name, ph in phases.items():
                bad = _failed(ph)
                if bad.any():
                    self.to_host(trainer)
                    raise trainer._phase_failure(name, ph.to_host(be), bad, start)
            summary = be.to_host(
                be.xp.stack([cost.mean(dtype=np.float64), n_wrong.astype(np.float64)])
            )
            loss = float(summary[0])
            if not math.isfinite(loss):
                self.to_host(trainer)
                raise loss_diverged(c, trainer.epoch, start, n, loss)
            self.update(x, phases, estimator)
            wrong += int(summary[1])
            loss_sum += loss * idx.shape[0]
            res = phases["free"].result
            conv += int(np.count_nonzero(res.converged))
            iters += int(res.n_iter.sum())
            for name, ph in phases.items():
                if name != "free":
                    nudged_conv += int(np.count_nonzero(ph.result.converged))
                    nudged_total += int(ph.state.shape[0])
            trainer.progress.update()
        be.synchronize()
        t_train = time.perf_counter() - t0
        self.to_host(trainer)
        bad_params = trainer._non_finite_parameters()
        if bad_params:
            raise non_finite_parameter_error(c, trainer.epoch, n, bad_params)
        return epoch_measurements(
            n, wrong, loss_sum, conv, iters, nudged_conv, nudged_total, t_train
        )


def ep_estimate(
    net: Any,
    x: np.ndarray,
    d: np.ndarray,
    dyn: Dynamics,
    free_dyn: Dynamics,
    specs,
    estimator: str,
    backend: str | ArrayBackend,
) -> np.ndarray:
    """One EP estimate (no update) of the dense chain ``net`` on the batch ``(x, d)``
    on ``backend`` (its ``products`` setting included): the free phase from zero, the
    phases ``specs`` (``rule.plan(...)``'s PhaseSpecs, from the free state), the
    estimate of :func:`ep_gradient`; returned flattened on the host (float64,
    ``dW_1, ..., db_1, ...``)."""
    be = get_backend(backend)
    params = DeviceParams(net, be)
    xd, dd = be.to_device(x), be.to_device(d)
    chain = DeviceChain(net, params, free_dyn.nudge, free_dyn.eps)
    chain.set_input(xd, dd, 0.0)
    s = be.zeros((x.shape[0], net.n_state), net.dtype)
    free = device_phase(chain, s, free_dyn, free_dyn.T)
    phases: dict[str, DevicePhase] = {"free": free}
    nchain = DeviceChain(net, params, dyn.nudge, dyn.eps)
    for spec in specs:
        nchain.set_input(xd, dd, spec.beta)
        ph = device_phase(nchain, free.state.copy(), dyn, dyn.K)
        phases[spec.name] = ph._replace(beta=spec.beta)
    states, _, coeffs = ep_plan_coefficients(phases, estimator)
    dW, db = ep_gradient(chain, xd, states, coeffs)
    return np.concatenate([np.asarray(be.to_host(g), np.float64).ravel() for g in dW + db])


def mixed_precision_cosines(
    net: Any,
    x: np.ndarray,
    d: np.ndarray,
    dyn: Dynamics,
    free_dyn: Dynamics,
    specs,
    estimator: str,
    backend: str | ArrayBackend,
    products=("float16", "bfloat16"),
) -> dict[str, float]:
    """Cosine of the EP estimate with 16-bit matmul operands (``products``; float32 state
    and accumulation, :func:`eqprop.gpu.backend.round_operand`) to the float32 estimate,
    on one fixed batch: :math:`\\cos = \\langle g_{16}, g_{32}\\rangle /
    (\\|g_{16}\\|\\,\\|g_{32}\\|)` over all parameters. ``net`` must be float32."""
    if np.dtype(net.dtype) != np.float32:
        raise ValueError(f"mixed precision is measured against float32, got {net.dtype}")
    be = get_backend(backend)
    ref = ep_estimate(net, x, d, dyn, free_dyn, specs, estimator, be)
    out = {}
    for p in products:
        g = ep_estimate(net, x, d, dyn, free_dyn, specs, estimator, be.with_products(p))
        out[p] = float(g @ ref / (np.linalg.norm(g) * np.linalg.norm(ref)))
    return out


# ----------------------------------------------------------------------------- conv graphs
def graph_parameter_gradient(gmap: Any, xd, states, coeffs) -> dict[str, Any]:
    """:math:`\\sum_k c_k\\,\\partial F/\\partial\\theta(s_k)` of a conv graph network by
    parameter name, on the device (batch mean), as the CPU path's
    :meth:`eqprop.graph.conv_kernels.FastMap.parameter_gradient` combined by
    :func:`eqprop.graph.gradient.contrast`: a coupling's ``W`` gets
    :math:`-\\overline{a_{src}^\\top a_{dst}}` (dense) or the conv weight gradient; a
    layer's bias :math:`-\\overline{a}` (summed over each channel's positions for a
    per-channel bias). Squared cost: the nudge has no parameter gradient."""
    from eqprop.gpu.conv import DeviceConv2d

    net, be = gmap.net, gmap.be
    dt = gmap.dt.type
    grads: dict[str, Any] = {}
    for k, (s, ck) in enumerate(zip(states, coeffs)):
        acts = gmap.activities(s)
        c_k = dt(ck)
        terms: dict[str, Any] = {}
        for c, op, *_ in gmap.input_ops + gmap.inner_ops:
            a_src, a_dst = acts[c.source], acts[c.target]
            if isinstance(op, DeviceConv2d):
                terms[f"{c.name}.W"] = op.weight_gradient(a_src, a_dst)
            else:
                terms[f"{c.name}.W"] = -be.matmul(a_src.T, a_dst) / dt(a_src.shape[0])
        for la in net.state_layers:
            if la.bias is not None:
                per_unit = -acts[la.name].mean(axis=0)
                if la.channel_bias:
                    per_unit = per_unit.reshape(la.shape[0], -1).sum(axis=1)
                terms[f"{la.name}.b"] = per_unit
        for name, g in terms.items():
            grads[name] = c_k * g if k == 0 else grads[name] + c_k * g
    return grads


class GraphDeviceSGD:
    """:class:`eqprop.optim.SGD`'s graph update (``_step_graph``) on device arrays by
    parameter name: rates by :func:`eqprop.optim.graph_rates`, weight decay on the
    coupling matrices only, heavy-ball momentum buffers in the host optimizer's order."""

    def __init__(self, opt: Any, net: Any, params: dict[str, Any], be: ArrayBackend):
        from eqprop.optim import graph_rates

        self.opt, self.params, self.be = opt, params, be
        self.rates = graph_rates(net, opt.lrs)
        self.vP = None
        if opt.momentum > 0.0 and opt.vP is not None:
            self.vP = [be.to_device(v) for v in opt.vP]

    def step(self, grads: dict[str, Any]) -> None:
        opt = self.opt
        mom, wd = opt.momentum, opt.weight_decay
        if mom > 0.0 and self.vP is None:
            self.vP = [self.be.xp.zeros_like(p) for p in self.params.values()]
        for i, (name, p) in enumerate(self.params.items()):
            dt = p.dtype.type
            lr = self.rates[name]
            decay = wd if not name.endswith(".b") else 0.0
            g = grads[name]
            if mom > 0.0:
                assert self.vP is not None
                v = self.vP[i]
                v *= dt(mom)
                v += g
                if decay > 0.0:
                    v += dt(decay) * p
                p -= dt(lr) * v
            else:
                if decay > 0.0:
                    p *= dt(1.0 - lr * decay)
                p -= dt(lr) * g
        opt.n_steps += 1

    def to_host(self) -> None:
        if self.vP is not None:
            self.opt.vP = [np.ascontiguousarray(self.be.to_host(v)) for v in self.vP]


class GraphDeviceRun(DeviceRun):
    """:class:`DeviceRun` for a conv graph network (:mod:`eqprop.gpu.graph`): the phases
    run the CPU conv fast path's iteration (Picard or whole-layer sweeps), the estimate is
    :func:`graph_parameter_gradient`, the update :class:`GraphDeviceSGD`."""

    def __init__(self, trainer: Any, backend: str | ArrayBackend = "cupy"):
        from eqprop.gpu.graph import DeviceGraphMap

        be = self.be = get_backend(backend)
        self.net = net = trainer.net
        # one device map per (nudge, eps), sharing one set of device parameters
        self._maps: dict[tuple[str, float], Any] = {}
        first = DeviceGraphMap(net, be, trainer.dyn.nudge, trainer.dyn.eps)
        self.params = first.params
        self._maps[(trainer.dyn.nudge, float(trainer.dyn.eps))] = first
        self.sgd = GraphDeviceSGD(trainer.optimizer, net, self.params, be)
        self._upload_data(trainer)
        self._chains = {}

    def chain(self, dyn: Dynamics):  # type: ignore[override]
        from eqprop.gpu.graph import DeviceGraphMap

        key = (dyn.nudge, float(dyn.eps))
        if key not in self._maps:
            self._maps[key] = DeviceGraphMap(self.net, self.be, dyn.nudge, dyn.eps, self.params)
        return self._maps[key]

    def _phase(self, gmap, s, dyn: Dynamics, n_steps: int) -> DevicePhase:
        from eqprop.gpu.graph import phase_dynamics

        return device_phase(gmap, s, phase_dynamics(dyn), n_steps)

    def _parameters_to_host(self, trainer: Any) -> None:
        """The device parameters into the graph network's named host arrays."""
        host = trainer.net.parameters()
        for name, p in self.params.items():
            host[name][...] = self.be.to_host(p)

    def eval_free_phase(self, net: Any, x, dyn: Dynamics, s0=None) -> Phase:
        from eqprop.gpu.graph import run_phase as graph_run_phase

        if net is not self.net:
            raise ValueError("GraphDeviceRun evaluates its own trainer's network only")
        return graph_run_phase(net, x, dyn, s0=s0, steps=dyn.T, gmap=self.chain(dyn))

    def update(self, x, phases: dict[str, DevicePhase], estimator: str) -> None:
        states, _, coeffs = ep_plan_coefficients(phases, estimator)
        gmap = next(iter(self._maps.values()))
        self.sgd.step(graph_parameter_gradient(gmap, x, states, coeffs))
