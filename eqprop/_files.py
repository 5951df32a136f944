"""Atomic file writes shared by the data cache, checkpoints and netCDF outputs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary file beside ``path``; on success it replaces ``path`` atomically.

    The temporary file (``.<name>.<random><suffix>`` in the same folder, so that
    ``os.replace`` is a rename on one file system) gets the mode a plain ``open`` would
    give (``0o666 & ~umask``; ``mkstemp`` makes it private). When the ``with`` block ends
    normally the file is flushed to disk (``fsync``) and renamed onto ``path``; when it
    raises, the temporary file is removed and an existing ``path`` is left untouched, so
    readers never see a half-written file.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
