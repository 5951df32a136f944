"""``eqprop study`` and ``eqprop plot``: run a study to a netCDF file, draw its figure.

``eqprop study KIND -o FILE.nc [study options] [--workers N | --processes N |
--scheduler ADDRESS] [--points DIR] [--plot FIG.png] [--quiet]``

KIND is ``convergence``, ``beta-sweep``, ``gdu``, ``training``, ``rules`` or
``alignment``. Finished
points are kept in ``--points`` (default ``FILE.nc.points/``), so running the same command
again after an interruption computes only the missing points. Lists are comma-separated
(``--betas 0.001,0.01,0.1``), layer sizes as in ``eqprop train`` (``--sizes 784-500-10`` or
``784,500,10``). The flags are those of ``eqprop train`` and ``eqprop compare`` where the
concept is the same (``docs/cli.rst``); the old ``--out``, ``--batch``, ``--kind-net`` and
``--data`` still work, with a note.

``eqprop plot FILE.nc [-o FIG.png]`` draws the study's standard figure.

Both return 0 on success; bad input raises ValueError (a
:class:`~eqprop._cli_options.UsageError` for the options themselves; ``eqprop`` prints it
as one line and exits 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eqprop._cli_options import (
    Parser,
    UsageError,
    deprecated_alias,
    float_list,
    int_list,
    name_list,
    nonnegative_int,
    positive_float,
    positive_int,
    sizes,
)
from eqprop.network import ACTIVATIONS

__all__ = ["STUDIES", "plot_main", "study_main"]

STUDIES = ("convergence", "beta-sweep", "gdu", "training", "rules", "alignment")


def _keyvalue(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r} (empty KEY)")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


_KINDS = ["hopfield", "prototypical"]
_DTYPES = ["float32", "float64"]
_DATASETS_HELP = "digits, mnist or fashion-mnist"


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output and execution")
    # Not required=True: argparse would then refuse the hidden alias --out (study_main
    # checks it instead).
    out = g.add_argument(
        "-o", "--output", help="netCDF file of the combined dataset (required, no default)"
    )
    deprecated_alias(g, "--out", out)
    g.add_argument(
        "--points", help="folder of per-point files, reused on a rerun (default: OUTPUT.points)"
    )
    ex = g.add_mutually_exclusive_group()
    ex.add_argument(
        "--workers",
        type=positive_int,
        help="local Dask cluster of N worker processes (default: run in this process)",
    )
    ex.add_argument(
        "--processes",
        type=positive_int,
        help="local process pool of N processes (default: run in this process)",
    )
    ex.add_argument("--scheduler", help="address of a running Dask scheduler (default: none)")
    g.add_argument("--plot", help="also draw the standard figure to this file (default: no figure)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _network(p: argparse.ArgumentParser, kind: bool = True, dtype: bool = True) -> None:
    """Options naming a network's kind, activation and dtype, as in eqprop train."""
    if kind:
        k = p.add_argument("--kind", default="hopfield", choices=_KINDS, help="network kind")
        deprecated_alias(p, "--kind-net", k)
    p.add_argument(
        "--activation", default="hardsigmoid", choices=list(ACTIVATIONS), help="activation"
    )
    if dtype:
        p.add_argument("--dtype", default="float64", choices=_DTYPES, help="floating type")


def _batch_size(p: argparse.ArgumentParser, default: int | None, help: str) -> None:
    b = p.add_argument("--batch-size", type=positive_int, default=default, help=help)
    deprecated_alias(p, "--batch", b)


def _dataset(p: argparse.ArgumentParser, help: str) -> None:
    d = p.add_argument("--dataset", default=None, help=help)
    deprecated_alias(p, "--data", d)


def _seeds(p: argparse.ArgumentParser, default: list[int], what: str) -> None:
    p.add_argument("--seeds", type=int_list, default=default, help=f"comma-separated {what} seeds")


def _sizes(p: argparse.ArgumentParser, default: list[int] | None, note: str = "") -> None:
    p.add_argument("--sizes", type=sizes, default=default, help="layer sizes, input first" + note)


def _betas(p: argparse.ArgumentParser, default: list[float] | None, help: str) -> None:
    p.add_argument("--betas", type=float_list, default=default, help=help)


