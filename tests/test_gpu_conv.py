"""The conv2d / pool coupling on the CUDA backend's arrays equals the CPU reference
(issue #17): :class:`eqprop.gpu.conv.DeviceConv2d` on the NumPy stand-in of the array
backend against :mod:`eqprop.graph.conv` (an independent route: sliding-window views,
``bincount`` scatter), float64 to 1e-12; the same code runs on CuPy
(``tests/test_gpu_device.py`` checks it there). No simulator needed: no CUDA kernel."""

from __future__ import annotations

import numpy as np
import pytest

from eqprop.gpu.conv import DeviceConv2d
from eqprop.graph import Coupling, GraphNetwork, Layer
from eqprop.graph import conv as CV
from eqprop.graph.conv import ConvSpec

GEOMETRIES = [
    # C_in, H, W, C_out, kh, kw, stride, pad, pool, pool size, pool stride
    (2, 7, 5, 3, 3, 2, 2, 1, None, 2, None),  # odd sizes, stride, padding, rectangular
    (1, 6, 6, 2, 3, 3, 1, 0, "max", 2, None),
    (3, 9, 7, 2, 2, 3, 1, 2, "avg", 2, None),
    (2, 8, 7, 3, 3, 3, 1, 1, "max", 3, 2),  # overlapping max windows, odd conv output
    (2, 9, 9, 2, 5, 5, 2, 2, "avg", 3, 1),
]


def _coupling(geom, rng, feedback="tied"):
    cin, H, Wd, cout, kh, kw, stride, pad, pool, psz, pst = geom
    spec = ConvSpec(stride=stride, padding=pad, pool=pool, pool_size=psz, pool_stride=pst)
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (Wd + 2 * pad - kw) // stride + 1
    if pool is not None:
        step = psz if pst is None else pst
        Ho, Wo = (Ho - psz) // step + 1, (Wo - psz) // step + 1
    dst = Layer("b", role="output", shape=(cout, Ho, Wo))
    W = rng.normal(size=(cout, cin, kh, kw))
    if feedback == "tied":
        src = Layer("a", role="input", shape=(cin, H, Wd))
        c = Coupling("a", "b", W, type="conv2d", conv=spec)
        net = GraphNetwork([src, dst], [c])
        return net.couplings[0], net.layer("a"), net.layer("b")
    # scaled feedback needs a hidden source layer
    src = Layer("a", shape=(cin, H, Wd))
    inp = Layer("i", size=2, role="input")
    c = Coupling("a", "b", W, type="conv2d", conv=spec, feedback="scaled", gamma=0.7)
    feed = Coupling("i", "a", rng.normal(size=(2, cin * H * Wd)))
    net = GraphNetwork([inp, src, dst], [feed, c])
    return net.couplings[1], net.layer("a"), net.layer("b")


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_conv_coupling_on_the_stand_in_equals_the_cpu_reference(geom):
    rng = np.random.default_rng(1)
    c, src, dst = _coupling(geom, rng)
    B = 3
    x = rng.normal(size=(B, src.size))
    y = rng.normal(size=(B, dst.size))
    dev = DeviceConv2d(c, "numpy")
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dev.forward_drive(x), CV.forward_drive(c, x), **tol)
    np.testing.assert_allclose(dev.feedback_drive(y, x), CV.feedback_drive(c, y, x), **tol)
    np.testing.assert_allclose(dev.energy_term(x, y), CV.energy_term(c, x, y), **tol)
    np.testing.assert_allclose(dev.weight_gradient(x, y), CV.weight_gradient(c, x, y), **tol)
    assert dev.feedback_drive(y, x).shape == (B, src.size)


def test_max_pool_ties_route_to_the_first_position_and_scaled_feedback():
    """Blank images tie every window: the first position wins, as on the CPU."""
    rng = np.random.default_rng(2)
    c, src, dst = _coupling(GEOMETRIES[3], rng, feedback="scaled")
    x = np.zeros((2, src.size))
    y = rng.normal(size=(2, dst.size))
    dev = DeviceConv2d(c, "numpy")
    np.testing.assert_allclose(dev.feedback_drive(y, x), CV.feedback_drive(c, y, x), atol=1e-12)
    np.testing.assert_allclose(dev.weight_gradient(x, y), CV.weight_gradient(c, x, y), atol=1e-12)


def test_the_comparison_can_fail_and_bad_use_raises():
    rng = np.random.default_rng(3)
    c, src, dst = _coupling(GEOMETRIES[1], rng)
    x = rng.normal(size=(2, src.size))
    y = rng.normal(size=(2, dst.size))
    dev = DeviceConv2d(c, "numpy")
    dev.W = dev.W.copy()
    dev.W[0, 0, 0, 0] += 1e-6  # the device weight is what the maps use
    assert np.abs(dev.forward_drive(x) - CV.forward_drive(c, x)).max() > 1e-8
    with pytest.raises(ValueError, match="needs the source activity"):
        dev.feedback_drive(y)
    dense = Coupling("a", "b", np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not a conv2d coupling"):
        DeviceConv2d(dense, "numpy")
