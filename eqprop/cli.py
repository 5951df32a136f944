"""Command line interface: ``eqprop train``, and ``compare`` / ``study`` / ``plot``.

``eqprop train`` builds a :class:`~eqprop.train.TrainConfig` from, in increasing order of
priority, the defaults, a ``--preset`` and the options given explicitly, trains, and
prints the final test error on stdout. Progress goes to stderr (a progress bar on a
terminal, one line per epoch otherwise).

Bad input (unknown preset or dataset, an architecture that does not fit the data, beta
= 0, a learning-rate list of the wrong length, NaN in the inputs, ...) prints one line
``eqprop: error: ...`` on stderr and exits with status 2.

``eqprop compare ARGS`` runs ``eqprop.compare.compare_main(ARGS)``, ``eqprop study ARGS``
runs ``studies.cli.study_main(ARGS)`` and ``eqprop plot ARGS`` runs
``studies.cli.plot_main(ARGS)``; those modules are imported only when asked for.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from eqprop._cli_options import (
    PROG,
    Parser,
    UsageError,
    deprecated_alias,
    error_line,
    finite_float,
    sizes,
)

__all__ = ["UsageError", "build_train_parser", "config_from_args", "main"]

_PROG = PROG

#: Subcommands implemented in other modules: name -> (module, function, what it does).
_DISPATCH: dict[str, tuple[str, str, str]] = {
    "compare": ("eqprop.compare", "compare_main", "compare EP updates with reference gradients"),
    "study": ("studies.cli", "study_main", "run a study (sweeps written as netCDF)"),
    "plot": ("studies.cli", "plot_main", "plot a study's results"),
}

# The train options whose dest is a flat name of TrainConfig (eqprop.config.flat_names()) set
# that setting; the layer sizes' dest "sizes" sets "architecture", "preset" is read apart.
_NOT_SETTINGS = ("preset",)


def _top_parser() -> argparse.ArgumentParser:
    from eqprop import __version__

    lines = ["commands:", "  train     train a network with EP, CHL, GeneRec or coupled learning"]
    for name, (_, _, what) in _DISPATCH.items():
        lines.append(f"  {name:<9} {what}")
    p = Parser(
        prog=_PROG,
        description="Equilibrium Propagation and friends: training, comparisons, studies.",
        epilog="\n".join(lines) + "\n\nRun 'eqprop COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"eqprop {__version__}")
    p.add_argument("command", choices=["train", *_DISPATCH], help=argparse.SUPPRESS)
    return p


def build_train_parser() -> argparse.ArgumentParser:
    """Parser of ``eqprop train`` (every option defaults to None = not given)."""
    from eqprop.config import PRODUCTS
    from eqprop.presets import PRESETS, preset_names
    from eqprop.rules import RULE_OPTIONS

    presets = "\n".join(f"  {n:<16} {PRESETS[n].description}" for n in preset_names())
    p = Parser(
        prog=f"{_PROG} train",
        description=(
            "Train a layered network with Equilibrium Propagation (or CHL, GeneRec, coupled "
            "learning: --rule) and print its test error. "
            "Settings come from the defaults, then --preset, then the options given."
        ),
        epilog=f"presets:\n{presets}\n\nexample: eqprop train --preset digits",
        argument_default=None,
    )
    g = p.add_argument_group("run")
    g.add_argument("--preset", help="named configuration (see below)")
    g.add_argument(
        "--fast",
        action="store_true",
        default=False,
        help="with --preset scellier2017-2h/-3h: the preset's fast free phase (block "
        "Gauss-Seidel to atol; explicit options still win) (default: off, the paper's "
        "fixed T steps)",
    )
    g.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint .npz")
    g.add_argument("--output", "-o", metavar="DIR", help="folder for history.nc/checkpoint.npz")
    g.add_argument("--epochs", type=int, help="total number of epochs")
    g.add_argument("--limit", type=int, help="use only the first N samples of each split")
    g.add_argument("--seed", type=int, help="weights and training random generator seed")
    g.add_argument("--quiet", "-q", action="store_true", default=False, help="no progress")
    g.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="BLAS threads (default: 1 for minibatches up to 256, else one per core)",
    )
    g.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        help="where the run computes (default: cpu; cuda: EP on dense chains and conv "
        "architectures on an NVIDIA GPU with CuPy, refused in one line where there is none; "
        "docs/gpu.rst)",
    )
    g.add_argument(
        "--products",
        choices=PRODUCTS,
        help="operands of the CUDA trainer's matrix products (default: native, the "
        "network's dtype; float16/bfloat16: rounded operands, float32 accumulation and "
        "state; needs --device cuda and --dtype float32; docs/gpu.rst)",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        default=False,
        help="replace the run already in --output (default: refuse)",
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="mnist, fashion-mnist or digits")
    g.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="folder of dataset files")
    g = p.add_argument_group("network")
    arch = g.add_argument(
        "--sizes",
        type=sizes,
        help="layer sizes, input first: 784-500-10 or 784,500,10; or a conv net, "
        "e.g. 1x28x28-c32k5-p2-c64k5-p2-10 (docs/cli.rst)",
    )
    deprecated_alias(g, "--architecture", arch)
    deprecated_alias(g, "--arch", arch)
    g.add_argument("--kind", help="hopfield or prototypical")
    g.add_argument(
        "--activation", help="hardsigmoid, sigmoid, tanh or shifted-sigmoid (1/(1+exp(-4(s-1/2))))"
    )
    g.add_argument("--cost", help="squared or cross-entropy")
    g.add_argument("--init", help="glorot (default) or fan-in (U(+-1/sqrt(n_in)), torch's default)")
    g.add_argument("--dtype", help="float32 or float64")
    g.add_argument(
        "--output-activation",
        dest="output_activation",
        help="activation of the output layer (also identity: a linear output); a graph network",
    )
    g.add_argument(
        "--feedback",
        help="feedback of the couplings between state layers: tied, scaled (gamma W^T), "
        "free (learned B) or random (fixed B, feedback alignment); a graph network",
    )
    g.add_argument(
        "--feedback-scale",
        dest="feedback_scale",
        type=finite_float,
        help="gamma of --feedback scaled",
    )
    g.add_argument(
        "--skip",
        help="skip couplings 'i-j' between layer indices (0 = input), comma-separated, "
        "e.g. 0-2,1-3; a graph network",
    )
    g = p.add_argument_group("dynamics")
    g.add_argument("--method", help="solver method of the phases ('fixed' = exactly T/K steps)")
    g.add_argument(
        "--free-method",
        dest="free_method",
        help="solver of the free phases if not --method, e.g. gauss-seidel-parity (to --atol)",
    )
    g.add_argument("--free-eps", dest="free_eps", type=float, help="step size of the free phases")
    g.add_argument(
        "--free-damping", dest="free_damping", type=float, help="damping of the free phases"
    )
    g.add_argument(
        "--free-from-epoch",
        dest="free_from_epoch",
        type=int,
        help="first epoch whose free phases use the --free-* settings (before: -T steps, "
        "or see --early-free-fixed-steps)",
    )
    g.add_argument(
        "--free-from-sample",
        dest="free_from_sample",
        type=int,
        help="switch to the --free-* settings at this training sample of --free-from-epoch "
        "(a multiple of --batch-size; the samples before keep the earlier epochs' free "
        "phase)",
    )
    g.add_argument(
        "--early-free-fixed-steps",
        dest="early_free_fixed_steps",
        action=argparse.BooleanOptionalAction,
        help="free phases of the epochs before --free-from-epoch: exactly -T steps, or "
        "(--no-early-free-fixed-steps, --method fused) the same steps stopped once the "
        "whole minibatch meets --atol, at most -T and --max-iter",
    )
    g.add_argument("--atol", type=float, help="solver absolute tolerance")
    g.add_argument("--rtol", type=float, help="solver relative tolerance")
    g.add_argument("--max-iter", dest="max_iter", type=int, help="solver iteration cap")
    g.add_argument("-T", "--T", dest="T", type=int, help="free-phase steps")
    g.add_argument("-K", "--K", dest="K", type=int, help="nudged-phase steps")
    g.add_argument("--eps", type=float, help="step size of the Hopfield dynamics")
    g.add_argument(
        "--damping",
        type=float,
        help="damping a of every phase, s <- (1-a) s + a g(s) (prototypical: Ernoult's dt)",
    )
    g.add_argument("--eval-T", dest="eval_T", type=int, help="free-phase steps for evaluation")
    g = p.add_argument_group("learning")
    g.add_argument(
        "--rule",
        help="learning rule: ep, chl, chl-scaled (with --feedback scaled), generec, coupled, "
        "continual (continual EP: an SGD step after every nudged step), recirculation "
        "(unsupervised autoencoder loop on the images, --sizes N-K-N), "
        "holomorphic (complex nudges on a circle, docs/holomorphic.rst), "
        "vf-ep (vector-field EP, with --feedback free), or the backprop baselines rbp, bptt "
        "(docs/rules.rst)",
    )
    for name, option in RULE_OPTIONS.items():  # one option per rule parameter with a flag
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=option.type, help=option.help)
    g.add_argument("--nudge", help="inside or outside (where the nudge enters)")
    lrs = g.add_argument("--lrs", type=float, nargs="+", help="learning rate per weight layer")
    deprecated_alias(g, "--lr", lrs)
    g.add_argument("--momentum", type=float, help="SGD momentum in [0, 1)")
    g.add_argument("--weight-decay", dest="weight_decay", type=float, help="L2 coefficient")
    g.add_argument("--batch-size", dest="batch_size", type=int, help="minibatch size")
    g.add_argument(
        "--eval-batch-size", dest="eval_batch_size", type=int, help="batch of evaluation"
    )
    g.add_argument(
        "--persistent",
        action=argparse.BooleanOptionalAction,
        help="persistent particles (stored free states per training sample)",
    )
    g.add_argument(
        "--shuffle",
        action=argparse.BooleanOptionalAction,
        help="new random order of the training set every epoch (default on)",
    )
    g.add_argument(
        "--train-on-valid",
        dest="train_on_valid",
        action=argparse.BooleanOptionalAction,
        help="train on train + validation (60,000 MNIST images; valid error NaN)",
    )
    g.add_argument(
        "--eval-persistent",
        dest="eval_persistent",
        action=argparse.BooleanOptionalAction,
        help="evaluation free phases start from each sample's previous evaluation state",
    )
    _show_train_defaults(p)
    return p


# Help text of train options whose TrainConfig default is None: what None means.
_NONE_MEANS = {
    "free_method": "--method",
    "free_eps": "--eps",
    "free_damping": "--damping",
    "eval_T": "-T",
    "early_free_fixed_steps": "the --method's",
    "limit": "every sample",
    "data_dir": "$EQPROP_DATA_DIR, else the user cache, downloading once",
    "output": "nothing written",
    "preset": "none",
    "output_activation": "--activation",
    "skip": "none",
    "resume": "a new run",
}


def _field(dest: str) -> str:
    return "architecture" if dest == "sizes" else dest


def _show_train_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: X)`` to each train option's help, X from TrainConfig."""
    from eqprop.config import flat_defaults

    defaults = flat_defaults()
    for action in parser._actions:
        field = _field(action.dest)
        if action.help in (None, argparse.SUPPRESS) or "default" in action.help:
            continue
        if field in _NONE_MEANS and defaults.get(field, None) is None:
            shown = _NONE_MEANS[field]
        elif field in defaults:
            value = defaults[field]
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            if isinstance(value, bool):
                shown = "on" if value else "off"
        else:
            continue
        action.help += f" (default: {shown.replace('%', '%%')})"


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig settings given explicitly on the command line (flat name -> value)."""
    from eqprop.config import flat_names

    names = flat_names()
    settings: dict[str, Any] = {}
    for name, value in vars(args).items():
        field = _field(name)
        if value is None or field not in names or name in _NOT_SETTINGS:
            continue
        if name == "sizes" and not isinstance(value, str):  # a conv architecture is text
            value = "-".join(str(v) for v in value)
        if name == "data_dir":
            value = str(value)
        settings[field] = value
    return settings


def config_from_args(args: argparse.Namespace) -> Any:
    """TrainConfig from parsed ``eqprop train`` options (defaults < preset < options)."""
    from eqprop.presets import fast_settings, get_preset
    from eqprop.train import TrainConfig

    config = TrainConfig()
    if args.preset is not None:
        config = get_preset(args.preset).config.replace(preset=args.preset)
    if getattr(args, "fast", False):
        if args.preset is None:
            raise ValueError("--fast needs --preset (it selects that preset's fast free phase)")
        config = config.replace(**fast_settings(args.preset))
    given = _given(args)
    rule = given.get("rule", config.rule.name)
    from eqprop.rules import RULE_CLASSES

    if rule in RULE_CLASSES:  # else the configuration names the valid rules
        _check_rule_options(given, rule)
    return config.replace(**given).validate()


#: Options a recirculation loop does not read (it has no phases, cost or readout).
_NOT_RECIRCULATION = (
    "kind",
    "activation",
    "cost",
    "method",
    "free_method",
    "free_eps",
    "free_damping",
    "free_from_sample",
    "early_free_fixed_steps",
    "T",
    "K",
    "eps",
    "damping",
    "nudge",
    "persistent",
    "eval_persistent",
    "eval_T",
    "dtype",
    "init",
)


def _check_rule_options(given: dict[str, Any], rule: str) -> None:
    """Refuse a rule option (:data:`eqprop.rules.RULE_OPTIONS`) given explicitly for a
    rule whose class does not take it."""
    from eqprop.rules import RULE_CLASSES, RULE_OPTIONS, rule_parameters

    if rule == "recirculation":
        for name in _NOT_RECIRCULATION:
            if name in given:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag} does not apply to --rule recirculation (an unsupervised loop of "
                    f"logistic groups, float64, no phases or cost); drop {flag}"
                )
    for name, option in RULE_OPTIONS.items():
        owners = [r for r in RULE_CLASSES if option.param in rule_parameters(r)]
        if name in given and rule not in owners:
            flag = "--" + name.replace("_", "-")
            rules = ", ".join(f"--rule {r}" for r in owners)
            raise UsageError(
                f"{flag} applies to {rules}, not to --rule {rule}; drop {flag} or "
                f"use --rule {owners[0]}"
            )


def _check_dataset_name(name: str) -> None:
    from eqprop.data import DATASETS

    canon = name.lower().replace("_", "-")
    if canon not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def _train_main(argv: Sequence[str]) -> int:
    parser = build_train_parser()
    args = parser.parse_args(list(argv))
    from eqprop.train import Trainer

    command = ["eqprop", "train", *argv]
    if args.resume is not None:
        if args.preset is not None or args.fast:
            flag = "--preset" if args.preset is not None else "--fast"
            raise ValueError(f"{flag} cannot be combined with --resume (the checkpoint has it)")
        overrides = _given(args)
        trainer = Trainer.from_checkpoint(
            args.resume,
            overrides=overrides,
            command=command,
            quiet=args.quiet,
            overwrite=args.overwrite,
        )
    else:
        config = config_from_args(args)
        _check_dataset_name(config.data.dataset)
        net = config.network
        biased = (net.kind, net.cost, config.dynamics.phases.nudge) == (
            "prototypical",
            "cross-entropy",
            "outside",
        )
        if biased and not args.quiet:
            print(
                "eqprop: note: nudge 'outside' with the cross-entropy readout adds the "
                "nudge to the top hidden layer after its activation, a biased EP "
                "estimate; --nudge inside is the exact one (docs/training.rst)",
                file=sys.stderr,
            )
        boxed = (net.kind, net.activation) == ("hopfield", "hardsigmoid")
        negative = config.rule.name == "coupled" and config.rule.params["variant"] == "negative"
        if boxed and negative:
            if not args.quiet:
                print(
                    "eqprop: note: --coupled-variant negative on a hardsigmoid Hopfield "
                    "network: an output unit at the wrong bound of its box [0, 1] gets no "
                    "update, and training can stall (docs/rules.rst); the centered variant "
                    "or a network without a box avoids it",
                    file=sys.stderr,
                )
        if config.rule.name == "recirculation":
            return _train_loop(config, command, args)
        trainer = Trainer(config, command=command, quiet=args.quiet, overwrite=args.overwrite)
    result = trainer.run()
    test = result.history["test_error"].values
    if test.size:
        n_test = int(result.history.attrs.get("n_test", 0))
        wrong = round(float(test[-1]) * n_test)
        valid = float(result.history["valid_error"].values[-1])
        valid_text = "n/a (no validation split)" if valid != valid else f"{100 * valid:.2f}%"
        print(
            f"test error: {100 * float(test[-1]):.2f}% ({wrong}/{n_test}) after "
            f"{trainer.epoch} epoch(s); valid error: {valid_text}"
        )
    else:
        print("test error: n/a (0 epochs)")
    if result.output is not None:
        print(f"history: {result.output / 'history.nc'}")
        print(f"checkpoint: {result.output / 'checkpoint.npz'}")
    return 0


def _train_loop(config: Any, command: Sequence[str], args: argparse.Namespace) -> int:
    """``eqprop train --rule recirculation``: :class:`eqprop.recirculation.LoopTrainer`."""
    from eqprop.recirculation import LoopTrainer

    trainer = LoopTrainer(config, command=command, quiet=args.quiet, overwrite=args.overwrite)
    history = trainer.run()
    test = history["test_reconstruction"].values
    if test.size:
        print(
            f"test reconstruction error: {float(test[-1]):.4f} per image (squared, summed over "
            f"the {trainer.sizes[0]} visible units) after {trainer.epoch} epoch(s)"
        )
    else:
        print("test reconstruction error: n/a (0 epochs)")
    if config.run.output is not None:
        print(f"history: {config.run.output}/history.nc")
    return 0


def _dispatch(name: str, argv: Sequence[str]) -> int:
    module_name, func_name, _ = _DISPATCH[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UsageError(
                f"'eqprop {name}' is not available: module {module_name} is not installed "
                "in this version of eqprop"
            ) from None
        raise
    func = getattr(module, func_name, None)
    if func is None:
        raise UsageError(f"'eqprop {name}' is not available: {module_name}.{func_name} missing")
    return int(func(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eqprop`` command; returns the exit status.

    0 success, 2 bad input (one line ``eqprop: error: ...`` on stderr), 1 a run that
    failed for another reason (the error is reported the same way).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _DISPATCH:
            return _dispatch(argv[0], argv[1:])
        if argv and argv[0] == "train":
            return _train_main(argv[1:])
        if not argv:
            _top_parser().print_help(sys.stderr)
            return 2
        _top_parser().parse_args(argv)
        return 2  # pragma: no cover - parse_args exits or raises above
    except (ValueError, FileNotFoundError) as exc:  # UsageError is a ValueError
        print(error_line(exc), file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
