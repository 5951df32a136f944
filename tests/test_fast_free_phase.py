"""The deep presets' fast free phase (``eqprop train --preset scellier2017-2h --fast``, #16).

``--fast`` adds the preset's ``fast`` settings (block Gauss-Seidel over the layers of
each parity on the ``eps = 1`` map, over-relaxed, to ``atol``, from the second epoch);
``free_from_epoch`` keeps the paper's fixed-step free phase before that epoch. The
speed itself is measured in ``benchmarks/bench_deep_phases.py`` (docs/solvers.rst),
never here.
"""

from __future__ import annotations

import numpy as np
import pytest

from eqprop.cli import build_train_parser, config_from_args, main
from eqprop.data import load_dataset
from eqprop.presets import PRESETS, fast_settings
from eqprop.train import TrainConfig, Trainer


def _cfg(argv):
    return config_from_args(build_train_parser().parse_args(argv))


@pytest.mark.parametrize(
    ("name", "T", "atol"), [("scellier2017-2h", 150, 1e-3), ("scellier2017-3h", 500, 1e-3)]
)
def test_fast_adds_the_block_gauss_seidel_free_phase_to_the_preset(name, T, atol):
    plain = _cfg(["--preset", name])
    cfg = _cfg(["--preset", name, "--fast"])
    f = cfg.to_flat()
    assert (f["free_method"], f["free_eps"], f["free_damping"]) == ("gauss-seidel-parity", 1.0, 1.5)
    assert (f["atol"], f["max_iter"], f["free_from_epoch"]) == (atol, T, 2)
    p = plain.to_flat()
    assert p["atol"] == 1e-4  # the preset's own tolerance (unused by its fixed path)
    assert p["free_method"] is None and p["free_from_epoch"] == 1
    # everything else is the preset's: the nudged phases keep the paper's path
    changed = {k for k, v in f.items() if p[k] != v} - {"atol"}
    assert changed == {
        "free_method",
        "free_eps",
        "free_damping",
        "max_iter",
        "free_from_epoch",
        "eval_batch_size",
    }
    assert (p["eval_batch_size"], f["eval_batch_size"]) == (1000, 100)
    assert (f["method"], f["eps"], f["T"], f["K"]) == (p["method"], 0.5, T, p["K"])
    # explicit options still win over --fast
    cfg = _cfg(["--preset", name, "--fast", "--max-iter", "40", "--free-from-epoch", "1"])
    f = cfg.to_flat()
    assert (
        f["max_iter"],
        f["free_from_epoch"],
        f["free_method"],
    ) == (40, 1, "gauss-seidel-parity")


def test_fast_is_refused_where_it_means_nothing(capsys):
    with pytest.raises(ValueError, match="--fast needs --preset"):
        _cfg(["--fast"])
    with pytest.raises(ValueError, match=r"'digits' has no fast setting.*scellier2017-2h"):
        _cfg(["--preset", "digits", "--fast"])
    with pytest.raises(ValueError, match="no fast setting"):
        fast_settings("scellier2017-1h")
    assert {n for n, p in PRESETS.items() if p.fast} == {"scellier2017-2h", "scellier2017-3h"}
    assert main(["train", "--resume", "nothing.npz", "--fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fast cannot be combined with --resume" in err[0]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", data_dir=None)


def _small(**kw):
    base = dict(
        dataset="digits",
        architecture="64-32-16-10",
        T=30,
        K=4,
        lrs=(0.1, 0.05, 0.02),
        epochs=2,
        seed=1,
        limit=300,
        persistent=True,
        free_method="gauss-seidel-parity",
        free_eps=1.0,
        free_damping=1.5,
        max_iter=300,
    )
    base.update(kw)
    return TrainConfig.from_flat(base)


def test_free_from_epoch_runs_the_paper_path_first_then_the_fast_phase(digits):
    """Epoch 1 of a run with free_from_epoch=2 is the run without free settings, to the
    bit (weights, particles, errors); epoch 2 solves its free phases to atol with fewer
    iterations than T; free_from_epoch=1 (default) uses them from the start."""
    late = Trainer(_small(free_from_epoch=2), digits, quiet=True)
    paper = Trainer(
        _small(free_from_epoch=2, free_method=None, free_eps=None, free_damping=None),
        digits,
        quiet=True,
    )
    h1 = late.run(epochs=1).history
    p1 = paper.run(epochs=1).history
    for W, V in zip(late.net.weights, paper.net.weights, strict=True):
        np.testing.assert_array_equal(W, V)
    np.testing.assert_array_equal(late.particles, paper.particles)
    assert float(h1["free_iterations"][0]) == 30.0 == float(p1["free_iterations"][0])
    assert float(h1["test_error"][0]) == float(p1["test_error"][0])
    h2 = late.run(epochs=2).history
    assert float(h2["free_iterations"][1]) < 15 and float(h2["free_converged"][1]) == 1.0
    early = Trainer(_small(), digits, quiet=True).run(epochs=1).history
    assert float(early["free_iterations"][0]) < 30
    with pytest.raises(ValueError, match="free_from_epoch is 0"):
        _small(free_from_epoch=0).validate()
    loaded = TrainConfig.from_json(_small(free_from_epoch=2).to_json())
    assert loaded.dynamics.free_from_epoch == 2
