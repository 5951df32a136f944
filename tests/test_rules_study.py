"""``eqprop study rules``: one cell of the dataset against an independent computation
(finite differences for the exact gradient, the rules' update formulas written out in
NumPy), keyword selection, schema, the CLI and figure, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from test_studies_sel import assert_sel_by_keyword_selects

import eqprop as E
from eqprop.gradients import finite_difference
from studies.beta import make_batch
from studies.rules import RulesSetup, rules_study
from studies.schema import check_schema
from studies.setup import BatchSetup, NetworkSetup, SolverSetup

SIZES = (6, 5, 3)
NETWORK = NetworkSetup(sizes=SIZES, activation="sigmoid")
BATCH, SOLVER = BatchSetup(size=4), SolverSetup(atol=1e-13)


def setup(seeds, network=NETWORK):
    """The tests' setup: the 6-5-3 sigmoid network, batches of 4, tolerance 1e-13."""
    return RulesSetup(network=network, batch=BATCH, solver=SOLVER, seeds=seeds)


@pytest.fixture(scope="module")
def study():
    rules = ("ep-symmetric", "chl", "recirculation", "rbp")
    return rules_study(rules, (0.05, 0.2), setup((0, 1)), progress=False)


def _metrics(est, ref):
    cos = est @ ref / (np.linalg.norm(est) * np.linalg.norm(ref))
    rel = np.linalg.norm(est - ref) / np.linalg.norm(ref)
    sign = np.mean(np.sign(est[ref != 0]) == np.sign(ref[ref != 0]))
    return cos, rel, sign


def test_ep_cell_against_finite_differences_and_the_written_out_estimate(study):
    beta, seed = 0.05, 1
    net = E.init_network(SIZES, activation="sigmoid", dtype="float64", seed=seed)
    x, d = make_batch(SIZES, 4, seed + 7919)
    dyn = E.Dynamics(method="picard", fixed_steps=False, atol=1e-13, max_iter=20000)
    # exact gradient: central differences of the loss at the free equilibrium
    fd = finite_difference(
        net, x, d, dyn=dyn, h=1e-5, forward=lambda n, xx: E.free_phase(n, xx, dyn).state
    )
    s0 = E.free_phase(net, x, dyn).state
    p = [
        E.activities(net, E.run_phase(net, x, dyn, beta=b, d=d, s0=s0).state) for b in (beta, -beta)
    ]
    h = [a[:, :5] for a in p]  # hidden layer activities rho(s)
    y = [a[:, 5:] for a in p]
    # dF/dW2 = -h^T y, dF/db2 = -y (batch mean); symmetric estimate = (dF+ - dF-) / (2 beta)
    dW2 = -(h[0].T @ y[0] - h[1].T @ y[1]) / 4 / (2 * beta)
    db2 = -(y[0] - y[1]).mean(axis=0) / (2 * beta)
    est = np.concatenate([dW2.ravel(), db2])
    ref = np.concatenate([fd.dW[1].ravel(), fd.db[1]])
    cos, rel, sign = _metrics(est, ref)
    cell = study.sel(rule="ep-symmetric", strength=beta, seed=seed, layer="W2")
    assert float(cell.cosine) == pytest.approx(cos, abs=1e-6)
    assert float(cell.rel_error) == pytest.approx(rel, rel=1e-4)
    assert float(cell.sign_agreement) == sign
    assert 0.9 < cos < 1 and 1e-4 < rel < 0.5  # a meaningful cell: close, not exact
    assert float(cell.ref_norm) == pytest.approx(np.linalg.norm(ref), rel=1e-6)


def test_recirculation_cell_against_the_written_out_loop(study):
    lam, seed = 0.2, 0
    x, _ = make_batch(SIZES, 4, seed + 7919)
    rng = np.random.default_rng(seed)  # init_loop's draws: W0, W1, then b0, b1
    W0, W1 = rng.uniform(-0.5, 0.5, (6, 5)), rng.uniform(-0.5, 0.5, (5, 6))
    b0, b1 = rng.uniform(-0.5, 0.5, 6), rng.uniform(-0.5, 0.5, 5)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    h = sig(x @ W0 + b1)
    v2 = lam * x + (1 - lam) * sig(h @ W1 + b0)
    h2 = lam * h + (1 - lam) * sig(v2 @ W0 + b1)
    est = np.concatenate([(v2.T @ (h - h2)).ravel() / 4, (h - h2).mean(axis=0)])  # encoder

    def error(W0_, b1_):
        r = sig(sig(x @ W0_ + b1_) @ W1 + b0)
        return np.sum((x - r) ** 2) / 4

    ref = []
    for arr in (W0, b1):
        g = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + 1e-6
            up = error(W0, b1)
            arr[i] = old - 1e-6
            down = error(W0, b1)
            arr[i] = old
            g[i] = -(up - down) / 2e-6  # minus the gradient: recirculation adds its update
        ref.append(g.ravel())
    cos, rel, sign = _metrics(est, np.concatenate(ref))
    cell = study.sel(rule="recirculation", strength=lam, seed=seed, layer="W1")
    assert float(cell.cosine) == pytest.approx(cos, abs=1e-7)
    assert float(cell.rel_error) == pytest.approx(rel, rel=1e-6)
    assert float(cell.sign_agreement) == sign


