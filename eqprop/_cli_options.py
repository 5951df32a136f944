"""Argument types shared by the ``eqprop compare`` and ``eqprop study`` parsers.

Each function turns one command-line word into a list and raises
:class:`argparse.ArgumentTypeError` (argparse then prints the message and exits 2) when a
piece is not a number. Empty pieces are skipped, so ``"1,2,"`` gives two values.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["float_list", "int_list", "name_list"]


def _numbers(text: str, convert: Any, what: str) -> list[Any]:
    try:
        return [convert(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None


def float_list(text: str) -> list[float]:
    """``"1e-3,0.1"`` -> ``[0.001, 0.1]``."""
    return _numbers(text, float, "numbers")


def int_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    return _numbers(text, int, "integers")


def name_list(text: str) -> list[str]:
    """``"rbp, bptt"`` -> ``["rbp", "bptt"]`` (pieces stripped of white space)."""
    return [v.strip() for v in text.split(",") if v.strip()]
