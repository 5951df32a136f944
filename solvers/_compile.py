"""Typed entry points: build and memoise the Numba drivers per argument types.

The user's ``g``/``f``, ``g_block`` and ``observe`` reach the drivers as first-class
function values typed ``numba.types.FunctionType(signature)``. A driver compiled for such
a signature does not depend on which function is passed, so

* it is compiled once per (driver, state dtype, ``args`` type, ``observe`` return type)
  and then stored in Numba's on-disk cache (``cache=True``): later processes load it in
  milliseconds;
* the only per-function cost is compiling the user's own ``g`` (once per process, as for
  any ``@njit`` function, or from its own cache when it was declared with
  ``cache=True``).

Passing a dispatcher as an ordinary argument instead would specialise (and recompile,
about 4 s, never cached across processes) the whole driver for every new function.
"""

from __future__ import annotations

import threading
from typing import Any

import numba
import numpy as np
from numba import njit, types
from numba.core.dispatcher import Dispatcher
from numba.core.types.function_type import CompileResultWAP
from numba.extending import typeof_impl

from ._fp_driver import fp_driver
from ._ss_driver import ss_driver

_lock = threading.Lock()
_drivers: dict[tuple, Any] = {}


def is_jitted(fn: Any) -> bool:
    """True for a Numba CPU dispatcher (an ``@njit`` / ``@jit(nopython=True)`` function)."""
    return isinstance(fn, Dispatcher)


def state_type(dtype: np.dtype) -> types.Array:
    return types.Array(numba.from_dtype(dtype), 2, "C")


_waps: dict[tuple, Any] = {}


class _FunctionValue(CompileResultWAP):
    """A compiled function value whose Numba type is computed once (see ``typeof``)."""

    def __init__(self, cres: Any) -> None:
        super().__init__(cres)
        self.numba_type = types.FunctionType(cres.signature)


@typeof_impl.register(_FunctionValue)
def _typeof_function_value(val: _FunctionValue, c: Any) -> types.Type:
    return val.numba_type


def function_value(fn: Dispatcher, argtypes: tuple) -> Any:
    """``fn`` compiled for ``argtypes`` as a first-class function value (memoised).

    A ``CompileResultWAP`` holds the address of the compiled C wrapper, so passing it to a
    driver costs an attribute read; passing the dispatcher itself makes Numba look the
    compiled code up (and the symbol address) on every call.
    """
    key = (fn, tuple(argtypes))
    w = _waps.get(key)
    if w is None:
        w = _FunctionValue(fn.overloads[tuple(argtypes)])
        _waps[key] = w
    return w


def compile_user(fn: Dispatcher, argtypes: tuple, what: str) -> types.Type:
    """Compile ``fn`` for ``argtypes`` (no-op when done); return its return type.

    Raises ValueError, with Numba's message, when ``fn`` does not type-check there.
    """
    try:
        fn.compile(argtypes)
        cres = fn.overloads[tuple(argtypes)]
    except (numba.core.errors.TypingError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{what} could not be compiled for argument types {argtypes}; check its "
            f"signature and body. Numba said: {exc}"
        ) from exc
    return cres.signature.return_type  # type: ignore[attr-defined]


def get_driver(name: str, key: tuple, argtypes: tuple) -> Any:
    """Return the memoised driver ``name`` compiled (or loaded from cache) for ``argtypes``."""
    full = (name, *key)
    with _lock:
        d = _drivers.get(full)
        if d is None:
            py = {"fp": fp_driver, "ss": ss_driver}[name]
            d = njit(argtypes, cache=True, nogil=True)(py)
            _drivers[full] = d
    return d
