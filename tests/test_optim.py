"""SGD against a hand computation (plain, momentum, weight decay, per-layer rates)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from eqprop.optim import SGD


@dataclass
class _Net:
    weights: list[np.ndarray]
    biases: list[np.ndarray]


@dataclass
class _Grad:
    dW: list[np.ndarray]
    db: list[np.ndarray]


def _net(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    sizes = (4, 3, 2)
    W = [rng.standard_normal((sizes[i], sizes[i + 1])).astype(dtype) for i in range(2)]
    b = [rng.standard_normal(sizes[i + 1]).astype(dtype) for i in range(2)]
    return _Net(W, b)


def _grads(n, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append(
            _Grad(
                [
                    rng.standard_normal((4, 3)).astype(dtype),
                    rng.standard_normal((3, 2)).astype(dtype),
                ],
                [rng.standard_normal(3).astype(dtype), rng.standard_normal(2).astype(dtype)],
            )
        )
    return out


def test_plain_sgd_single_step_by_hand():
    # 1x1 layers: numbers small enough to check with pencil and paper.
    net = _Net([np.array([[2.0]]), np.array([[-1.0]])], [np.array([0.5]), np.array([1.0])])
    g = _Grad([np.array([[4.0]]), np.array([[2.0]])], [np.array([1.0]), np.array([-2.0])])
    SGD([0.1, 0.5]).step(net, g)
    assert net.weights[0][0, 0] == pytest.approx(2.0 - 0.1 * 4.0)
    assert net.weights[1][0, 0] == pytest.approx(-1.0 - 0.5 * 2.0)
    assert net.biases[0][0] == pytest.approx(0.5 - 0.1 * 1.0)
    assert net.biases[1][0] == pytest.approx(1.0 + 0.5 * 2.0)


def test_momentum_and_weight_decay_two_steps_by_hand():
    # W0 = 1, lr = 0.1, mom = 0.9, wd = 0.5, dW = 2 then 1
    # step 1: g = 2 + 0.5*1 = 2.5; v = 2.5; W = 1 - 0.25 = 0.75
    # step 2: g = 1 + 0.5*0.75 = 1.375; v = 0.9*2.5 + 1.375 = 3.625; W = 0.75 - 0.3625 = 0.3875
    # bias (no decay): b0 = 0, db = 1 then 1: v = 1, b = -0.1; v = 1.9, b = -0.29
    net = _Net([np.array([[1.0]])], [np.array([0.0])])
    opt = SGD([0.1], momentum=0.9, weight_decay=0.5)
    opt.step(net, _Grad([np.array([[2.0]])], [np.array([1.0])]))
    assert net.weights[0][0, 0] == pytest.approx(0.75, abs=1e-15)
    assert net.biases[0][0] == pytest.approx(-0.1, abs=1e-15)
    opt.step(net, _Grad([np.array([[1.0]])], [np.array([1.0])]))
    assert net.weights[0][0, 0] == pytest.approx(0.3875, abs=1e-15)
    assert net.biases[0][0] == pytest.approx(-0.29, abs=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("mom", "wd"), [(0.0, 0.0), (0.0, 1e-2), (0.9, 0.0), (0.5, 1e-3)])
def test_matches_reference_loop(dtype, mom, wd):
    """Several steps on random arrays vs. a float64 loop written from the formula."""
    net = _net(dtype)
    lrs = [0.1, 0.05]
    ref_W = [W.astype(np.float64) for W in net.weights]
    ref_b = [b.astype(np.float64) for b in net.biases]
    vW = [np.zeros_like(W) for W in ref_W]
    vb = [np.zeros_like(b) for b in ref_b]
    ids = [id(W) for W in net.weights]
    opt = SGD(lrs, momentum=mom, weight_decay=wd)
    for g in _grads(5, dtype):
        opt.step(net, g)
        for l in range(2):
            gW = g.dW[l].astype(np.float64) + wd * ref_W[l]
            gb = g.db[l].astype(np.float64)
            vW[l] = mom * vW[l] + gW
            vb[l] = mom * vb[l] + gb
            ref_W[l] = ref_W[l] - lrs[l] * vW[l]
            ref_b[l] = ref_b[l] - lrs[l] * vb[l]
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for l in range(2):
        assert net.weights[l].dtype == dtype
        assert net.weights[l].flags.c_contiguous
        np.testing.assert_allclose(net.weights[l], ref_W[l], rtol=tol, atol=tol)
        np.testing.assert_allclose(net.biases[l], ref_b[l], rtol=tol, atol=tol)
    assert [id(W) for W in net.weights] == ids  # updated in place


def test_state_dict_roundtrip_continues_identically():
    grads = _grads(6)
    a = _net()
    opt_a = SGD([0.1, 0.2], momentum=0.8, weight_decay=1e-2)
    for g in grads[:3]:
        opt_a.step(a, g)
    state = opt_a.state_dict()
    b = _Net([W.copy() for W in a.weights], [x.copy() for x in a.biases])
    opt_b = SGD([1.0, 1.0])
    opt_b.load_state_dict({k: np.asarray(v) for k, v in state.items()})
    for g in grads[3:]:
        opt_a.step(a, g)
        opt_b.step(b, g)
    for l in range(2):
        np.testing.assert_array_equal(a.weights[l], b.weights[l])
        np.testing.assert_array_equal(a.biases[l], b.biases[l])
    assert opt_b.n_steps == 6


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="momentum"):
        SGD([0.1], momentum=1.0)
    with pytest.raises(ValueError, match="weight decay"):
        SGD([0.1], weight_decay=-1)
    with pytest.raises(ValueError, match="learning rate"):
        SGD([0.1, float("nan")])
    with pytest.raises(ValueError, match="2 weight layer"):
        SGD([0.1]).step(_net(), _grads(1)[0])


@pytest.mark.parametrize("n_steps", [-1, 1.5, [1, 2]])
def test_load_state_dict_rejects_a_bad_step_count(n_steps):
    opt = SGD([0.1])
    state = opt.state_dict()
    state["n_steps"] = np.asarray(n_steps)
    with pytest.raises(ValueError, match="n_steps"):
        opt.load_state_dict(state)
