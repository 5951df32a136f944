"""Training graph networks (#11): the network options of TrainConfig (``output_activation``,
``feedback``, ``feedback_scale``, ``skip``) build the chain's graph with
:func:`eqprop.graph.build.extend_chain`; the Trainer trains, evaluates and checks them."""

import numpy as np
import pytest

from eqprop.graph import GraphNetwork
from eqprop.network import Network
from eqprop.presets import get_preset
from eqprop.train import TrainConfig, Trainer

CHANCE = 0.9  # ten balanced classes


def _config(**changes):
    settings = dict(get_preset("digits").config.to_flat())
    settings.update(epochs=3)
    settings.update(changes)
    return TrainConfig.from_dict(settings).validate()


def test_without_network_options_the_trainer_builds_todays_network():
    trainer = Trainer(_config(epochs=0), quiet=True)
    assert type(trainer.net) is Network and not trainer.config.uses_graph


def test_graph_of_a_plain_tied_chain_trains_exactly_like_the_network():
    # the output activation the chain already has: a graph network equal to the chain
    base = _config(epochs=2)
    graph = base.replace(output_activation=base.to_flat()["activation"])
    a = Trainer(base, quiet=True)
    b = Trainer(graph, quiet=True)
    assert type(a.net) is Network and isinstance(b.net, GraphNetwork)
    ha, hb = a.run().history, b.run().history
    for k in ("train_error", "train_loss", "valid_error", "valid_loss", "test_error", "test_loss"):
        np.testing.assert_array_equal(ha[k].values, hb[k].values, err_msg=k)
    np.testing.assert_array_equal(a.net.weights[-1], b.net.coupling("h1->y").W)


@pytest.mark.parametrize(
    "changes, check",
    [
        (dict(feedback="random", epochs=4), lambda g: g.coupling("h1->y").feedback == "random"),
        (dict(skip="0-2"), lambda g: any(c.source == "x" and c.target == "y" for c in g.couplings)),
        (
            dict(output_activation="identity", lrs=(0.02, 0.01)),
            lambda g: g.output_layer.activation == "identity",
        ),
    ],
    ids=["feedback-alignment", "skip", "linear-output"],
)
def test_graph_network_trains_above_chance_on_digits(changes, check):
    trainer = Trainer(_config(**changes), quiet=True)
    assert isinstance(trainer.net, GraphNetwork) and check(trainer.net)
    test = trainer.run().history["test_error"].values
    assert np.all(np.isfinite(test))
    assert test[-1] < CHANCE - 0.15, test
    assert test[-1] < test[0], test  # it learned during the run


def test_random_feedback_is_not_the_transpose_and_stays_fixed():
    trainer = Trainer(_config(feedback="random", epochs=1), quiet=True)
    c = trainer.net.coupling("h1->y")
    B0 = c.B.copy()
    assert not np.allclose(B0, c.W.T)
    trainer.run()
    np.testing.assert_array_equal(c.B, B0)
    assert "h1->y.B" not in trainer.net.parameters()


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(feedback="mirror"), "unknown feedback 'mirror'"),
        (dict(feedback_scale=0.5), "applies to feedback 'scaled' only"),
        (dict(feedback="scaled", feedback_scale=float("nan")), "feedback_scale is nan"),
        (dict(output_activation="relu"), "unknown output activation 'relu'"),
        (dict(skip="1-0"), "skip 1-0"),
        (dict(skip="0-1"), "skip 0-1"),
        (dict(skip="0-5"), "skip 0-5"),
        (dict(skip="a"), "skip 'a'"),
        (dict(skip="0-2", cost="cross-entropy"), "the readout 'y' reads state layers only"),
    ],
)
def test_bad_network_options_raise_naming_them(changes, words):
    settings = dict(get_preset("digits").config.to_flat(), **changes)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        TrainConfig.from_dict(settings).validate()
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- checkpoints


def _resume_equals_whole(tmp_path, changes):
    settings = dict(epochs=3, limit=200, **changes)
    whole = Trainer(_config(**settings), quiet=True)
    whole.run()
    part = Trainer(_config(**settings, output=str(tmp_path / "run")), quiet=True)
    part.run(epochs=2)
    path = tmp_path / "run" / "checkpoint.npz"
    resumed = Trainer.from_checkpoint(path, quiet=True)
    resumed.run()
    return whole, resumed, path


@pytest.mark.parametrize(
    "changes",
    [
        dict(feedback="free", skip="0-2", momentum=0.5),  # learned B, momentum buffers vP
        dict(feedback="random", output_activation="identity", lrs=(0.02, 0.01)),
    ],
    ids=["free-skip-momentum", "random-linear"],
)
def test_graph_checkpoint_resumes_exactly(tmp_path, changes):
    whole, resumed, path = _resume_equals_whole(tmp_path, changes)
    with np.load(path) as z:
        assert str(z["format"]) == "eqprop-graph-checkpoint-1"
        assert "eqprop_version" in z and "graph" in z
    assert isinstance(resumed.net, GraphNetwork)
    a, b = whole.net.parameters(), resumed.net.parameters()
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    for c, d in zip(whole.net.couplings, resumed.net.couplings):
        if c.B is not None:
            np.testing.assert_array_equal(c.B, d.B, err_msg=c.name)
    for k in ("train_loss", "test_loss", "valid_loss"):
        np.testing.assert_array_equal(
            whole.history_dataset()[k].values, resumed.history_dataset()[k].values, err_msg=k
        )


