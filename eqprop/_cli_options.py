"""The command line's shared vocabulary: parser class, help format, argument types, errors.

Every ``eqprop`` subcommand (``train``, ``compare``, ``study KIND``, ``plot``) builds its
parser from :class:`Parser`, so that

* bad input raises :class:`UsageError` (a :class:`ValueError`) instead of printing and
  exiting; ``eqprop`` prints it as the one line ``eqprop: error: MESSAGE`` (see
  :func:`error_line`) and exits with status 2;
* every option's help shows its default (:class:`HelpFormatter`);
* one concept has one flag and one syntax: the argument types below are the only parsers
  of layer sizes and comma lists. ``docs/cli.rst`` has the table of flags, and
  ``tests/test_cli.py`` walks every parser to check it.

The argument types raise :class:`argparse.ArgumentTypeError`; argparse turns that into
``argument --FLAG: MESSAGE``, so the message names both the option and the value.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "PROG",
    "HelpFormatter",
    "Parser",
    "UsageError",
    "deprecated_alias",
    "error_line",
    "finite_float",
    "float_list",
    "int_list",
    "name_list",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "sizes",
]

#: The command's name: the one prefix of every error line.
PROG = "eqprop"


class UsageError(ValueError):
    """Bad command-line input; ``eqprop`` reports it as one line and exits with status 2."""


def error_line(exc: BaseException) -> str:
    """``eqprop: error: MESSAGE`` with the message's white space collapsed to one line."""
    return f"{PROG}: error: {' '.join(str(exc).split())}"


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; ``(default: X)`` after each option's help.

    The default is left out where the help already says ``default``, for required
    options, flags without a value, and ``None`` (the help must then say what happens).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or action.required
            or not action.option_strings
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: {_shown(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """ArgumentParser that raises :class:`UsageError` instead of printing and exiting.

    ``--help`` still prints and exits with status 0. Subparsers made with
    ``add_subparsers`` are of this class too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _DeprecatedAlias(argparse.Action):
    """Hidden old spelling of an option: stores like the new one, with a one-line note."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, canonical: str, **kw: Any):
        super().__init__(option_strings, dest, **kw)
        self.canonical = canonical

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"{PROG}: note: {option_string} is deprecated; use {self.canonical}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(container: Any, old: str, action: argparse.Action) -> None:
    """Accept ``old`` as a hidden alias of ``action`` (an option added to ``container``).

    ``container`` is the parser or argument group ``action`` was added to. The alias takes
    the same type, choices and number of values, and prints one note naming the new flag.
    """
    container.add_argument(
        old,
        dest=action.dest,
        type=action.type,
        choices=action.choices,
        nargs=action.nargs,
        metavar=action.metavar,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        action=_DeprecatedAlias,
        canonical=action.option_strings[-1] if action.option_strings else old,
    )


# ------------------------------------------------------------------------- argument types
def _number(text: str, convert: Callable[[str], Any], what: str) -> Any:
    try:
        value = convert(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (not finite)")
    return value


def finite_float(text: str) -> float:
    """A finite number: ``"0.5"`` -> ``0.5``; ``nan`` and ``inf`` are refused."""
    return float(_number(text, float, "a finite number"))


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float, "a finite number > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return float(value)


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(text, int, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(value)


def on_off(text: str) -> bool:
    """A switch: ``on``/``off`` (also ``true``/``false``, ``yes``/``no``, ``1``/``0``)."""
    value = text.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (seeds, counts that may be zero)."""
    value = _number(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(value)


def _numbers(text: str, convert: Any, what: str) -> list[Any]:
    pieces = [v for v in text.split(",") if v.strip()]
    if not pieces:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r} (empty)")
    values = []
    for piece in pieces:
        try:
            value = convert(piece)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}, got {text!r}"
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}, got {text!r} ({piece.strip()} is not finite)"
            )
        values.append(value)
    return values


def float_list(text: str) -> list[float]:
    """``"1e-3,0.1"`` -> ``[0.001, 0.1]`` (at least one finite number; empty pieces skipped)."""
    return _numbers(text, float, "numbers")


def int_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (at least one integer; empty pieces skipped)."""
    return _numbers(text, int, "integers")


def name_list(text: str) -> list[str]:
    """``"rbp, bptt"`` -> ``["rbp", "bptt"]`` (pieces stripped of white space; at least one)."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r} (empty)")
    return names


def sizes(text: str) -> list[int] | str:
    """Layer sizes, input first: ``"784-500-10"`` or ``"784,500,10"`` -> ``[784, 500, 10]``.

    At least two sizes (an input and an output layer), each an integer >= 1; the pieces
    are separated by ``-`` or ``,`` (not both), without empty pieces. A conv
    architecture (first piece an image ``CxHxW``, e.g. ``1x28x28-c32k5-p2-c64k5-p2-10``,
    :func:`eqprop.graph.build.parse_conv_architecture`) is checked and returned as text.
    """
    from eqprop.graph.build import is_conv_architecture, parse_conv_architecture

    if is_conv_architecture(text):
        try:
            parse_conv_architecture(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text
    example = "write them input first, joined by '-' or ',', e.g. 784-500-10"
    separators = [s for s in "-," if s in text]
    if len(separators) > 1:
        raise argparse.ArgumentTypeError(f"layer sizes {text!r} mix '-' and ','; {example}")
    pieces = text.split(separators[0]) if separators else [text]
    try:
        values = [int(p.strip()) for p in pieces]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"layer sizes {text!r} are not integers; {example}"
        ) from None
    if len(values) < 2 or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"layer sizes {text!r}: need at least two (input and output), each >= 1; {example}"
        )
    return values
