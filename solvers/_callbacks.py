"""Errors raised inside the user's callbacks reach the caller (not Numba's stderr).

The drivers call ``g``/``f``, ``g_block`` and ``observe`` as first-class function values
(see ``_compile.py``), i.e. through Numba's C wrapper of each function. An exception
raised in there cannot unwind through the driver: the wrapper takes the GIL, turns it into
a Python exception and hands it to :func:`sys.unraisablehook` (whose default prints
``Exception ignored in: '<numba.core.cpu.CPUContext>'``), then returns as if nothing had
happened, leaving ``out`` as it was. So, around every driver call:

* :func:`capture` installs a hook that, in the calling thread, keeps the first such
  exception and sets an error code in a small status array shared with the driver
  (:data:`ERROR`); the driver reads it after every callback and stops at once;
* the driver writes into the same array which callback it is about to call and at which
  iteration (and stage or group), so that the error names them;
* the driver fills each output buffer with NaN before the calls of the first iteration,
  so that entries a callback does not write are NaN (the sample fails there), never
  uninitialised memory; a first call that wrote nothing at all is reported as such
  (:data:`UNWRITTEN`). Later calls are not filled (a write pass over ``out`` per call is
  of the order of the residual pass, a sizeable part of a Picard iteration of a cheap
  map); after an exception the driver stops before reading ``out``;
* :func:`raise_if_failed` re-raises the user's exception itself (its type and message
  unchanged) with a note naming the callback, the iteration and the shapes involved.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

# slots of the status array (int64) shared by the driver and the hook
ERROR = 0  # error code, below
ITERATION = 1  # iteration of the callback call in progress
WHICH = 2  # which callback: MAIN (g or f), BLOCK (g_block), OBSERVE
STAGE = 3  # Runge-Kutta stage or Gauss-Seidel group of the call, -1 for none
DETAIL = 4  # e.g. the length observe returned
N_SLOTS = 5

# error codes
NO_ERROR = 0
RAISED = 1  # the callback raised (set by the hook)
BAD_OBSERVE = 2  # observe returned an array of the wrong length
UNWRITTEN = 3  # the first call of g/f left every entry of out NaN

# callbacks
MAIN = 0
BLOCK = 1
OBSERVE = 2

_NUMBA_CONTEXT = "numba.core.cpu.CPUContext"


class CallbackError(ValueError):
    """A callback (``g``/``f``, ``g_block`` or ``observe``) broke the solver's contract.

    Raised when ``observe`` returned the wrong shape or when ``g``/``f`` wrote nothing into
    ``out``. An exception the callback raised itself is re-raised unchanged (its own type),
    with a note naming the callback and the iteration.
    """


def new_status() -> np.ndarray:
    """A fresh status array for one driver call."""
    status = np.zeros(N_SLOTS, dtype=np.int64)
    status[STAGE] = -1
    return status


class _Capture:
    def __init__(self, status: np.ndarray) -> None:
        self.status = status
        self.exc: BaseException | None = None
        self.count = 0

    def record(self, exc: BaseException) -> None:
        self.count += 1
        if self.exc is None:
            self.exc = exc
        self.status[ERROR] = RAISED


_local = threading.local()
_lock = threading.Lock()
_depth = 0
_previous_hook: Any = None


def _hook(unraisable: Any) -> None:
    cap = getattr(_local, "capture", None)
    obj = getattr(unraisable, "object", None)
    if (
        cap is not None
        and unraisable.exc_value is not None
        and isinstance(obj, str)
        and _NUMBA_CONTEXT in obj
    ):
        cap.record(unraisable.exc_value)
        return
    prev = _previous_hook if _previous_hook is not None else sys.__unraisablehook__
    prev(unraisable)


@contextmanager
def capture(status: np.ndarray) -> Iterator[_Capture]:
    """Capture, in this thread, exceptions raised by compiled callbacks during the block.

    The hook is installed while any thread is inside such a block (reference counted) and
    passes every other unraisable exception on to the hook that was there before.
    """
    global _depth, _previous_hook
    cap = _Capture(status)
    with _lock:
        if _depth == 0 or sys.unraisablehook is not _hook:
            if sys.unraisablehook is not _hook:
                _previous_hook = sys.unraisablehook
            sys.unraisablehook = _hook
        _depth += 1
    outer = getattr(_local, "capture", None)
    _local.capture = cap
    try:
        yield cap
    finally:
        _local.capture = outer
        with _lock:
            _depth -= 1
            if _depth == 0 and sys.unraisablehook is _hook:
                sys.unraisablehook = _previous_hook
                _previous_hook = None


def _describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array {a.shape}"
    if isinstance(a, tuple):
        return "(" + ", ".join(_describe(v) for v in a) + ")"
    return type(a).__name__


def _where(status: np.ndarray, name: str, method: str) -> tuple[str, str]:
    which = int(status[WHICH])
    what = {
        MAIN: f"{name}(x, out, args)",
        BLOCK: "g_block(x, out, args, start, stop)",
        OBSERVE: "observe(x, args)",
    }[which]
    k = int(status[ITERATION])
    stage = int(status[STAGE])
    where = f"iteration {k}"
    if stage >= 0:
        part = "group" if method.startswith("GaussSeidel") else "stage"
        where += f" ({part} {stage})"
    return what, where


def raise_if_failed(
    cap: _Capture, *, name: str, method: str, x: np.ndarray, args: tuple, callbacks: tuple
) -> None:
    """Raise what the driver's status array and the hook recorded, if anything.

    ``callbacks`` is ``(map, g_block, observe)`` (None where not given), ``name`` the map's
    name in the docs (``"g"`` or ``"f"``).
    """
    status = cap.status
    code = int(status[ERROR])
    if code == NO_ERROR:
        return
    what, where = _where(status, name, method)
    fname = getattr(callbacks[int(status[WHICH])], "__name__", name)
    shapes = f"x: {_describe(x)}, args: {_describe(args)}"
    if code == RAISED:
        exc = cap.exc
        assert exc is not None
        first = int(status[ITERATION]) == 0 and int(status[WHICH]) == MAIN
        hint = (
            " on the initial state, before any update: check that args fit the state"
            if first
            else ""
        )
        more = f" ({cap.count} exceptions in all)" if cap.count > 1 else ""
        exc.add_note(
            f"raised in {what} ({fname!r}) at {where} of {method}{hint}; {shapes}{more}. "
            "The solve was stopped there."
        )
        raise exc
    if code == BAD_OBSERVE:
        raise CallbackError(
            f"{what} returned an array of length {int(status[DETAIL])} at {where}, but the "
            f"batch has {x.shape[0]} samples; return one value per sample, shape "
            f"({x.shape[0]},)"
        )
    raise CallbackError(
        f"{what} ({fname!r}) wrote nothing into out at {where} of {method}: every entry "
        "is still NaN (out is filled with NaN before the first call). Assign into it "
        "(out[:] = ... or out[b, i] = ...), not out = ...; " + shapes
    )
