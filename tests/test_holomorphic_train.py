"""Training with holomorphic EP (#13): ``TrainConfig.from_flat(rule="holomorphic")`` and
``eqprop train --rule holomorphic --points N``.

A training step is checked against SGD on the estimate of the NumPy route
(eqprop.graph.holomorphic.holomorphic_ep, its own Picard relaxation of the reference map),
and N = 2 with every phase started from the free state against the symmetric EP step
(Laborieux et al. 2021): the two estimators are the same formula,
[g(|beta|) - g(-|beta|)] / (2 |beta|), on the same phases (each from the free state, K
steps), so they agree to round-off (the holomorphic phases run on complex128 graph
kernels, the symmetric ones on the real chain kernels). With ``start="previous"`` the
-|beta| phase starts where the +|beta| phase ended and, with a fixed step budget, the
steps differ (checked too).
"""

import numpy as np
import pytest

from eqprop.cli import main
from eqprop.graph import GraphNetwork
from eqprop.graph import holomorphic as H
from eqprop.graph.build import from_network
from eqprop.train import TrainConfig, Trainer

BASE = dict(
    dataset="digits",
    architecture="64-8-10",
    kind="prototypical",
    activation="sigmoid",
    T=30,
    K=10,
    rule="holomorphic",
    beta=0.5,
    points=4,
    dtype="float64",
    batch_size=10,
    limit=10,
    epochs=1,
    shuffle=False,
    lrs=(0.1, 0.05),
)


def _params(net):
    if isinstance(net, GraphNetwork):
        return {k: np.array(v) for k, v in net.parameters().items()}
    return {k: np.array(v) for k, v in from_network(net).parameters().items()}


def test_training_step_equals_sgd_on_the_numpy_estimate():
    cfg = TrainConfig.from_flat(BASE, method="anderson", atol=1e-13, max_iter=5000).validate()
    tr = Trainer(cfg, quiet=True)
    assert isinstance(tr.net, GraphNetwork) and cfg.uses_graph
    p0 = _params(tr.net)
    x, d = tr.x_train[:10], tr.d_train[:10]
    ref = H.holomorphic_ep(tr.net, x, d, points=4, beta=0.5, start="previous")
    tr.train_epoch()  # one minibatch: the 10 samples
    lr = {"x->h1.W": 0.1, "h1.b": 0.1, "h1->y.W": 0.05, "y.b": 0.05}
    for k, p in _params(tr.net).items():
        assert p.dtype == np.float64  # parameters stay real
        np.testing.assert_allclose(p, p0[k] - lr[k] * ref.grads[k], rtol=0, atol=1e-12)
        assert np.max(np.abs(p - p0[k])) > 1e-5  # it did move
    # persistent particles hold the real free state
    assert tr.particles is not None and tr.particles.dtype == np.float64
    np.testing.assert_allclose(tr.particles[:10], ref.info["free_state"].real, atol=1e-10)
    assert tr.rule.last_imaginary < 1e-12