def test_study_dataset_schema_selection_and_reference_check(study):
    check_schema(study)
    assert study.attrs["study"] == "rules"
    assert_sel_by_keyword_selects(study)
    assert set(study.parameter.values.ravel()) == {"beta", "none", "lambda"}
    rbp = study.sel(rule="rbp")
    np.testing.assert_allclose(rbp.cosine, 1.0, atol=1e-12)  # the reference itself
    # parameter-free rules repeat across strengths
    chl = study.cosine.sel(rule="chl")
    np.testing.assert_array_equal(chl.isel(strength=0), chl.isel(strength=1))
    assert float(study.free_residual.max()) < 1e-12


def test_cli_writes_the_study_and_its_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from eqprop.cli import main
    from eqprop.provenance import open_netcdf

    out = tmp_path / "r.nc"
    argv = ["study", "rules", "-o", str(out), "-q", "--rules", "ep-one-sided,coupled-centered"]
    argv += ["--strengths", "0.01,0.1", "--seeds", "0", "--sizes", "5-4-3", "--batch-size", "3"]
    assert main([*argv, "--plot", str(tmp_path / "r.png")]) == 0
    ds = open_netcdf(out)
    assert dict(ds.sizes) == {"rule": 2, "strength": 2, "seed": 1, "layer": 2}
    assert (tmp_path / "r.png").stat().st_size > 1000
    assert main(["plot", str(out), "-o", str(tmp_path / "again.png")]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--strengths", "0.5,1.0"], "every strength must be in (0, 1)"),
        (["--rules", "ep"], "unknown rule 'ep'; choose from ep-one-sided"),
        (["--sizes", "5-3"], "needs a hidden layer"),
    ],
)
def test_cli_refuses_bad_study_input_with_one_line(tmp_path, capsys, extra, message):
    from eqprop.cli import main

    assert main(["study", "rules", "-o", str(tmp_path / "r.nc"), "-q", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_sign_agreement_counts_only_the_gradient_nonzero_entries():
    from studies.rules import rule_metrics

    cos, rel, sign = rule_metrics(np.array([1.0, -1.0, 0.5]), np.array([2.0, 0.0, -1.0]))
    assert sign == 0.5  # entry 1 (gradient 0, a unit held at a bound) is not counted
    assert cos == pytest.approx(1.5 / (np.sqrt(2.25) * np.sqrt(5)))
    assert rel == pytest.approx(np.sqrt(1 + 1 + 2.25) / np.sqrt(5))


def test_graph_rules_cells_against_the_graph_reference():
    """chl-scaled and feedback-alignment run on graph chains (scaled / random feedback);
    a cell equals the rule's update against the graph recurrent backprop."""
    from eqprop.graph import chain
    from eqprop.graph.backprop import recurrent_backprop
    from eqprop.rules import ScaledFeedbackCHL

    ds = rules_study(("chl-scaled", "feedback-alignment"), (0.01,), setup((0,)), progress=False)
    check_schema(ds)
    x, d = make_batch(SIZES, 4, 7919)
    dyn = E.Dynamics(method="picard", fixed_steps=False, atol=1e-13, max_iter=20000)
    net = chain(SIZES, kind="hopfield", activation="sigmoid", feedback="scaled", gamma=0.01, seed=0)
    s = E.free_phase(net, x, dyn).state
    ref = recurrent_backprop(net, x, d, s, check_fixed_point=None).grads
    g = ScaledFeedbackCHL().estimate(net, x, d, dyn, s0=s).gradient
    est = np.concatenate([g["h1->y.W"].ravel(), g["y.b"]])
    exact = np.concatenate([ref["h1->y.W"].ravel(), ref["y.b"]])
    cos, rel, _ = _metrics(est, exact)
    cell = ds.sel(rule="chl-scaled", strength=0.01, seed=0, layer="W2")
    assert float(cell.cosine) == pytest.approx(cos, abs=1e-9)
    assert float(cell.rel_error) == pytest.approx(rel, rel=1e-9)
    assert str(ds.parameter.sel(rule="feedback-alignment", strength=0.01).values) == "beta"


def test_coupled_limit_entry_is_where_the_positive_variant_goes_and_not_the_gradient():
    # hardsigmoid box: the positive variant's limit; its cells match the positive variant's
    # to first order in eta and stay far from the exact gradient (rel. error > 0.1)
    ds = rules_study(
        ("coupled-positive", "coupled-limit"),
        (1e-3, 1e-2),
        setup((0,), NetworkSetup(sizes=SIZES, activation="hardsigmoid")),
        progress=False,
    )
    lim = ds.sel(rule="coupled-limit", seed=0)
    pos = ds.sel(rule="coupled-positive", seed=0)
    assert np.all(lim.cosine.values[0] == lim.cosine.values[1])  # parameter-free
    gap = np.abs(pos.cosine - lim.cosine).values  # (strength, layer)
    assert np.all(gap[0] < 1e-4) and gap[0].max() < gap[1].max()
    assert np.all(lim.rel_error.values > 0.1)
