"""The ``eqprop`` command: end-to-end train run, presets, bad input -> exit 2."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from eqprop import cli
from eqprop.cli import main


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("eqprop: error:")
    return lines[0]


def test_train_preset_digits_end_to_end(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--preset",
            "digits",
            "--epochs",
            "1",
            "--limit",
            "100",
            "--quiet",
            "--output",
            str(tmp_path),
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "test error:" in out
    assert err == ""  # --quiet
    assert (tmp_path / "history.nc").is_file()
    assert (tmp_path / "checkpoint.npz").is_file()
    from eqprop.provenance import open_netcdf
    from eqprop.train import TrainConfig

    ds = open_netcdf(tmp_path / "history.nc")
    cfg = TrainConfig.from_json(ds.attrs["config"])
    f = cfg.to_flat()
    assert f["preset"] == "digits" and f["epochs"] == 1 and f["limit"] == 100
    assert ds.attrs["history"].startswith("eqprop train --preset digits")

    # resume for one more epoch; the checkpoint carries the configuration
    ckpt = str(tmp_path / "checkpoint.npz")
    rc = main(["train", "--resume", ckpt, "--epochs", "2", "--lrs", "0.1", "0.05", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "after 2 epoch(s)" in out  # restating an unchanged setting is allowed
    rc = main(["train", "--resume", ckpt, "--epochs", "3", "--beta", "0.5", "-q"])
    _, err = capsys.readouterr()
    assert rc == 2
    assert "cannot change beta" in _one_error_line(err)


def test_progress_lines_when_not_a_tty(capsys):
    rc = main(["train", "--preset", "digits", "--epochs", "1", "--limit", "40"])
    _, err = capsys.readouterr()
    assert rc == 0
    assert "epoch 1/1" in err and "samples/s" in err
    assert "\r" not in err  # plain lines in logs, no progress bar


def test_preset_values_overridden_by_options():
    from eqprop.cli import build_train_parser, config_from_args

    args = build_train_parser().parse_args(
        ["--preset", "scellier2017-1h", "--epochs", "3", "--lrs", "0.2", "0.1", "--no-persistent"]
    )
    cfg = config_from_args(args)
    f = cfg.to_flat()
    assert f["architecture"] == "784-500-10" and f["T"] == 20 and f["K"] == 4
    assert f["epochs"] == 3 and f["lrs"] == (0.2, 0.1) and f["persistent"] is False
    assert f["estimator"] == "random-sign" and f["beta"] == 1.0
    assert (
        f["free_method"],
        f["free_eps"],
        f["free_damping"],
        f["damping"],
    ) == (None, None, None, 1)
    options = ["--free-method", "gauss-seidel-parity", "--free-eps", "1", "--free-damping", "1.5"]
    args = build_train_parser().parse_args(["--preset", "scellier2017-2h", *options])
    cfg = config_from_args(args)
    f = cfg.to_flat()
    assert (
        f["free_method"],
        f["free_eps"],
        f["free_damping"],
    ) == ("gauss-seidel-parity", 1.0, 1.5)
    assert (
        f["method"],
        f["eps"],
        f["T"],
        f["K"],
    ) == ("fused", 0.5, 150, 6)  # script net2
    assert (f["shuffle"], f["eval_persistent"]) == (
        False,
        True,
    )  # as the script
    options = ["--preset", "digits", "--no-shuffle", "--eval-persistent"]
    cfg = config_from_args(build_train_parser().parse_args(options))
    f = cfg.to_flat()
    assert (f["shuffle"], f["eval_persistent"]) == (False, True)


@pytest.mark.parametrize(
    "name", ["scellier2017-1h", "scellier2017-2h", "scellier2017-3h", "ernoult2019-p1h", "digits"]
)
def test_every_preset_is_a_valid_config(name):
    from eqprop.cli import build_train_parser, config_from_args

    cfg = config_from_args(build_train_parser().parse_args(["--preset", name]))
    assert len(cfg.to_flat()["lrs"]) == len(cfg.sizes) - 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--preset", "nope"], "unknown preset"),
        (["--dataset", "nope", "--sizes", "64-10", "--lrs", "0.1"], "unknown dataset"),
        (["--preset", "digits", "--sizes", "784-20-10", "--lrs", "0.1", "0.1"], "784"),
        (["--preset", "digits", "--beta", "0"], "beta = 0"),
        (["--preset", "digits", "--lrs", "0.1"], "learning rate"),
        (["--preset", "digits", "--sizes", "64-a-10"], "64-a-10"),
        (["--preset", "digits", "--kind", "boltzmann"], "boltzmann"),
        (["--preset", "digits", "--free-method", "newton"], "unknown method 'newton'"),
        (["--preset", "digits", "--free-method", "rk4", "--free-damping", ".5"], "damping applies"),
        (["--preset", "digits", "--damping", "2"], "damping in (0, 2)"),
        (["--preset", "digits", "--momentum", "1.5"], "momentum"),
        (["--preset", "digits", "--batch-size", "0"], "batch_size"),
        (["--preset", "digits", "--no-such-option"], "unrecognized"),
        (["--preset", "digits", "--epochs", "two"], "invalid int"),
        (["--resume", "/nonexistent/ckpt.npz"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, needle, capsys):
    rc = main(["train", *argv, "--limit", "20", "-q"])
    _, err = capsys.readouterr()
    assert rc == 2
    line = _one_error_line(err)
    assert needle in line


def test_nan_inputs_exit_2(monkeypatch, capsys):
    import eqprop.data as data

    real = data.load_dataset

    def poisoned(*args, **kwargs):
        splits = real(*args, **kwargs)
        x = splits.train.x.copy()
        x[0, 0] = np.nan
        return data.DatasetSplits(data.Split(x, splits.train.labels), splits.valid, splits.test)

    monkeypatch.setattr(data, "load_dataset", poisoned)
    rc = main(["train", "--preset", "digits", "--epochs", "1", "--limit", "30", "-q"])
    _, err = capsys.readouterr()
    assert rc == 2
    assert "NaN" in _one_error_line(err)


def test_subcommands_dispatch_lazily(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("_fake_eqprop_compare")
    fake.compare_main = lambda argv: calls.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "_fake_eqprop_compare", fake)
    monkeypatch.setitem(
        cli._DISPATCH, "compare", ("_fake_eqprop_compare", "compare_main", "compare")
    )
    assert main(["compare", "--a", "1"]) == 0
    assert calls == [["--a", "1"]]

    monkeypatch.setitem(cli._DISPATCH, "study", ("_no_such_module_xyz.cli", "study_main", "s"))
    rc = main(["study", "run"])
    _, err = capsys.readouterr()
    assert rc == 2
    assert "not available" in _one_error_line(err)


def test_top_level_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out, _ = capsys.readouterr()
    assert "train" in out and "compare" in out and "study" in out
    assert main(["frobnicate"]) == 2
    _, err = capsys.readouterr()
    _one_error_line(err)


def test_divergence_is_one_line_exit_1(capsys):
    rc = main(
        [
            "train",
            "--preset",
            "digits",
            "--activation",
            "sigmoid",
            "--lrs",
            "1e30",
            "1e30",
            "--epochs",
            "2",
            "--limit",
            "40",
            "-q",
        ]
    )
    _, err = capsys.readouterr()
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "diverged" in lines[0] and "Traceback" not in err


def test_train_on_valid_prints_no_validation_error(tmp_path, capsys):
    from eqprop.cli import main

    argv = ["train", "--preset", "digits", "--epochs", "1", "--limit", "200"]
    assert main([*argv, "--train-on-valid"]) == 0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "valid error: n/a (no validation split)" in out and "test error:" in out
    # the per-epoch progress line says the same instead of "valid nan%"
    assert "epoch 1/1" in err and "valid n/a  test" in err and "nan" not in err


def test_cross_entropy_with_the_outside_nudge_gets_a_note(capsys):
    """The P-1h preset nudges outside the activation; with --cost cross-entropy that is a
    biased estimate (MNIST: 10.8 % against 1.8 % test error inside), so the command says so
    once on stderr, and not with --nudge inside."""
    from eqprop.cli import main

    argv = ["train", "--preset", "ernoult2019-p1h", "--dataset", "digits", "--epochs", "0"]
    argv += ["--sizes", "64-20-10", "--cost", "cross-entropy"]
    assert main(argv) == 0
    assert "--nudge inside is the exact one" in capsys.readouterr().err
    assert main([*argv, "--nudge", "inside"]) == 0
    assert "--nudge inside" not in capsys.readouterr().err


_CACHE_PROBE = """
import json, os, sys
import numba
import eqprop, eqprop.kernels, solvers._kernels
paths = {}
for mod in (eqprop.kernels, solvers._kernels):
    for name, obj in vars(mod).items():
        cache = getattr(obj, "_cache", None)
        if cache is not None and hasattr(cache, "_cache_path"):
            paths[f"{mod.__name__}.{name}"] = cache._cache_path