def test_two_points_from_the_free_state_is_the_symmetric_ep_step():
    settings = dict(BASE, points=2, holomorphic_start="free", limit=40)
    ep_settings = {k: v for k, v in settings.items() if k not in ("points", "holomorphic_start")}
    a = Trainer(TrainConfig.from_flat(settings).validate(), quiet=True)
    b = Trainer(
        TrainConfig.from_flat(ep_settings, rule="ep", estimator="symmetric").validate(), quiet=True
    )
    assert a.dyn.is_fixed_steps  # the default method: T / K fixed steps
    a.train_epoch()
    b.train_epoch()  # four minibatches each
    pa, pb = _params(a.net), _params(b.net)
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], rtol=0, atol=1e-13, err_msg=k)
    # the oscillating start is another estimator once the phases stop short of equilibrium
    c = Trainer(
        TrainConfig.from_flat(settings, holomorphic_start="previous").validate(), quiet=True
    )
    c.train_epoch()
    pc = _params(c.net)
    assert max(np.max(np.abs(pc[k] - pb[k])) for k in pc) > 1e-9  # 6e-7 when written


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(activation="hardsigmoid"), "layer 'h1' has activation 'hardsigmoid'"),
        (dict(activation="hardsigmoid"), "use --activation sigmoid"),
        (dict(output_activation="hardsigmoid"), "use --output-activation sigmoid"),
        (dict(points=1), "points must be an integer >= 2"),
        (dict(beta=-0.5), "radius |beta|"),
        (dict(feedback="free"), "use --feedback tied or --generalized on"),
        (dict(holomorphic_start="zero"), "unknown start 'zero'"),
        (dict(generalized="yes"), "generalized must be True or False"),
    ],
)
def test_bad_settings_raise_one_line_naming_them(changes, words):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_flat(BASE, **changes).validate()
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--activation", "hardsigmoid"], "layer 'h1' has activation 'hardsigmoid'"),
        (["--points", "1"], "points must be an integer >= 2"),
        (["--beta", "0"], "radius |beta|"),
        (["--rule", "ep", "--points", "4"], "--points applies to --rule holomorphic"),
        (["--rule", "ep", "--holomorphic-start", "free"], "--holomorphic-start applies to"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(argv, words, capsys):
    base = ["train", "--dataset", "digits", "--activation", "sigmoid", "--rule", "holomorphic"]
    try:
        rc = main([*base, *argv, "--epochs", "0", "-q"])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_trains_with_holomorphic_ep(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--sizes", "64-16-10", "--kind", "prototypical"]
    argv += ["--activation", "shifted-sigmoid", "-T", "30", "-K", "10", "--lrs", "0.2", "0.1"]
    argv += ["--rule", "holomorphic", "--points", "3", "--beta", "0.5"]
    argv += ["--holomorphic-start", "free", "--epochs", "2", "-q", "-o", str(out)]
    assert main(argv) == 0
    cfg = TrainConfig.from_json((out / "config.json").read_text())
    assert cfg.rule.name == "holomorphic" and cfg.uses_graph
    assert cfg.rule.params == dict(
        beta=0.5, points=3, start="free", generalized=False, imag_tol=None
    )
    import xarray as xr

    with xr.open_dataset(out / "history.nc") as h:
        test = h["test_error"].values
    assert np.all(np.isfinite(test)) and test[-1] < 0.6, test  # chance is 0.9 (0.29 when written)


def test_holomorphic_checkpoint_resumes_exactly(tmp_path):
    settings = dict(BASE, limit=30, epochs=2, generalized=True, feedback="free")
    whole = Trainer(TrainConfig.from_flat(settings).validate(), quiet=True)
    whole.run()
    part = Trainer(
        TrainConfig.from_flat(settings, output=str(tmp_path / "run")).validate(), quiet=True
    )
    part.run(epochs=1)
    resumed = Trainer.from_checkpoint(tmp_path / "run" / "checkpoint.npz", quiet=True)
    assert resumed.config.rule == whole.config.rule  # points, start, generalized kept
    resumed.run()
    a, b = _params(whole.net), _params(resumed.net)
    assert "h1->y.B" in a  # the learned feedback of the generalized form
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_imaginary_part_is_round_off_from_the_free_state_and_checked_when_asked():
    import eqprop as E
    from eqprop.graph import chain
    from eqprop.rules.holomorphic import HolomorphicEP

    net = chain([4, 6, 3], seed=1, activation="sigmoid")
    rng = np.random.default_rng(0)
    x, d = rng.normal(size=(3, 4)), rng.uniform(0.0, 1.0, size=(3, 3))
    dyn = E.Dynamics(method="fixed", T=30, K=3, eps=0.5)  # phases stop short of equilibrium
    free = HolomorphicEP(beta=0.5, points=4, start="free", imag_tol=1e-12)
    free.estimate(net, x, d, dyn)  # conjugate phases from one real state: conjugate states
    assert free.last_imaginary < 1e-13
    prev = HolomorphicEP(beta=0.5, points=4, start="previous")
    prev.estimate(net, x, d, dyn)
    assert prev.last_imaginary > 1e-6  # the truncation shows in the imaginary part
    strict = HolomorphicEP(beta=0.5, points=4, start="previous", imag_tol=prev.last_imaginary / 2)
    with pytest.raises(ValueError, match=r"imaginary part is .* of its real part"):
        strict.estimate(net, x, d, dyn)
    with pytest.raises(ValueError, match="imag_tol must be None or a finite number > 0"):
        HolomorphicEP(imag_tol=0.0)
