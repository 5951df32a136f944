"""``benchmarks/train_conv_ep.py``'s within-epoch curve (#14): the monitor it hooks into
the Trainer's minibatch loop counts what the loop sees and leaves the run unchanged."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import benchmark_script
import numpy as np
import pytest

from eqprop.presets import get_preset
from eqprop.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
ARCH = "1x8x8-c4k3p1-p2-10"  # digits: 8x8 -> 4 channels 8x8 -> 2x2 max pool 4x4 -> 10


@pytest.fixture(scope="module")
def script():
    yield from benchmark_script.loaded("train_conv_ep")


def _trainer(**changes) -> Trainer:
    settings = dict(get_preset("digits").config.to_flat())
    settings.update(
        architecture=ARCH, kind="prototypical", lrs=(0.2, 0.1), T=15, K=4, beta=0.5,
        estimator="one-sided", nudge="outside", free_method="picard", atol=1e-4,
        max_iter=15, epochs=2, limit=200, batch_size=20,
    )  # fmt: skip
    settings.update(changes)
    return Trainer(TrainConfig.from_dict(settings).validate(), quiet=True)


@pytest.mark.slow
def test_curve_rows_add_up_to_the_epochs_and_leave_the_run_unchanged(script, tmp_path):
    """Rows every 100 samples of two 200-sample epochs, the test error on the whole test
    split: the wrong predictions of the rows of an epoch add up to the Trainer's own
    training error of that epoch, the row at an epoch's end has the test error the
    Trainer then evaluates (same weights), the free iterations add up too, and the
    history and weights equal those of a run without the monitor (no weight change, no
    draw from the training generator)."""
    plain = _trainer()
    plain.run()
    watched = _trainer()
    n_test = watched.data.test.x.shape[0]
    out = tmp_path / "curve.csv"
    watched.progress.update = script.monitor(watched, 20, 0, 100, n_test, out)
    watched.run()
    for key in ("train_error", "test_error", "free_iterations"):
        assert plain.history[key] == watched.history[key], key
    for name, w in plain.net.parameters().items():
        assert np.array_equal(w, watched.net.parameters()[name]), name
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    n = watched.x_train.shape[0]
    assert [int(r["samples_seen"]) for r in rows] == [100, 200, 300, 400]
    for epoch in (1, 2):
        mine = [r for r in rows if int(r["epoch"]) == epoch]
        wrong = sum(float(r["train_error"]) * 100 for r in mine)
        assert wrong == pytest.approx(watched.history["train_error"][epoch - 1] * n)
        iters = sum(float(r["mean_free_iterations"]) * 100 for r in mine)
        assert iters == pytest.approx(watched.history["free_iterations"][epoch - 1] * n, abs=10)
        assert float(mine[-1]["test_error"]) == watched.history["test_error"][epoch - 1]


def test_curve_every_must_be_a_multiple_of_the_batch(script, monkeypatch):
    argv = ["train_conv_ep.py", "--curve-every", "30", "--batch", "20", "--train", "40"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(ValueError, match="not a multiple of --batch 20"):
        script.main()


def test_conv_figure_draws_every_recorded_curve(tmp_path, monkeypatch):
    """``make_figures.py plot``'s conv figure: one curve per recorded CSV of
    CONV_CURVES, its samples seen from the file (``samples_seen`` or epoch x images)."""
    pytest.importorskip("matplotlib")
    path = ROOT / "docs" / "reproductions" / "make_figures.py"
    spec = importlib.util.spec_from_file_location("make_figures_conv", path)
    mf = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mf
    try:
        spec.loader.exec_module(mf)
        panels = mf.conv_curves()
        recorded = [c for c in mf.CONV_CURVES if (path.parent / c[1]).is_file()]
        assert recorded and sum(len(v) for v in panels.values()) == len(recorded)
        first = dict((label, (seen, test)) for label, seen, test in panels["MNIST, P-conv"])
        seen, test = first["10k images x 3 epochs, 2k test"]
        assert list(seen) == [10000, 20000, 30000] and test[-1] == pytest.approx(6.95)
        seen, test = first["60k, end of each epoch, 10k test"]
        assert list(seen)[:3] == [60000, 120000, 180000] and test[1] == pytest.approx(3.44)
        monkeypatch.setattr(mf, "FIGURES", tmp_path)
        out = mf.plot_conv()
        assert out.parent == tmp_path and out.stat().st_size > 10_000
    finally:
        del sys.modules[spec.name]
