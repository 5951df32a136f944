"""Atomic file writes shared by the data cache, checkpoints and netCDF outputs."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX: a writer holds an advisory lock on its temporary file while it writes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["STALE_TEMP_SECONDS", "atomic_path", "remove_stale_temporaries"]

#: Without advisory locks (Windows), age after which a temporary file counts as stale.
STALE_TEMP_SECONDS = 3600.0

# the random part tempfile.mkstemp puts between prefix and suffix
_MKSTEMP_RANDOM = "[a-z0-9_]{8}"


def _temporary_pattern(path: Path, suffix: str) -> re.Pattern[str]:
    return re.compile(re.escape(f".{path.name}.") + _MKSTEMP_RANDOM + re.escape(suffix))


def _lock(fd: int) -> bool:
    """Take the exclusive advisory lock of ``fd`` without waiting; False if it is held."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_temporaries(path: str | os.PathLike[str], suffix: str = ".tmp") -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` left beside ``path`` when its
    process was killed (``kill -9``, power loss) before the rename.

    Only names of the form ``.<name>.<8 random characters><suffix>`` are considered (the
    pattern :func:`atomic_path` creates), and only those whose writer is gone: a writer
    holds an exclusive ``flock`` on its temporary file until it is renamed, the kernel
    drops the lock when the process dies, so a file whose lock can be taken is an
    orphan. Without ``fcntl`` (Windows) a file older than :data:`STALE_TEMP_SECONDS`
    counts as an orphan instead. Returns the paths removed.
    """
    path = Path(path)
    pattern = _temporary_pattern(path, suffix)
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            if fcntl is None:  # pragma: no cover - Windows
                if time.time() - candidate.stat().st_mtime <= STALE_TEMP_SECONDS:
                    continue
                candidate.unlink()
                removed.append(candidate)
                continue
            fd = os.open(candidate, os.O_RDONLY)
            try:
                if _lock(fd):  # nobody writes it any more
                    candidate.unlink()
                    removed.append(candidate)
            finally:
                os.close(fd)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary file beside ``path``; on success it replaces ``path`` atomically.

    The temporary file (``.<name>.<random><suffix>`` in the same folder, so that
    ``os.replace`` is a rename on one file system) gets the mode a plain ``open`` would
    give (``0o666 & ~umask``; ``mkstemp`` makes it private). When the ``with`` block ends
    normally the file is flushed to disk (``fsync``) and renamed onto ``path``; when it
    raises, the temporary file is removed and an existing ``path`` is left untouched, so
    readers never see a half-written file.

    A process killed inside the block cannot remove its temporary file; the next write
    to ``path`` does (:func:`remove_stale_temporaries`: the temporary file is locked
    with ``flock`` while it is written, so a live writer's file is never taken).
    """
    path = Path(path)
    remove_stale_temporaries(path, suffix)
    while True:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        _lock(fd)  # held (through fd) until the rename: marks the file as in use
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)  # another writer's cleanup took it before the lock: take another
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