def _estimators(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--estimators",
        type=name_list,
        default=["one-sided", "random-sign", "symmetric"],
        help="comma-separated EP estimators",
    )


def _solver(
    p: argparse.ArgumentParser,
    *,
    atol: float | None = None,
    max_iter: int | None = None,
    eps: bool = False,
    method: bool = False,
) -> None:
    """The phases' solver options (the given ones, in this order): --eps, --method,
    --atol, --max-iter."""
    if eps:
        p.add_argument("--eps", type=positive_float, default=0.5, help="step of the hopfield kind")
    if method:
        p.add_argument("--method", default="picard", help="solver method of the phases")
    if atol is not None:
        p.add_argument("--atol", type=positive_float, default=atol, help="solver tolerance")
    if max_iter is not None:
        p.add_argument(
            "--max-iter", type=positive_int, default=max_iter, help="solver iteration cap"
        )


def _settings(p: argparse.ArgumentParser, metavar: str, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable, JSON values) into ``args.overrides``."""
    p.add_argument(
        "--set",
        dest="overrides",
        type=_keyvalue,
        action="append",
        default=[],
        metavar=metavar,
        help=help,
    )


def _add_convergence(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--methods",
        type=name_list,
        default=["picard", "anderson", "broyden", "gauss-seidel"],
        help="comma-separated solver methods",
    )
    p.add_argument(
        "--depths", type=int_list, default=[1, 2, 3], help="comma-separated hidden-layer counts"
    )
    p.add_argument(
        "--tols", type=float_list, default=[1e-2, 1e-4, 1e-6], help="comma-separated tolerances"
    )
    p.add_argument("--hidden", type=positive_int, default=32, help="units per hidden layer")
    p.add_argument("--n-in", type=positive_int, default=64, help="input units")
    p.add_argument("--n-out", type=positive_int, default=10, help="output units")
    _batch_size(p, 8, "samples per point")
    _solver(p, max_iter=500)
    _solver(p, eps=True)
    _network(p)
    p.add_argument("--seed", type=nonnegative_int, default=0, help="network and batch seed")


def _add_beta_sweep(p: argparse.ArgumentParser) -> None:
    _betas(p, None, "comma-separated nudging strengths > 0 (default: 8 from 1e-3 to 1)")
    _estimators(p)
    _seeds(p, [0, 1, 2, 3], "batch")
    _sizes(p, [20, 16, 5])
    _batch_size(p, 8, "samples per seed")
    _network(p)
    p.add_argument(
        "--cost", default="squared", choices=["squared", "cross-entropy"], help="output cost"
    )
    _solver(p, eps=True, method=True, atol=1e-11, max_iter=20000)
    p.add_argument("--net-seed", type=nonnegative_int, default=0, help="weights seed")
    _dataset(p, f"{_DATASETS_HELP} (default: uniform random inputs)")


def _add_gdu(p: argparse.ArgumentParser) -> None:
    _betas(p, [1e-3, 1e-2, 1e-1], "comma-separated nudging strengths > 0")
    _seeds(p, [0, 1, 2], "network/batch")
    p.add_argument(
        "--setting",
        default="toy",
        help="toy, prototypical or energy-based (the paper code's settings), or none",
    )
    _sizes(p, None, " (default: --setting's)")
    p.add_argument(
        "-T", "--T", type=positive_int, default=None, help="free-phase steps (default: --setting's)"
    )
    p.add_argument(
        "-K", "--K", type=positive_int, default=None, help="nudged steps (default: --setting's)"
    )
    p.add_argument(
        "--eps", type=positive_float, default=None, help="step size (default: --setting's)"
    )
    p.add_argument(
        "--continual-lr",
        dest="continual_lr",
        type=positive_float,
        default=None,
        help="continual EP: update the parameters with this learning rate after every "
        "nudged step (default: none, EP with fixed parameters)",
    )
    _batch_size(p, None, "samples per seed (default: --setting's)")
    _dataset(p, f"{_DATASETS_HELP} (default: --setting's)")


def _add_rules(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rules",
        type=name_list,
        default=None,
        help="comma-separated rules (default: all of studies.rules.RULES)",
    )
    p.add_argument(
        "--strengths",
        type=float_list,
        default=None,
        help="comma-separated rule parameters in (0, 1): beta, eta, lambda (default: 1e-3..0.9)",
    )
    _seeds(p, [0, 1, 2], "network/batch")
    _sizes(p, [20, 16, 5])
    _batch_size(p, 8, "samples per seed")
    _network(p, dtype=False)
    _solver(p, eps=True, atol=1e-11, max_iter=20000)
    p.add_argument(
        "-T", "--T", type=positive_int, default=200, help="free steps differentiated by bptt"
    )
    p.add_argument("--net-seed", type=nonnegative_int, default=0, help="weights seed offset")
    _dataset(p, f"{_DATASETS_HELP} (default: uniform random inputs)")


def _add_alignment(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--architectures",
        type=name_list,
        default=["784-500-10", "784-500-500-10"],
        help="comma-separated layer sizes, e.g. 784-500-10,784-500-500-10",
    )
    p.add_argument(
        "--runs",
        type=name_list,
        default=None,
        help="comma-separated runs (default: all of studies.alignment.RUNS)",
    )
    _dataset(p, f"{_DATASETS_HELP} (default: mnist)")
    p.add_argument("--n-train", type=positive_int, default=2000, help="training samples used")
    p.add_argument("--n-test", type=positive_int, default=2000, help="test samples used")
    p.add_argument("--epochs", type=nonnegative_int, default=3, help="training epochs")
    p.add_argument(
        "--ref-batch", type=positive_int, default=32, help="samples of the measurement batch"
    )
    p.add_argument("--beta", type=positive_float, default=1.0, help="nudging (one-sided)")
    p.add_argument(
        "--homeostasis",
        type=positive_float,
        default=300.0,
        help="strength of the vf-ep+homeostasis run",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="weights/feedback seed")
    p.add_argument("--atol", type=positive_float, default=1e-9, help="measurement tolerance")
    _settings(
        p,
        "ARCH:KEY=VALUE",
        "training setting of one architecture, e.g. 784-500-10:lrs=[0.1,0.05] "
        "(default: studies.alignment.DEFAULTS)",
    )


def _add_training(p: argparse.ArgumentParser) -> None:
    _estimators(p)
    _seeds(p, [0, 1, 2], "training")
    p.add_argument(
        "--costs", type=name_list, default=["squared"], help="comma-separated output costs"
    )
    p.add_argument(
        "--preset",
        default=None,
        help="start from an eqprop train preset (default: a quick digits setting)",
    )
    _settings(p, "KEY=VALUE", "TrainConfig setting (JSON value), repeatable (default: none)")


#: The subcommands of ``eqprop study`` in the order of ``--help``: name, help, options.
_SUBCOMMANDS = (
    ("convergence", "solver residual/energy per iteration", _add_convergence),
    ("beta-sweep", "bias/variance of EP estimators versus beta", _add_beta_sweep),
    ("gdu", "EP nudged-phase updates versus BPTT (GDU)", _add_gdu),
    ("rules", "every learning rule's update against the exact gradient", _add_rules),
    ("alignment", "angle(W^T, B) and cosine to the exact gradient over training", _add_alignment),
    ("training", "train/test error per epoch", _add_training),
)


def _parser() -> argparse.ArgumentParser:
    top = Parser(
        prog="eqprop study",
        description="Run a study; each grid point is saved as it finishes (resumable).",
    )
    sub = top.add_subparsers(dest="study", required=True, metavar="KIND", parser_class=Parser)
    for name, help, add_options in _SUBCOMMANDS:
        p = sub.add_parser(name, help=help)
        add_options(p)
        _common(p)
    return top


def _check_paths(output: Path, points: Path) -> None:
    """Refuse an output that is a folder and a points folder that is a file, up front."""
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a .nc file name")
    if points.exists() and not points.is_dir():
        raise ValueError(f"--points {points} is a file; give a folder (or remove the file)")


def _check_before_running(args: argparse.Namespace, base: dict[str, Any] | None) -> None:
    """Refuse settings that every point of the study would fail on, before any runs.

    A point's own ValueError would otherwise surface only after the sweep, as failed
    points (exit status 1) rather than one line about the value (exit status 2).
    """
    if args.study == "convergence" and any(d < 1 for d in args.depths):
        raise ValueError(
            f"--depths {','.join(map(str, args.depths))}: each depth (number of hidden "
            "layers) must be >= 1"
        )
    if getattr(args, "method", None) is not None:
        from eqprop.phases import METHOD_NAMES

        if args.method not in METHOD_NAMES:
            raise ValueError(
                f"--method {args.method!r}: unknown method; choose one of {', '.join(METHOD_NAMES)}"
            )
    if getattr(args, "dataset", None) is not None:
        from eqprop.data import _canonical

        _canonical(args.dataset)  # ValueError naming the data set and the valid names
    if args.study == "training":
        from eqprop.network import COSTS
        from eqprop.train import TrainConfig

        for cost in args.costs:
            if cost not in COSTS:
                raise ValueError(f"--costs: unknown cost {cost!r}; choose from {', '.join(COSTS)}")
        for estimator in args.estimators:
            settings = dict(base or {})
            settings.update(estimator=estimator, cost=args.costs[0], seed=args.seeds[0])
            settings["output"] = None
            try:
                TrainConfig.from_dict(settings).validate()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"--set/--preset/--estimators: {exc}") from None


def _network_setup(args: argparse.Namespace, **fixed: Any) -> Any:
    """The study's network from --sizes, --kind and --activation (and ``fixed`` fields)."""
    from .setup import NetworkSetup

    return NetworkSetup(sizes=args.sizes, kind=args.kind, activation=args.activation, **fixed)


