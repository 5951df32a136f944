"""The fast conv path (eqprop.graph.conv_kernels) against the NumPy reference (float64).

Independent route: eqprop.graph.reference / eqprop.graph.conv (allocating NumPy,
tested against naive loops in test_couplings_conv.py). Every geometry the reference
supports: stride, padding, odd and rectangular sizes, rectangular kernels, overlapping
max windows, average and no pooling, conv from the input and between hidden layers, a
dense skip, both kinds, every nudge, both costs.
"""

import numpy as np
import pytest

from eqprop.graph import Coupling, GraphNetwork, Layer
from eqprop.graph import conv_kernels as FK
from eqprop.graph import conv_loops as CL
from eqprop.graph import reference as R
from eqprop.graph.conv import ConvSpec, conv_output_hw
from eqprop.graph.pool import pool_output_hw

TOL = 1e-12

# (kernel (kh, kw), stride, padding, pool, pool_size, pool_stride) for the two conv layers
GEOMS = {
    "stride2-pad1-maxoverlap/avg": [((3, 2), 2, 1, "max", 2, 1), ((2, 2), 1, 0, "avg", 2, None)],
    "pad2-nopool/max": [((3, 3), 1, 2, None, 2, None), ((3, 2), 2, 1, "max", 2, None)],
    "5x5-max/max (P-conv-like)": [((5, 5), 1, 0, "max", 2, None), ((3, 3), 1, 1, "max", 2, None)],
}


def make_net(
    geom, kind="prototypical", cost="squared", act="hardsigmoid", skip=True, seed=0, gamma=None
):
    rng = np.random.default_rng(seed)
    shape = (2, 11, 9)
    layers = [Layer("x", role="input", shape=shape)]
    couplings = []
    box = (0.0, 1.0) if act == "hardsigmoid" else None
    for n, (k, s, p, pool, ps, pst) in enumerate(geom):
        hw = conv_output_hw(shape[1:], k, s, p)
        if pool is not None:
            hw = pool_output_hw(hw, ps, ps if pst is None else pst)
        new = (3 + n, *hw)
        name = f"h{n + 1}"
        bias = rng.normal(0, 0.3, new[0]) if n == 0 else rng.normal(0, 0.3, int(np.prod(new)))
        layers.append(Layer(name, activation=act, box=box, bias=bias, shape=new))
        W = rng.normal(0, 0.5, (new[0], shape[0], *k))
        spec = ConvSpec(stride=s, padding=p, pool=pool, pool_size=ps, pool_stride=pst)
        fb = {} if (gamma is None or n == 0) else {"feedback": "scaled", "gamma": gamma}
        couplings.append(Coupling(layers[-2].name, name, W, type="conv2d", conv=spec, **fb))
        shape = new
    out_act = "identity" if cost == "cross-entropy" else act
    layers.append(
        Layer(
            "y",
            4,
            role="output",
            activation=out_act,
            box=None if out_act == "identity" else box,
            bias=rng.normal(0, 0.3, 4),
        )
    )
    couplings.append(Coupling("h2", "y", rng.normal(0, 0.5, (int(np.prod(shape)), 4))))
    if skip:
        n1 = int(np.prod(layers[1].shape))
        couplings.append(Coupling("h1", "y", rng.normal(0, 0.3, (n1, 4))))
    return GraphNetwork(layers, couplings, kind=kind, cost=cost, dtype="float64")


def batch_data(net, B=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (B, net.n_in))
    s = rng.uniform(-0.2, 1.2, (B, net.n_state))
    d = np.eye(net.n_out)[rng.integers(0, net.n_out, B)]
    return x, s, d


