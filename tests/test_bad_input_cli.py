"""Bad command-line input, every subcommand: exit status 2 and one line that names the value.

Each case is ``(argv, needle)``: ``eqprop ARGV`` must exit with status 2, print exactly one
line ``eqprop: error: ...`` on stderr (no traceback, no second prefix) and that line must
contain ``needle``, the offending value or option. ``{tmp}`` in an argument is a fresh
folder, ``{file}`` an existing plain file in it. Every case is refused before any training,
solve or sweep point runs (each takes well under a second). ``eqprop plot``'s errors about
the file's contents are in tests/test_studies_cli.py.
"""

from __future__ import annotations

import pytest

from eqprop.cli import main

TRAIN = [
    (["--preset", "nope"], "'nope'"),
    (["--sizes", "64-x-10"], "64-x-10"),
    (["--sizes", "64"], "'64'"),
    (["--sizes", "64-0-10"], "64-0-10"),
    (["--sizes", "64-10,3"], "64-10,3"),
    (["--sizes", "64--10"], "64--10"),
    (["--sizes", ""], "''"),
    (["--architecture", "64-q-10"], "64-q-10"),
    (["--batch-size", "0"], "batch_size is 0"),
    (["--batch-size", "-5"], "-5"),
    (["--batch-size", "2.5"], "2.5"),
    (["--epochs", "-1"], "epochs is -1"),
    (["--epochs", "two"], "'two'"),
    (["--beta", "0"], "beta = 0"),
    (["--beta", "nan"], "nan"),
    (["--eps", "-1"], "eps is -1"),
    (["--eps", "nan"], "nan"),
    (["--lrs", "0.1"], "1 learning rate(s)"),
    (["--lrs", "nan", "0.1"], "nan"),
    (["--momentum", "1.5"], "1.5"),
    (["--damping", "2"], "damping is 2"),
    (["--free-damping", "-1"], "-1"),
    (["--kind", "boltzmann"], "boltzmann"),
    (["--activation", "relu"], "relu"),
    (["--cost", "hinge"], "hinge"),
    (["--estimator", "two-sided"], "two-sided"),
    (["--nudge", "sideways"], "sideways"),
    (["--init", "zeros"], "zeros"),
    (["--dtype", "float16"], "float16"),
    (["--method", "newton"], "newton"),
    (["--free-method", "newton"], "newton"),
    (["--dataset", "nope"], "'nope'"),
    (["-T", "0"], "T is 0"),
    (["-K", "-1"], "K is -1"),
    (["--max-iter", "0"], "max_iter is 0"),
    (["--limit", "0"], "limit is 0"),
    (["--seed", "-1"], "seed is -1"),
    (["--atol", "-1"], "atol is -1"),
    (["--eval-batch-size", "0"], "eval_batch_size is 0"),
    (["--eval-T", "0"], "eval_T is 0"),
    (["--weight-decay", "nan"], "nan"),
    (["--no-such-option"], "--no-such-option"),
    (["--resume", "{tmp}/none.npz"], "none.npz"),
    (["--resume", "{file}", "--preset", "digits"], "--preset"),
    (["--feedback", "mirror"], "'mirror'"),
    (["--feedback-scale", "0.5"], "applies to feedback 'scaled' only"),
    (["--feedback", "scaled", "--feedback-scale", "nan"], "nan"),
    (["--output-activation", "relu"], "'relu'"),
    (["--skip", "0-1"], "skip 0-1"),
    (["--skip", "2-0"], "skip 2-0"),
    (["--skip", "0-9"], "skip 0-9"),
    (["--skip", "0_2"], "'0_2'"),
    (["--skip", "0-2", "--cost", "cross-entropy"], "skip='0-2'"),
]

COMPARE = [
    (["--sizes", "20-x-10"], "20-x-10"),
    (["--sizes", "20"], "'20'"),
    (["--sizes", "20,0,10"], "20,0,10"),
    (["--gain", "-1"], "'-1'"),
    (["--gain", "nan"], "'nan'"),
    (["--gain", "0"], "'0'"),
    (["--batch-size", "0"], "'0'"),
    (["--batch-size", "-3"], "'-3'"),
    (["--betas", "0,0.1"], "beta"),
    (["--betas", "nan"], "nan"),
    (["--betas", ""], "''"),
    (["--betas", "0.1,x"], "0.1,x"),
    (["--estimators", "two-sided"], "two-sided"),
    (["--estimators", ","], "','"),
    (["--references", "autograd"], "autograd"),
    (["--kind", "boltzmann"], "boltzmann"),
    (["--activation", "relu"], "relu"),
    (["--cost", "hinge"], "hinge"),
    (["--dtype", "float16"], "float16"),
    (["-T", "0"], "'0'"),
    (["-K", "-1"], "'-1'"),
    (["--seed", "-1"], "'-1'"),
    (["--eps", "nan"], "'nan'"),
    (["--rbp-method", "lu"], "lu"),
    (["--frobnicate"], "--frobnicate"),
]