print(json.dumps({"env": os.environ.get("NUMBA_CACHE_DIR"), "config": numba.config.CACHE_DIR,
                  "paths": paths}))
"""


@pytest.mark.parametrize("preset_env", [False, True])
def test_numba_cache_is_never_inside_the_package(tmp_path, preset_env):
    """Without NUMBA_CACHE_DIR, every cache=True function of eqprop and solvers caches
    under the user cache folder (XDG_CACHE_HOME/eqprop/numba), not in a __pycache__ beside
    its source (which, in site-packages, outlives the install: README's two commands)."""
    import json
    import os
    import subprocess
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "EQPROP_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    want = tmp_path / "xdg" / "eqprop" / "numba"
    if preset_env:  # the user's choice wins
        want = tmp_path / "mine"
        env["NUMBA_CACHE_DIR"] = str(want)
    run = subprocess.run(
        [sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True, text=True, check=True
    )
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["env"] == got["config"] == str(want)
    assert len(got["paths"]) >= 5
    package_dirs = [Path(cli.__file__).parent, Path(cli.__file__).parents[1] / "solvers"]
    for name, path in got["paths"].items():
        assert Path(path).is_relative_to(want), (name, path)
        assert not any(Path(path).is_relative_to(p) for p in package_dirs), (name, path)

    from eqprop.data import default_cache_dir
    from solvers._numba_cache import default_numba_cache_dir

    assert default_numba_cache_dir() == default_cache_dir() / "numba"


# ---------------------------------------------------------------------- one vocabulary
def _every_parser():
    """(name, parser) of eqprop train, compare, each study KIND and plot."""
    import argparse

    from eqprop.compare import _parser as compare_parser
    from studies.cli import _parser as study_parser
    from studies.cli import _plot_parser

    out = [("train", cli.build_train_parser()), ("compare", compare_parser())]
    study = study_parser()
    (sub,) = [a for a in study._actions if isinstance(a, argparse._SubParsersAction)]
    out += [(f"study {k}", p) for k, p in sub.choices.items()]
    out.append(("plot", _plot_parser()))
    return out


def _visible(parser):
    import argparse

    return [
        a
        for a in parser._actions
        if a.option_strings and a.help is not argparse.SUPPRESS and a.dest != "help"
    ]


#: One flag per concept; the old spellings that must not be shown (they are hidden
#: aliases at most).
_CANONICAL = {
    "sizes": ("--sizes",),
    "output": ("--output", "-o"),
    "batch_size": ("--batch-size",),
    "kind": ("--kind",),
    "dataset": ("--dataset",),
    "T": ("--T", "-T"),
    "K": ("--K", "-K"),
    "quiet": ("--quiet", "-q"),
    "seed": ("--seed",),
    "seeds": ("--seeds",),
    "betas": ("--betas",),
    "estimators": ("--estimators",),
    "eps": ("--eps",),
    "activation": ("--activation",),
    "cost": ("--cost",),
    "dtype": ("--dtype",),
    "max_iter": ("--max-iter",),
    "method": ("--method",),
    "atol": ("--atol",),
    "preset": ("--preset",),
}
_OLD = ("--out", "--batch", "--kind-net", "--architecture", "--arch", "--data", "--lr")


def test_every_option_has_help_and_its_default():
    from eqprop._cli_options import HelpFormatter

    parsers = _every_parser()
    assert len(parsers) == 9  # train, compare, 6 studies, plot
    for name, parser in parsers:
        fmt = HelpFormatter(parser.prog)
        for action in _visible(parser):
            flag = "/".join(action.option_strings)
            assert action.help and len(action.help) > 5, (name, flag)
            takes_value = action.nargs != 0
            text = fmt._get_help_string(action) or ""
            if takes_value and not action.required:
                assert "default" in text, (name, flag, text)
        parser.format_help()  # every help string formats (no stray %)


def test_one_flag_per_concept_across_commands():
    from eqprop import _cli_options as O

    flags_of: dict[str, set[tuple[str, ...]]] = {}
    dest_of: dict[str, set[str]] = {}
    for name, parser in _every_parser():
        shown = {s for a in _visible(parser) for s in a.option_strings}
        assert not shown & set(_OLD), (name, shown & set(_OLD))
        for action in _visible(parser):
            flags_of.setdefault(action.dest, set()).add(tuple(sorted(action.option_strings)))
            for flag in action.option_strings:
                dest_of.setdefault(flag, set()).add(action.dest)
            if action.dest == "sizes":  # one parser of layer sizes everywhere
                assert action.type is O.sizes, name
    for dest, flags in flags_of.items():
        assert len(flags) == 1, (dest, flags)
    for flag, dests in dest_of.items():
        assert len(dests) == 1, (flag, dests)
    for dest, flags in _CANONICAL.items():
        assert flags_of[dest] == {tuple(sorted(flags))}, dest
    # shared by two commands or more -> in the vocabulary table of docs/cli.rst
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "cli.rst").read_text()
    for dest in _CANONICAL:
        for flag in _CANONICAL[dest]:
            assert f"``{flag}" in doc, flag


@pytest.mark.parametrize("text", ["784-500-10", "784,500,10", " 784 - 500 - 10 "])
def test_sizes_accept_dashes_and_commas_everywhere(text):
    from eqprop.compare import _parser as compare_parser
    from studies.cli import _parser as study_parser

    assert cli.build_train_parser().parse_args(["--sizes", text]).sizes == [784, 500, 10]
    assert compare_parser().parse_args(["--sizes", text]).sizes == [784, 500, 10]
    for kind in ("beta-sweep", "gdu"):
        args = study_parser().parse_args([kind, "--sizes", text, "-o", "x.nc"])
        assert args.sizes == [784, 500, 10]


def test_old_spellings_are_hidden_aliases_with_a_note(capsys):
    from eqprop.compare import _parser as compare_parser
    from studies.cli import _parser as study_parser

    a = cli.build_train_parser().parse_args(["--architecture", "4-3-2", "--lr", "0.1", "0.2"])
    assert (a.sizes, a.lrs) == ([4, 3, 2], [0.1, 0.2])
    b = study_parser().parse_args(
        ["beta-sweep", "--batch", "3", "--kind-net", "prototypical", "--out", "y.nc"]
    )
    assert (b.batch_size, b.kind, b.output) == (3, "prototypical", "y.nc")
    _, err = capsys.readouterr()
    notes = err.strip().splitlines()
    assert len(notes) == 5 and all("deprecated; use --" in n for n in notes), notes
    assert "--architecture is deprecated; use --sizes" in err
    assert "--batch" not in compare_parser().format_help().replace("--batch-size", "")


def test_errors_have_one_prefix(capsys):
    for argv in (
        ["train", "--no-such-option"],
        ["compare", "--sizes", "4-x-2"],
        ["study", "gdu", "--seeds=", "-o", "x.nc"],
        ["plot", "--dpi", "0", "x.nc"],
    ):
        assert main(argv) == 2, argv
        _, err = capsys.readouterr()
        line = _one_error_line(err)
        assert line.count("error:") == 1 and "eqprop train:" not in line, line