def test_chain_checkpoint_keeps_todays_format(tmp_path):
    whole, resumed, path = _resume_equals_whole(tmp_path, {})
    with np.load(path) as z:
        assert str(z["format"]) == "eqprop-checkpoint-1"
        assert "W0" in z and "graph" not in z
    assert type(resumed.net) is Network
    for a, b in zip(whole.net.weights, resumed.net.weights):
        np.testing.assert_array_equal(a, b)


def _rewrite(path, **entries):
    with np.load(path) as z:
        arrays = dict(z)
    arrays.update({k: np.asarray(v) for k, v in entries.items()})
    np.savez(path, **arrays)


def test_unknown_checkpoint_format_names_the_version_that_wrote_it(tmp_path):
    from eqprop import __version__
    from eqprop.train import CheckpointError, load_checkpoint

    part = Trainer(_config(epochs=1, limit=50, feedback="random", output=str(tmp_path)), quiet=True)
    part.run()
    path = tmp_path / "checkpoint.npz"
    load_checkpoint(path)  # fine as written
    _rewrite(path, format="eqprop-graph-checkpoint-7", eqprop_version="9.3.1")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "'eqprop-graph-checkpoint-7'" in message and "eqprop 9.3.1" in message
    assert f"eqprop {__version__} reads eqprop-checkpoint-1 and eqprop-graph-checkpoint-1" in (
        message
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    "entries, words",
    [
        (dict(param_names='["h1->y.W"]'), "param_names is"),
        (dict(graph='{"layers": []}'), "graph describes another network"),
        (dict(param0=np.zeros((3, 3), np.float32)), "param0 has dtype"),
        (dict(fixed0=np.full((10, 64), np.nan, np.float32)), "fixed0 holds 640 NaN"),
    ],
)
def test_damaged_graph_checkpoint_names_the_entry(tmp_path, entries, words):
    from eqprop.train import CheckpointError, load_checkpoint

    part = Trainer(_config(epochs=1, limit=50, feedback="random", output=str(tmp_path)), quiet=True)
    part.run()
    path = tmp_path / "checkpoint.npz"
    _rewrite(path, **entries)
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(path)


# ---------------------------------------------------------------- command line


def test_cli_trains_a_feedback_alignment_skip_network_on_digits(tmp_path, capsys):
    from eqprop.cli import main
    from eqprop.train import load_checkpoint

    out = tmp_path / "run"
    argv = ["train", "--preset", "digits", "--epochs", "1", "-q", "-o", str(out)]
    rc = main([*argv, "--feedback", "random", "--skip", "0-2", "--output-activation", "sigmoid"])
    assert rc == 0
    assert "test error:" in capsys.readouterr().out
    config, arrays = load_checkpoint(out / "checkpoint.npz")
    f = config.to_flat()
    assert (
        f["feedback"],
        f["skip"],
        f["output_activation"],
    ) == ("random", "0-2", "sigmoid")
    assert str(arrays["format"]) == "eqprop-graph-checkpoint-1"
    graph = Trainer(config.replace(output=None), quiet=True).net
    assert graph.coupling("h1->y").feedback == "random"
    assert graph.output_layer.activation == "sigmoid"
    assert any((c.source, c.target) == ("x", "y") for c in graph.couplings)
    assert float(arrays["history_test_error"][0]) < CHANCE
    # the network options are fixed by the checkpoint
    rc = main(["train", "--resume", str(out / "checkpoint.npz"), "--epochs", "2", "-q"])
    assert rc == 0
    capsys.readouterr()
    rc = main(["train", "--resume", str(out / "checkpoint.npz"), "--feedback", "free", "-q"])
    assert rc == 2 and "cannot change feedback" in capsys.readouterr().err


def test_checkpoint_written_before_the_network_options_resumes(tmp_path):
    # a checkpoint of the previous version: its config has none of the four new fields
    import json

    whole = Trainer(_config(epochs=3, limit=200), quiet=True)
    whole.run()
    part = Trainer(_config(epochs=3, limit=200, output=str(tmp_path / "old")), quiet=True)
    part.run(epochs=2)
    path = tmp_path / "old" / "checkpoint.npz"
    with np.load(path) as z:  # the flat format of that version
        config = TrainConfig.from_json(str(z["config"])).to_flat()
    for key in ("output_activation", "feedback", "feedback_scale", "skip"):
        del config[key]
    _rewrite(path, config=json.dumps(config, sort_keys=True))
    old = Trainer.from_checkpoint(path, quiet=True)
    assert type(old.net) is Network and not old.config.uses_graph
    old.run()
    for a, b in zip(whole.net.weights, old.net.weights):
        np.testing.assert_array_equal(a, b)


def test_chl_scaled_trains_a_scaled_feedback_chain_on_digits():
    """``--rule chl-scaled`` (Xie & Seung 2003) through the Trainer: its gamma is the
    network's feedback scale, and its update is the rescaled CHL contrast."""
    config = _config(rule="chl-scaled", feedback="scaled", feedback_scale=0.2)
    trainer = Trainer(config, quiet=True)
    assert trainer.rule.name == "chl-scaled"
    assert trainer.net.coupling("h1->y").feedback == "scaled"
    test = trainer.run().history["test_error"].values
    assert test[-1] < CHANCE - 0.3, test


def test_chl_scaled_without_scaled_feedback_is_refused():
    with pytest.raises(ValueError, match="rule 'chl-scaled' runs on gamma-scaled feedback"):
        _config(rule="chl-scaled")