STUDY = [
    (["convergence", "--methods", "foo"], "foo"),
    (["convergence", "--methods", ""], "--methods"),
    (["convergence", "--depths", "1,x"], "1,x"),
    (["convergence", "--depths", "0"], "0"),
    (["convergence", "--tols", "nan"], "nan"),
    (["convergence", "--hidden", "0"], "--hidden"),
    (["convergence", "--n-in", "-2"], "-2"),
    (["convergence", "--batch-size", "0"], "--batch-size"),
    (["convergence", "--max-iter", "0"], "--max-iter"),
    (["convergence", "--kind", "boltzmann"], "boltzmann"),
    (["convergence", "--activation", "relu"], "relu"),
    (["beta-sweep", "--seeds="], "--seeds"),
    (["beta-sweep", "--seeds", "-1"], "-1"),
    (["beta-sweep", "--seeds", "0,a"], "0,a"),
    (["beta-sweep", "--betas", "0.1,abc"], "0.1,abc"),
    (["beta-sweep", "--betas", "inf"], "inf"),
    (["beta-sweep", "--betas", "-0.5"], "-0.5"),
    (["beta-sweep", "--sizes", "20--5"], "20--5"),
    (["beta-sweep", "--sizes", "20-a-5"], "20-a-5"),
    (["beta-sweep", "--estimators", "two-sided"], "two-sided"),
    (["beta-sweep", "--kind", "boltzmann"], "boltzmann"),
    (["beta-sweep", "--cost", "hinge"], "hinge"),
    (["beta-sweep", "--method", "newton"], "newton"),
    (["beta-sweep", "--atol", "nan"], "nan"),
    (["beta-sweep", "--dataset", "nope"], "nope"),
    (["beta-sweep", "--points", "{file}"], "data.txt"),
    (["beta-sweep", "-o", "{tmp}"], "is a folder"),
    (["beta-sweep", "--processes", "0"], "--processes"),
    (["beta-sweep", "--workers", "-1"], "--workers"),
    (["beta-sweep", "--processes", "2", "--workers", "2"], "--workers"),
    (["gdu", "--setting", "nope"], "nope"),
    (["gdu", "-T", "0"], "-T"),
    (["gdu", "--betas", "-0.1"], "-0.1"),
    (["gdu", "--seeds="], "--seeds"),
    (["gdu", "--sizes", "4-x"], "4-x"),
    (["gdu", "--dataset", "nope"], "nope"),
    (["training", "--set", "foo"], "foo"),
    (["training", "--set", "=3"], "=3"),
    (["training", "--set", "nope=3"], "nope"),
    (["training", "--set", "epochs=-1"], "-1"),
    (["training", "--preset", "nope"], "nope"),
    (["training", "--estimators", "bogus"], "bogus"),
    (["training", "--costs", "hinge"], "hinge"),
    (["training", "--seeds", "x"], "'x'"),
    (["nope"], "'nope'"),
]

OTHER = [
    (["study"], "KIND"),
    (["study", "convergence", "--quiet"], "-o/--output"),
    (["plot", "--dpi", "0", "{file}"], "--dpi"),
    (["plot", "{tmp}/missing.nc"], "missing.nc"),
    (["frobnicate"], "frobnicate"),
]

CASES = (
    [(["train", *a, "-q"], n) for a, n in TRAIN]
    + [(["compare", *a], n) for a, n in COMPARE]
    + [(["study", *a, "-o", "{tmp}/x.nc"], n) for a, n in STUDY]
    + OTHER
)


def _fill(argv: list[str], tmp) -> list[str]:
    (tmp / "data.txt").write_text("not a checkpoint, not a folder\n")
    out = []
    for a in argv:
        a = a.replace("{file}", str(tmp / "data.txt")).replace("{tmp}", str(tmp))
        out.append(a)
    # a study case that names its own -o keeps it (argparse: the last one wins, so put
    # the case's own -o last)
    if "-o" in out[:-2] and out[-2] == "-o":
        out = out[:-2]
    return out


def test_enough_cases():
    assert len(CASES) >= 100


@pytest.mark.parametrize(("argv", "needle"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    rc = main(_fill(argv, tmp_path))
    _, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("eqprop: error: ") and lines[0].count("error:") == 1, lines[0]
    assert needle in lines[0], lines[0]
    assert not list(tmp_path.glob("x.nc*")), "something ran before the input was refused"
