"""Conv networks in the Trainer and the CLI (#14): a conv ``architecture``
(``1x8x8-c4k3p1-p2-10``) builds :func:`eqprop.graph.build.conv_network`; training,
evaluation, persistent particles, the solvers' free phase and checkpoints run on it."""

import numpy as np
import pytest

from eqprop.graph import GraphNetwork
from eqprop.graph.build import parse_conv_architecture
from eqprop.presets import get_preset
from eqprop.train import TrainConfig, Trainer

CHANCE = 0.9
ARCH = "1x8x8-c4k3p1-p2-10"  # digits: 8x8 -> 4 channels 8x8 -> 2x2 max pool 4x4 -> 10


def _config(**changes):
    settings = dict(get_preset("digits").config.to_flat())
    settings.update(
        architecture=ARCH, lrs=(0.2, 0.1), T=20, K=6, beta=0.5, estimator="symmetric", epochs=2
    )
    settings.update(changes)
    return TrainConfig.from_dict(settings).validate()


def test_conv_architecture_parses_with_its_shapes():
    arch = parse_conv_architecture("1x28x28-c32k5-p2-c64k5-p2-10")  # Ernoult et al.'s P-conv
    assert arch.shapes() == [(1, 28, 28), (32, 12, 12), (64, 4, 4)]
    assert arch.sizes == (784, 4608, 1024, 10)
    lab = parse_conv_architecture("3x32x32-c128k3p1-p2-c256k3p1-p2-c512k3p1-p2-c512k3-p2-10")
    assert [s[1] for s in lab.shapes()] == [32, 16, 8, 4, 1]
    a = parse_conv_architecture("2x9x9-c3k3s2p1-ap2-20-5")
    assert a.convs[0].stride == 2 and a.convs[0].padding == 1 and a.convs[0].pool == "avg"
    assert a.dense == (20, 5)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("1x28-c3k3-10", "input image CxHxW"),
        ("1x28x28-p2-10", "must follow a conv layer"),
        ("1x28x28-c3k3", "end with the output layer"),
        ("1x8x8-c3k9-10", "too small for kernel 9"),
        ("1x8x8-c3k3-z-10", "cannot read 'z'"),
        ("1x8x8-c3k3-10-c3k3-10", "after a dense layer"),
    ],
)
def test_bad_conv_architecture_is_one_line_naming_it(spec, words):
    with pytest.raises(ValueError, match=words) as info:
        parse_conv_architecture(spec)
    assert spec in str(info.value) and "\n" not in str(info.value)


def test_trainer_trains_a_conv_hopfield_net_on_digits():
    """The conv net through Trainer (fast conv map for the fixed-steps phases, the
    reference contrast, SGD by parameter name) learns: well above chance after 2 short
    epochs, the training error falling (all of digits for 6 epochs: 4 % test error)."""
    trainer = Trainer(_config(kind="hopfield", limit=400), quiet=True)
    assert isinstance(trainer.net, GraphNetwork)
    assert [c.type for c in trainer.net.couplings] == ["conv2d", "dense"]
    res = trainer.run()
    assert res.test_error < 0.75
    train = res.history["train_error"].values
    assert train[-1] < train[0]


@pytest.mark.slow  # compiles the Gauss-Seidel driver for the conv records (about a minute)
def test_free_phase_by_red_black_sweeps_to_tolerance_trains():
    """Another solvers method for the free phase (Gauss-Seidel over the layers of each
    parity, to tolerance, from persistent particles) on the conv net."""
    cfg = _config(
        kind="hopfield",
        limit=200,
        epochs=1,
        free_method="gauss-seidel-parity",
        atol=1e-4,
        persistent=True,
    )
    res = Trainer(cfg, quiet=True).run()
    assert res.test_error < CHANCE
    assert float(res.history["free_converged"].values[-1]) == 1.0


def test_conv_checkpoint_resumes_exactly(tmp_path):
    settings = dict(epochs=2, limit=100, kind="prototypical", momentum=0.5)
    whole = Trainer(_config(**settings), quiet=True)
    whole.run()
    part = Trainer(_config(**settings, output=str(tmp_path / "run")), quiet=True)
    part.run(epochs=1)
    path = tmp_path / "run" / "checkpoint.npz"
    with np.load(path) as z:
        assert str(z["format"]) == "eqprop-graph-checkpoint-1"
        assert '"conv2d"' in str(z["graph"])
    resumed = Trainer.from_checkpoint(path, quiet=True)
    resumed.run()
    a, b = whole.net.parameters(), resumed.net.parameters()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(skip="0-2"), "skip couplings are not available on conv"),
        (dict(lrs=(0.1,)), "1 learning rate(s) given"),
        (dict(architecture="1x8x8-c4k3-q-10"), "cannot read 'q'"),
    ],
)
def test_bad_conv_settings_raise_naming_them(changes, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _config(**changes)


def test_cli_trains_a_conv_net(tmp_path, capsys):
    from eqprop.cli import main

    argv = ["train", "--preset", "digits", "--sizes", ARCH, "--lrs", "0.2", "0.1"]
    argv += ["--epochs", "1", "--limit", "200", "--kind", "hopfield", "-q"]
    assert main(argv) == 0
    assert "test error:" in capsys.readouterr().out
    assert main(["train", "--sizes", "1x8x8-c4k3-p2-p2-10", "-q"]) == 2
    assert "must follow a conv layer" in capsys.readouterr().err
