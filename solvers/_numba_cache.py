"""Where Numba's on-disk cache goes: never inside an installed package.

Numba's default (its "in-tree" locator) writes the cache of every ``cache=True`` function
into a ``__pycache__`` folder next to the function's source file. For a package installed
into ``site-packages`` that is a folder pip does not know about: ``pip uninstall`` and a
later ``pip install -e .`` leave it behind, and the leftover ``site-packages/eqprop/``
holding only ``__pycache__`` becomes an empty namespace package that shadows the editable
install (``ImportError: cannot import name '__version__' from 'eqprop' (unknown
location)``).

:func:`configure_numba_cache` therefore chooses a folder under the user cache directory
when the user has not chosen one. It must run before any ``cache=True`` function is
*defined*: Numba picks a function's cache locator when the decorator runs
(``Dispatcher.enable_caching``), reading ``numba.config.CACHE_DIR`` then; a locator made
while ``CACHE_DIR`` is empty is the in-tree one. Importing this module calls it;
``solvers/__init__.py`` and ``eqprop/__init__.py`` import it before anything else.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

__all__ = ["configure_numba_cache", "default_numba_cache_dir"]

_ENV = "NUMBA_CACHE_DIR"


def default_numba_cache_dir() -> Path:
    """``$EQPROP_CACHE_DIR/numba``, else ``$XDG_CACHE_HOME/eqprop/numba``, else
    ``~/.cache/eqprop/numba``: the ``numba`` folder inside the folder that
    :func:`eqprop.data.default_cache_dir` names (the same rule; ``solvers`` does not import
    ``eqprop``). Not created here."""
    explicit = os.environ.get("EQPROP_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser() / "numba"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "eqprop" / "numba"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def configure_numba_cache() -> str:
    """Point Numba's cache at a user folder unless ``NUMBA_CACHE_DIR`` is set; return it.

    Order: a non-empty ``NUMBA_CACHE_DIR`` (left as is), a ``numba.config.CACHE_DIR``
    already set some other way (e.g. ``.numba_config.yaml``), :func:`default_numba_cache_dir`
    if it can be created and written, else ``<tempdir>/eqprop-numba-<user>``.

    The choice is written to ``os.environ["NUMBA_CACHE_DIR"]`` (so that Numba's
    ``reload_config``, which runs before each compilation and re-reads the environment,
    keeps it, and so that worker processes inherit it) and to ``numba.config.CACHE_DIR`` if
    Numba is already imported. Other Numba users in the same process then cache there
    too, rather than next to their own sources.
    """
    chosen = os.environ.get(_ENV, "")
    if chosen:
        return chosen
    config = getattr(sys.modules.get("numba.core.config"), "CACHE_DIR", "")
    if config:
        os.environ[_ENV] = str(config)
        return str(config)
    folder = default_numba_cache_dir()
    if not _writable(folder):
        user = os.environ.get("USER") or str(getattr(os, "getuid", lambda: "user")())
        folder = Path(tempfile.gettempdir()) / f"eqprop-numba-{user}"
        folder.mkdir(parents=True, exist_ok=True)
    os.environ[_ENV] = str(folder)
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:
        numba_config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]
    return str(folder)


configure_numba_cache()
