"""Tolerance-stopped Picard and Gauss-Seidel (red-black parity) phases on the fast conv
map, :meth:`eqprop.graph.conv_kernels.FastMap.solve`, against the general path.

Independent route: the general graph kernels (:mod:`eqprop.graph.kernels`, the conv
records in the Numba map and ``fixed_point_block``) driven by ``solvers``'s own Numba
driver (``clamp(..., path="general")``); ``FastMap.solve`` shares with it only the
per-sample verdict (``solvers._bookkeeping.sample_verdict``) and the convolution loops.
Both maps are checked against the NumPy reference in ``test_couplings_conv_fast.py``.
Everything of the ``SolveResult`` is compared (float64): states (1e-12), ``n_iter``,
``converged``, ``failed``, ``failure_iter``, ``status``, the residual traces (same rows,
same NaN pattern, values to 1e-12), ``nfev``, ``nfev_block``.
"""

import numpy as np
import pytest
from test_couplings_conv_fast import GEOMS, batch_data, make_net

import solvers
from eqprop import Dynamics, clamp, run_phase
from eqprop.graph import conv_kernels as FK

TOL = 1e-12
GEOM_IDS = list(GEOMS)


def _weak(net, scale=0.25):
    """Weights scaled down so that Picard contracts (a unique fixed point, reached in a
    few dozen iterations)."""
    for name, p in net.parameters().items():
        if name.endswith(".W"):
            p *= scale
    return net


def _both(net, x, dyn, **kw):
    fast, general = clamp(net, x), clamp(net, x, path="general")
    a = run_phase(net, fast, dyn, **kw)
    b = run_phase(net, general, dyn, **kw)
    assert fast.fast is not None and general.fast is None  # each path was taken
    assert a.result.method.endswith("on the conv fast map"), a.result.method
    return a, b


def assert_same_result(a, b):
    """Two phases' states and SolveResults equal (to TOL where floating point)."""
    ra, rb = a.result, b.result
    np.testing.assert_allclose(a.state, b.state, rtol=0, atol=TOL)
    np.testing.assert_array_equal(ra.n_iter, rb.n_iter)
    np.testing.assert_array_equal(ra.converged, rb.converged)
    np.testing.assert_array_equal(ra.failed, rb.failed)
    np.testing.assert_array_equal(ra.failure_iter, rb.failure_iter)
    assert ra.status == rb.status, (ra.message, rb.message)
    assert ra.message == rb.message
    assert ra.residual.shape == rb.residual.shape
    for got, want in ((ra.residual, rb.residual), (ra.residual_rel, rb.residual_rel)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, equal_nan=True)
    assert (ra.nfev, ra.nfev_block) == (rb.nfev, rb.nfev_block)
    np.testing.assert_array_equal(ra.n_fallback, 0)
    np.testing.assert_array_equal(ra.fallback_iter, -1)
    assert ra.observed is None


METHODS = [
    ("picard", 1.0),
    ("picard", 0.7),
    ("gauss-seidel-parity", 1.0),
    ("gauss-seidel-parity", 1.3),
    ("gauss-seidel", 0.8),
]


@pytest.mark.parametrize("geom", GEOM_IDS)
@pytest.mark.parametrize("kind", ["prototypical", "hopfield"])
@pytest.mark.parametrize(("method", "damping"), METHODS)
def test_tolerance_phases_fast_equal_general(geom, kind, method, damping):
    """Free and nudged phases to atol: the fast map's solve equals solvers on the general
    kernels in every field of the result (geometries: stride, padding, odd sizes,
    overlapping max windows, average and no pooling, a dense skip)."""
    act = "hardsigmoid" if kind == "prototypical" else "sigmoid"
    net = _weak(make_net(GEOMS[geom], kind=kind, act=act))
    x, s0, d = batch_data(net, B=3)
    s0 = np.clip(s0, 0.0, 1.0)
    dyn = Dynamics(method=method, damping=damping, atol=1e-8, max_iter=400, fixed_steps=False)
    for kw in (dict(beta=0.0), dict(beta=0.2, d=d)):
        a, b = _both(net, x, dyn, s0=s0, **kw)
        assert_same_result(a, b)
        assert not a.result.failed.any(), a.result.message


@pytest.mark.parametrize(
    ("kind", "cost", "nudge"),
    [("prototypical", "squared", "outside"), ("hopfield", "cross-entropy", "inside")],
)
@pytest.mark.parametrize("method", ["picard", "gauss-seidel-parity"])
def test_nudges_costs_and_clamp(kind, cost, nudge, method):
    """Outside nudge, cross-entropy, and the clamped output (CHL) to a tolerance."""
    net = _weak(make_net(GEOMS[GEOM_IDS[0]], kind=kind, cost=cost))
    x, s0, d = batch_data(net, B=3)
    dyn = Dynamics(method=method, nudge=nudge, atol=1e-9, max_iter=400, fixed_steps=False)
    kws = [dict(beta=0.4, d=d)]
    if cost == "squared":
        kws.append(dict(d=d, clamp_output=True))
    for kw in kws:
        a, b = _both(net, x, dyn, s0=np.clip(s0, 0, 1), **kw)
        assert_same_result(a, b)