def _batch_setup(args: argparse.Namespace) -> Any:
    """The study's batch from --batch-size and --dataset."""
    from .setup import BatchSetup

    return BatchSetup(size=args.batch_size, data=args.dataset)


def _solver_setup(args: argparse.Namespace, **fixed: Any) -> Any:
    """The study's phases from --eps, --atol and --max-iter (and ``fixed`` fields)."""
    from .setup import SolverSetup

    return SolverSetup(eps=args.eps, atol=args.atol, max_iter=args.max_iter, **fixed)


def _sweep_options(args: argparse.Namespace, command: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of :func:`studies.sweep.sweep` that every subcommand passes:
    output file and points folder (checked, the output's folder created), where the points
    run, progress, the command recorded. Refuses negative ``--seeds``."""
    out = Path(args.output)
    points = Path(args.points) if args.points else out.with_name(out.name + ".points")
    _check_paths(out, points)
    seeds = getattr(args, "seeds", None) or []
    if any(s < 0 for s in seeds):
        raise ValueError(f"--seeds {','.join(map(str, seeds))}: seeds must be integers >= 0")
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    return dict(
        out_dir=points,
        path=out,
        workers=args.workers,
        processes=args.processes,
        scheduler=args.scheduler,
        progress=False if args.quiet else None,
        command=list(command),
    )


def _run_convergence(args: argparse.Namespace, sweep_kwargs: dict[str, Any]) -> Any:
    from .convergence import solver_convergence

    return solver_convergence(
        args.methods,
        args.depths,
        tols=args.tols,
        hidden=args.hidden,
        n_in=args.n_in,
        n_out=args.n_out,
        batch=args.batch_size,
        max_iter=args.max_iter,
        eps=args.eps,
        kind=args.kind,
        activation=args.activation,
        dtype=args.dtype,
        seed=args.seed,
        **sweep_kwargs,
    )


def _run_beta_sweep(args: argparse.Namespace, sweep_kwargs: dict[str, Any]) -> Any:
    from .beta import BetaSetup, beta_sweep

    extra = {} if args.betas is None else {"betas": args.betas}
    setup = BetaSetup(
        network=_network_setup(args, cost=args.cost, dtype=args.dtype),
        batch=_batch_setup(args),
        solver=_solver_setup(args, method=args.method),
        seeds=args.seeds,
        net_seed=args.net_seed,
    )
    return beta_sweep(estimators=args.estimators, setup=setup, **extra, **sweep_kwargs)


def _run_rules(args: argparse.Namespace, sweep_kwargs: dict[str, Any]) -> Any:
    from .rules import RulesSetup, rules_study

    grid: dict[str, Any] = {}
    if args.rules is not None:
        grid["rules"] = args.rules
    if args.strengths is not None:
        grid["strengths"] = args.strengths
    setup = RulesSetup(
        network=_network_setup(args),
        batch=_batch_setup(args),
        solver=_solver_setup(args),
        seeds=args.seeds,
        net_seed=args.net_seed,
        T_bptt=args.T,
    )
    return rules_study(setup=setup, **grid, **sweep_kwargs)


def _run_alignment(args: argparse.Namespace, sweep_kwargs: dict[str, Any]) -> Any:
    from .alignment import RUNS, AlignmentSetup, MeasurementSetup, TrainingSetup, alignment_study

    per_arch: dict[str, dict[str, Any]] = {}
    for key, value in args.overrides:
        arch, sep, field = key.rpartition(":")
        if not sep or not arch:
            raise UsageError(f"--set {key}=...: expected ARCH:KEY=VALUE")
        per_arch.setdefault(arch, {})[field] = value
    training = TrainingSetup(
        dataset=args.dataset or "mnist",
        n_train=args.n_train,
        n_test=args.n_test,
        epochs=args.epochs,
        beta=args.beta,
        homeostasis=args.homeostasis,
        seed=args.seed,
        base=per_arch,
    )
    measurement = MeasurementSetup(ref_batch=args.ref_batch, atol=args.atol)
    return alignment_study(
        args.architectures,
        args.runs if args.runs is not None else RUNS,
        AlignmentSetup(training, measurement),
        **sweep_kwargs,
    )


def _run_gdu(args: argparse.Namespace, sweep_kwargs: dict[str, Any]) -> Any:
    from .gdu import gdu_study

    given = {"sizes": args.sizes, "T": args.T, "K": args.K, "eps": args.eps}
    given |= {"continual_lr": args.continual_lr}
    given |= {"batch": args.batch_size, "data": args.dataset}
    over = {k: v for k, v in given.items() if v is not None}
    setting = None if args.setting in ("", "none") else args.setting
    return gdu_study(args.betas, args.seeds, setting=setting, **over, **sweep_kwargs)


def _run_training(args: argparse.Namespace, sweep_kwargs: dict[str, Any]) -> Any:
    from .training import QUICK, training_curves

    base: dict[str, Any] = dict(QUICK)
    if args.preset:
        from eqprop.presets import get_preset

        base = get_preset(args.preset).config.to_dict()
    base.update(dict(args.overrides))
    _check_before_running(args, base)
    return training_curves(args.estimators, args.seeds, args.costs, base=base, **sweep_kwargs)


#: Subcommand -> the function that runs its study from the parsed options.
_RUNNERS = {
    "convergence": _run_convergence,
    "beta-sweep": _run_beta_sweep,
    "gdu": _run_gdu,
    "rules": _run_rules,
    "alignment": _run_alignment,
    "training": _run_training,
}


def _run(args: argparse.Namespace, command: Sequence[str]) -> Any:
    sweep_kwargs = _sweep_options(args, command)
    if args.study != "training":  # training checks its settings with the preset's base
        _check_before_running(args, None)
    return _RUNNERS[args.study](args, sweep_kwargs)


def study_main(argv: Sequence[str]) -> int:
    """Entry point of ``eqprop study``; returns the exit status (0 on success)."""
    argv = list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.output is None:
        raise UsageError(
            f"the following argument is required: -o/--output (see 'eqprop study "
            f"{args.study} --help')"
        )
    ds = _run(args, ["eqprop", "study", *argv])
    print(f"wrote {args.output} ({', '.join(f'{k}={v}' for k, v in ds.sizes.items())})")
    if args.plot:
        from .plot import plot_study

        plot_study(ds, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _plot_parser() -> argparse.ArgumentParser:
    p = Parser(prog="eqprop plot", description="Draw a study's figure.")
    p.add_argument("path", help="netCDF file written by 'eqprop study'")
    out = p.add_argument("-o", "--output", help="image file (default: PATH with suffix .png)")
    deprecated_alias(p, "--out", out)
    p.add_argument("--dpi", type=positive_int, default=120, help="resolution of the image")
    return p


def plot_main(argv: Sequence[str]) -> int:
    """Entry point of ``eqprop plot FILE.nc [-o FIG.png]``; returns 0 on success."""
    args = _plot_parser().parse_args(list(argv))
    if not Path(args.path).exists():
        raise FileNotFoundError(f"no such file: {args.path}")
    from .plot import plot_study

    out = args.output or str(Path(args.path).with_suffix(".png"))
    plot_study(args.path, out, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from eqprop.cli import main

    sys.exit(main(["study", *sys.argv[1:]]))