def blank_regions(net, x, s):
    """Zero the top half of every conv source image (input, hidden) and all of sample 0:
    the convolutions there are exactly 0, so max-pool windows tie and the routing's tie
    rule (first position) decides where the feedback goes."""
    x, s = x.copy(), s.copy()
    for name, arr in [("x", x)] + [(k, v) for k, v in net.split(s).items()]:
        la = net.layer(name)
        if not any(c.source == name and c.type == "conv2d" for c in net.couplings):
            continue  # a conv target keeps its values: they are what gets routed
        img = arr.reshape(arr.shape[0], *la.shape)
        img[:, :, : la.shape[1] // 2 + 1, :] = 0.0
        img[0] = 0.0  # sample 0: every window of every convolution ties
    return x, s


def _max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.mark.parametrize("geom", list(GEOMS), ids=list(GEOMS))
@pytest.mark.parametrize(
    ("kind", "cost", "nudge", "beta"),
    [
        ("prototypical", "squared", "inside", 0.0),
        ("prototypical", "squared", "inside", 0.7),
        ("prototypical", "squared", "outside", 0.4),
        ("prototypical", "cross-entropy", "inside", 0.5),
        ("hopfield", "squared", "inside", 0.3),
        ("hopfield", "squared", "clamp", 0.0),
        ("prototypical", "squared", "clamp", 0.0),
    ],
)
def test_fast_map_and_field_equal_the_reference(geom, kind, cost, nudge, beta):
    act = "hardsigmoid" if kind != "hopfield" else "sigmoid"
    net = make_net(GEOMS[geom], kind=kind, cost=cost, act=act)
    x, s, d = batch_data(net)
    fm = FK.FastMap(net, x.shape[0])
    fm.set_input(x)
    dd = d if (beta != 0 or nudge == "clamp") else None
    ref = R.fixed_point_map(net, x, s, dd, beta, eps=0.3, nudge=nudge)
    got = fm.map(s, beta=beta, d=dd, eps=0.3, nudge=nudge)
    assert _max_abs(got, ref) <= TOL * max(1.0, np.abs(ref).max())
    ref_f = R.vector_field(net, x, s, dd, beta, eps=0.3, nudge=nudge)
    got_f = fm.field(s, beta=beta, d=dd, eps=0.3, nudge=nudge)
    assert _max_abs(got_f, ref_f) <= TOL * max(1.0, np.abs(ref_f).max())


@pytest.mark.parametrize("geom", list(GEOMS), ids=list(GEOMS))
@pytest.mark.parametrize("kind", ["prototypical", "hopfield"])
def test_fast_parameter_gradient_equals_the_reference(geom, kind):
    net = make_net(GEOMS[geom], kind=kind, act="hardsigmoid" if kind != "hopfield" else "tanh")
    x, s, _ = batch_data(net, B=4, seed=3)
    fm = FK.FastMap(net, 4)
    fm.set_input(x)
    got = fm.parameter_gradient(s)
    ref = R.parameter_gradient(net, x, s)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape, k
        assert _max_abs(got[k], ref[k]) <= TOL * max(1.0, np.abs(ref[k]).max()), k


@pytest.mark.parametrize("geom", list(GEOMS), ids=list(GEOMS))
def test_ties_and_scaled_feedback_equal_the_reference(geom):
    """Tied maxima (first in C order, as the reference's argmax) and gamma-scaled feedback."""
    net = make_net(GEOMS[geom], gamma=0.6, seed=5)
    x, s = blank_regions(net, *batch_data(net, seed=6)[:2])
    fm = FK.FastMap(net, 3)
    fm.set_input(x)
    ref = R.fixed_point_map(net, x, s)
    assert _max_abs(fm.map(s), ref) <= TOL
    got, want = fm.parameter_gradient(s), R.parameter_gradient(net, x, s)
    for k in want:
        assert _max_abs(got[k], want[k]) <= TOL, k


@pytest.mark.parametrize(
    ("stride", "pad", "kernel", "scale"),
    [(1, 0, (5, 5), 1.0), (1, 2, (3, 2), 0.6), (2, 1, (3, 3), 1.0)],
)
def test_position_major_patch_loops_equal_the_sample_major_ones(stride, pad, kernel, scale):
    """im2col_posmajor / col2im_posmajor_add (the fast path's layout, blocked over output
    rows) hold the entries of im2col_into / col2im_add (tested against the NumPy
    reference in test_couplings_conv.py), columns reordered ``(b, i, j) -> (i, j, b)``."""
    rng = np.random.default_rng(11)
    B, C, H, W = 3, 2, 9, 7
    kh, kw = kernel
    Ho, Wo = conv_output_hw((H, W), kernel, stride, pad)
    geom = (C, H, W, kh, kw, stride, pad, Ho, Wo)
    a = rng.normal(size=(B, C * H * W))
    K, M = C * kh * kw, B * Ho * Wo
    cols = np.empty((K, M))
    CL.im2col_into(a, cols, *geom)
    want = cols.reshape(K, B, Ho * Wo).transpose(0, 2, 1).reshape(K, M)
    aT = np.empty((C * H * W, B))
    CL.transpose_into(a, aT)
    back = rng.normal(size=(K, M))
    back_pm = np.ascontiguousarray(back.reshape(K, B, Ho * Wo).transpose(0, 2, 1).reshape(K, M))
    u_want = rng.normal(size=(B, C * H * W))
    u_got = u_want.copy()
    CL.col2im_add(back, u_want, *geom, scale)
    outT = np.zeros((C * H * W, B))
    for rows in (Ho, 2, 1):  # whole, a partial last block (Ho odd), single rows
        for i0 in range(0, Ho, rows):
            i1 = min(Ho, i0 + rows)
            r0, r1 = i0 * Wo * B, i1 * Wo * B
            blk = np.full((K, r1 - r0), np.nan)
            CL.im2col_posmajor(aT, blk, *geom, i0, i1)
            assert np.array_equal(blk, want[:, r0:r1]), (rows, i0)
            CL.col2im_posmajor_add(
                np.ascontiguousarray(back_pm[:, r0:r1]), outT, *geom, i0, i1, scale
            )
    CL.add_transposed(u_got, outT / 3)  # three passes over the rows accumulated
    assert _max_abs(u_got, u_want) <= TOL


@pytest.mark.parametrize("is_max", [True, False])
@pytest.mark.parametrize(("size", "step"), [(2, 2), (3, 1), (1, 1)])
@pytest.mark.parametrize("layout", ["sample-major", "position-major"])
def test_vector_pool_equals_the_scalar_pool(is_max, size, step, layout):
    """pool_rows_vector_add (the fast path's, over channels with scratch) gives what
    pool_rows_strided_add gives (the general kernels', tested through the reference),
    bit for bit: values, argmax routing, first position on ties, a NaN wins."""
    from eqprop.graph.conv_loops import pool_rows_strided_add, pool_rows_vector_add

    rng = np.random.default_rng(3)
    B, O, Ho, Wo = 3, 5, 7, 6
    Hp, Wp = pool_output_hw((Ho, Wo), size, step)
    z = rng.normal(size=(B * Ho * Wo, O))
    z[::4] = 0.25  # ties
    z[5, 1] = z[17, 3] = np.nan  # a NaN wins its windows
    sb, sp = (Ho * Wo, 1) if layout == "sample-major" else (1, B)
    geom = (O, Ho, Wo, size, step, Hp, Wp, sb, sp)
    start = rng.normal(size=(B, O * Hp * Wp))
    want, got = start.copy(), start.copy()
    i_want = np.full((B, O * Hp * Wp), -1, dtype=np.int64)
    i_got = i_want.copy()
    pool_rows_strided_add(z, want, i_want, is_max, *geom)
    scratch = (np.full(O, np.nan), np.full(O, -7, dtype=np.int64))
    pool_rows_vector_add(z, got, i_got, is_max, *geom, *scratch)
    assert np.array_equal(got, want, equal_nan=True)
    if is_max:
        assert np.array_equal(i_got, i_want)
        assert np.isnan(got).any()


@pytest.mark.parametrize("geom", list(GEOMS), ids=list(GEOMS))
@pytest.mark.parametrize("rows", [1, 2])
def test_patch_blocks_equal_the_reference(geom, rows, monkeypatch):
    """The ops' patches built a few output rows at a time (ConvOp.block_bytes small: 1 or
    2 rows per block, a partial last block where H_o is odd) give the reference's map,
    field and parameter gradient."""
    net = make_net(GEOMS[geom], kind="hopfield", act="tanh", seed=7)
    x, s, d = batch_data(net, B=3, seed=8)
    itemsize = net.dtype.itemsize
    per_row = {
        c.name: c.W[0].size
        * conv_output_hw(c.conv.input_hw, c.W.shape[2:], c.conv.stride, c.conv.padding)[1]
        * 3
        * itemsize
        for c in net.couplings
        if c.type == "conv2d"
    }
    monkeypatch.setattr(FK.ConvOp, "block_bytes", rows * min(per_row.values()))
    fm = FK.FastMap(net, 3)
    ops = [op for _, op, _ in fm.inner_ops if isinstance(op, FK.ConvOp)]
    ops += [op for _, op in fm.input_ops if isinstance(op, FK.ConvOp)]
    assert any(len(op.blocks) > 1 for op in ops)
    if rows == 2 and geom.startswith("5x5"):  # h1 -> h2: H_o = 3 in blocks of 2 rows
        assert any(op.blocks[-1][1] - op.blocks[-1][0] < op.rows for op in ops), "no partial block"
    fm.set_input(x)
    ref = R.fixed_point_map(net, x, s, d, 0.4, eps=0.3)
    assert _max_abs(fm.map(s, beta=0.4, d=d, eps=0.3), ref) <= TOL
    got, want = fm.parameter_gradient(s), R.parameter_gradient(net, x, s)
    for k in want:
        assert _max_abs(got[k], want[k]) <= TOL * max(1.0, np.abs(want[k]).max()), k


def test_ops_reuse_their_buffers_and_see_in_place_weight_updates():
    """Allocation-free per iteration: the ops write into the same arrays on every call,
    and an in-place update of W changes the next map (W2 is a view)."""
    net = make_net(GEOMS["5x5-max/max (P-conv-like)"])
    x, s, _ = batch_data(net)
    fm = FK.FastMap(net, 3)
    fm.set_input(x)
    op = fm.inner_ops[0][1]
    ids = [id(op.cols), id(op.z), id(op.back), id(op.g)]
    ptr = op.cols.ctypes.data
    out = np.empty_like(s)
    fm.map(s, out)
    fm.map(s, out)
    assert [id(op.cols), id(op.z), id(op.back), id(op.g)] == ids
    assert op.cols.ctypes.data == ptr
    assert np.shares_memory(op.W2, net.coupling("h1->h2").W)
    net.coupling("h1->h2").W *= 1.5
    ref = R.fixed_point_map(net, x, s)
    assert _max_abs(fm.map(s), ref) <= TOL


def test_relax_reaches_the_reference_fixed_point():
    """The relaxation iterates the map: T steps equal T reference steps."""
    net = make_net(GEOMS["stride2-pad1-maxoverlap/avg"], seed=4)
    x, _, d = batch_data(net)
    fm = FK.FastMap(net, 3)
    fm.set_input(x)
    s_ref = net.zero_state(3)
    for _ in range(12):
        s_ref = R.fixed_point_map(net, x, s_ref, d, 0.2, nudge="outside")
    s, it, _ = fm.relax(None, 12, beta=0.2, d=d, nudge="outside")
    assert it == 12
    assert _max_abs(s, s_ref) <= TOL
    s2, it2, res = fm.relax(None, 500, atol=1e-9)
    assert it2 < 500 and res <= 1e-9
    assert _max_abs(R.fixed_point_map(net, x, s2), s2) <= 1e-9
    s3, _, _ = fm.relax(None, 40, damping=0.5)
    ref3 = net.zero_state(3)
    for _ in range(40):
        ref3 = ref3 + 0.5 * (R.fixed_point_map(net, x, ref3) - ref3)
    assert _max_abs(s3, ref3) <= TOL


def test_float32_map_is_close_to_float64():
    net = make_net(GEOMS["pad2-nopool/max"])
    x, s, d = batch_data(net)
    net32 = GraphNetwork(net.copy().layers, net.copy().couplings, net.kind, net.cost, "float32")
    fm = FK.FastMap(net32, 3)
    fm.set_input(x)
    got = fm.map(s.astype(np.float32), beta=0.3, d=d)
    ref = R.fixed_point_map(net, x, s, d, 0.3)
    assert got.dtype == np.float32
    assert _max_abs(got, ref) <= 1e-5


def test_fast_map_refuses_what_it_cannot_do():
    net = make_net(GEOMS["pad2-nopool/max"])
    with pytest.raises(ValueError, match="batch"):
        FK.FastMap(net, 0)
    fm = FK.FastMap(net, 3)
    x, s, _ = batch_data(net, B=2)
    with pytest.raises(ValueError, match="x must have shape"):
        fm.set_input(x)
    x, s, _ = batch_data(net, B=3)
    fm.set_input(x)
    with pytest.raises(ValueError, match="targets d"):
        fm.map(s, beta=0.1)
    with pytest.raises(ValueError, match="s must be"):
        fm.map(s[:, :-1])
    lin = make_net([((3, 3), 1, 0, None, 2, None), ((2, 2), 1, 0, "avg", 2, None)], act="sigmoid")
    cnet = GraphNetwork(lin.copy().layers, lin.copy().couplings, lin.kind, lin.cost, "complex128")
    with pytest.raises(ValueError, match="float32/float64"):
        FK.FastMap(cnet, 3)


@pytest.mark.parametrize("is_max", [True, False])
@pytest.mark.parametrize(("size", "step"), [(2, 2), (3, 1), (1, 1)])
@pytest.mark.parametrize("layout", ["sample-major", "position-major"])
def test_vector_unpool_equals_the_scalar_unpool(is_max, size, step, layout):
    """unpool_rows_vector (the fast path's, channels innermost) gives what
    unpool_rows_strided gives (the general kernels', tested through the reference), bit
    for bit: argmax routing from a pooled index with ties, overlapping windows summed in
    the same order, a stale ``g`` overwritten."""
    from eqprop.graph.conv_loops import (
        pool_rows_strided_add,
        unpool_rows_strided,
        unpool_rows_vector,
    )

    rng = np.random.default_rng(4)
    B, O, Ho, Wo = 3, 5, 7, 6
    Hp, Wp = pool_output_hw((Ho, Wo), size, step)
    z = rng.normal(size=(B * Ho * Wo, O))
    z[::4] = 0.25  # ties
    sb, sp = (Ho * Wo, 1) if layout == "sample-major" else (1, B)
    geom = (O, Ho, Wo, size, step, Hp, Wp, sb, sp)
    index = np.zeros((B, O * Hp * Wp), dtype=np.int64)
    pool_rows_strided_add(z, np.zeros((B, O * Hp * Wp)), index, True, *geom)
    a = rng.normal(size=(B, O * Hp * Wp))
    want = np.full(z.shape, np.nan)
    got = np.full(z.shape, np.nan)
    unpool_rows_strided(a, index, want, is_max, *geom)
    unpool_rows_vector(a, index, got, is_max, *geom)
    assert np.isfinite(want).all()
    assert np.array_equal(got, want)