@pytest.mark.parametrize("method", ["picard", "gauss-seidel-parity"])
def test_unconverged_samples_are_reported(method):
    """At max_iter the samples that miss the tolerance are reported (MAX_ITER, converged
    False, n_iter = max_iter), those that met it earlier stopped there."""
    net = _weak(make_net(GEOMS[GEOM_IDS[1]], kind="hopfield", act="sigmoid"), 0.6)
    x, _, _ = batch_data(net, B=4)
    probe = Dynamics(method=method, atol=1e-10, max_iter=2000, fixed_steps=False)
    n = run_phase(net, clamp(net, x), probe).result.n_iter
    cap = int(np.sort(n)[1])  # one sample converges before the cap, the others do not
    dyn = Dynamics(method=method, atol=1e-10, max_iter=cap, fixed_steps=False)
    a, b = _both(net, x, dyn)
    assert_same_result(a, b)
    r = a.result
    assert r.status == solvers.Status.MAX_ITER
    assert 0 < r.converged.sum() < 4
    np.testing.assert_array_equal(r.n_iter[~r.converged], cap)
    assert "reached max_iter without meeting the tolerance" in r.message


@pytest.mark.parametrize("method", ["picard", "gauss-seidel-parity"])
def test_divergence_is_reported_never_converged(method):
    """A diverging map (identity activations, strong weights, no box): the samples fail
    (residual above the divergence bound), are never marked converged, the status is
    FAILED, the same on both paths; raise_on_failure raises SolverFailure."""
    net = make_net(GEOMS[GEOM_IDS[2]], act="identity")
    for name, p in net.parameters().items():
        if name.endswith(".W"):
            p *= 4.0
    x, _, _ = batch_data(net, B=3)
    dyn = Dynamics(method=method, atol=1e-8, max_iter=500, fixed_steps=False)
    a, b = _both(net, x, dyn)
    assert a.result.status == solvers.Status.FAILED, a.result.message
    assert a.result.failed.all() and not a.result.converged.any()
    np.testing.assert_array_equal(a.result.failure_iter, b.result.failure_iter)
    np.testing.assert_array_equal(a.result.n_iter, b.result.n_iter)
    assert a.result.message == b.result.message
    with pytest.raises(solvers.SolverFailure, match="samples failed"):
        run_phase(net, clamp(net, x), Dynamics(**{**dyn.__dict__, "raise_on_failure": True}))


def test_gauss_seidel_fixed_steps_and_solver_objects():
    """Gauss-Seidel run for fixed steps, and solvers objects passed as the method (a
    damped Picard, a layer-by-layer GaussSeidel in reverse order) on both paths."""
    net = _weak(make_net(GEOMS[GEOM_IDS[2]], kind="hopfield", act="sigmoid"))
    x, s0, d = batch_data(net, B=3)
    cols = [net.offsets[la.name] for la in net.state_layers]
    for m in (
        "gauss-seidel-parity",
        solvers.Picard(damping=0.8),
        solvers.GaussSeidel(groups=tuple((c,) for c in cols[::-1]), damping=1.2),
    ):
        dyn = Dynamics(method=m, T=7, K=3, fixed_steps=True)
        a, b = _both(net, x, dyn, beta=0.3, d=d, s0=s0, steps=7)
        assert_same_result(a, b)
        assert a.result.status == solvers.Status.FIXED_STEPS
        np.testing.assert_array_equal(a.result.n_iter, 7)


def test_what_the_fast_map_cannot_run_goes_general_or_is_refused():
    """Anderson and Gauss-Seidel groups that split a layer run on the general path under
    'auto' and are refused, saying why, under 'fast' and by FastMap.solve."""
    net = _weak(make_net(GEOMS[GEOM_IDS[0]]))
    x, _, _ = batch_data(net, B=2)
    n = net.n_state
    split = solvers.GaussSeidel(groups=(((0, 5),), ((5, n),)))
    for m, msg in (("anderson", "is not Picard or Gauss-Seidel"), (split, "not one layer's")):
        dyn = Dynamics(method=m, atol=1e-8, fixed_steps=False)
        assert FK.block_groups(net, getattr(m, "groups", ())) is not None
        cx = clamp(net, x)
        out = run_phase(net, cx, dyn)
        assert cx.fast is None and not out.result.method.endswith("fast map")
        with pytest.raises(ValueError, match=msg):
            run_phase(net, clamp(net, x, path="fast"), dyn)
    fm = FK.FastMap(net, 2)
    fm.set_input(x)
    with pytest.raises(ValueError, match="not one layer's columns"):
        fm.solve(net.zero_state(2), split)
    with pytest.raises(ValueError, match=r"runs solvers\.Picard or solvers\.GaussSeidel"):
        fm.solve(net.zero_state(2), solvers.Anderson())
    with pytest.raises(ValueError, match="fixed_steps"):
        fm.solve(net.zero_state(2), solvers.Picard(), fixed_steps=0)


@pytest.mark.parametrize("geom", GEOM_IDS)
@pytest.mark.parametrize("gamma", [None, 0.7])
def test_fast_contrast_equals_the_reference_contrast(geom, gamma):
    """FastMap.contrast (the rules' combine step on the fast ops) against
    eqprop.graph.gradient.contrast (NumPy reference): every parameter (conv and dense
    weights, per-channel and per-unit biases), with scaled conv feedback; and the rules
    use it on the fast path."""
    from eqprop.graph.gradient import contrast
    from eqprop.rules import make_rule

    net = make_net(GEOMS[geom], kind="hopfield", act="sigmoid", gamma=gamma)
    x, s0, d = batch_data(net, B=3)
    s1 = np.clip(s0 + 0.1, 0, 1)
    fm = FK.FastMap(net, 3)
    fm.set_input(x)
    got = fm.contrast([s0, s1], [0.0, 0.3], [-1 / 0.3, 1 / 0.3])
    want = contrast(net, x, d, [s0, s1], [0.0, 0.3], [-1 / 0.3, 1 / 0.3])
    assert list(got) == list(want) == list(net.parameters())
    for name in want:
        scale = max(1.0, float(np.abs(want[name]).max()))
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=TOL * scale, err_msg=name)
    cx = clamp(net, x)
    est = make_rule("ep", beta=0.3).estimate(net, cx, d, Dynamics(T=5, K=3))
    assert cx.fast is not None
    S = [est.phases[k].state for k in est.phases]
    ref = contrast(net, x, d, S, [0.0, 0.3], [-1 / 0.3, 1 / 0.3])
    for name in ref:
        scale = max(1.0, float(np.abs(ref[name]).max()))
        np.testing.assert_allclose(est.gradient[name], ref[name], rtol=0, atol=TOL * scale)


def _readout_net(geom, kind):
    """make_net's network with its output replaced by a softmax readout (cross-entropy)
    fed by h2 and the h1 skip."""
    from eqprop.graph import Coupling, GraphNetwork, Layer

    base = make_net(geom, kind=kind, act="sigmoid" if kind == "hopfield" else "hardsigmoid")
    rng = np.random.default_rng(7)
    layers = [la for la in base.layers if la.name != "y"]
    layers.append(Layer("y", 4, role="readout", bias=rng.normal(0, 0.3, 4)))
    couplings = [c for c in base.couplings if c.target != "y"]
    for src in ("h2", "h1"):
        n = base.layer(src).size
        couplings.append(Coupling(src, "y", rng.normal(0, 0.3, (n, 4))))
    return GraphNetwork(layers, couplings, kind=kind, cost="cross-entropy", dtype="float64")


@pytest.mark.parametrize("geom", GEOM_IDS)
@pytest.mark.parametrize(
    ("kind", "nudge"),
    [("prototypical", "inside"), ("prototypical", "outside"), ("hopfield", "inside")],
)
def test_softmax_readout_on_the_fast_map(geom, kind, nudge):
    """A softmax readout on the fast map: map and field against the NumPy reference
    (free and nudged: the readout's error fed back into its sources, times rho' for the
    hopfield kind), the contrast against the reference's (the readout's beta-dependent
    terms), and a tolerance phase against the general path."""
    from eqprop.graph import reference as R
    from eqprop.graph.gradient import contrast

    net = _weak(_readout_net(GEOMS[geom], kind))
    assert FK.fast_mismatch(net) is None
    x, s, d = batch_data(net, B=3)
    fm = FK.FastMap(net, 3)
    fm.set_input(x)
    for beta in (0.0, 0.6):
        got = fm.map(s, beta=beta, d=d, nudge=nudge)
        want = R.fixed_point_map(net, x, s, d, beta, eps=0.5, nudge=nudge)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
        got = fm.field(s, beta=beta, d=d, nudge=nudge)
        want = R.vector_field(net, x, s, d, beta, eps=0.5, nudge=nudge)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    s1 = np.clip(s + 0.1, 0, 1)
    a = fm.contrast([s, s1], [0.0, 0.6], [-1 / 0.6, 1 / 0.6], d)
    b = contrast(net, x, d, [s, s1], [0.0, 0.6], [-1 / 0.6, 1 / 0.6])
    assert list(a) == list(b)
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=TOL, err_msg=name)
    assert np.abs(b["h2->y.W"]).max() > 1e-3  # the readout's terms are there
    dyn = Dynamics(method="picard", nudge=nudge, atol=1e-9, max_iter=300, fixed_steps=False)
    p, q = _both(net, x, dyn, beta=0.4, d=d, s0=np.clip(s, 0, 1))
    assert_same_result(p, q)
