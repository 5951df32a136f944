"""CIFAR-10 and CIFAR-100 from their official **binary** releases (never the pickles).

The binary archives (``cifar-10-binary.tar.gz``, ``cifar-100-binary.tar.gz``, from
https://www.cs.toronto.edu/~kriz/cifar.html; Krizhevsky 2009) hold fixed-size records:

* CIFAR-10 (``cifar-10-batches-bin/data_batch_1.bin`` .. ``data_batch_5.bin``,
  ``test_batch.bin``): 1 label byte, then 3072 pixel bytes;
* CIFAR-100 (``cifar-100-binary/train.bin``, ``test.bin``): 1 coarse-label byte, 1
  fine-label byte, then 3072 pixel bytes;

the 3072 bytes being the red, green and blue 32x32 planes, each row-major. That is
exactly the C-order flattening of a ``(3, 32, 32)`` image layer
(:class:`eqprop.graph.model.Layer` with ``shape=(3, 32, 32)``), so a record's pixels are
used as they are, scaled to [0, 1] as float32.

The pickled "python version" is refused: unpickling executes code from the file. The
archive is read from a local path and checked against its SHA-256 before anything is
parsed (:class:`eqprop.data.ChecksumError` on a mismatch). eqprop does not yet record
the official archives' SHA-256 (:data:`SHA256` entries are None: the data set is not on
the development machines); until it does, pass ``sha256=`` (``sha256sum`` of your copy,
after checking its MD5 against the one the CIFAR page publishes, :data:`PUBLISHED_MD5`).
Without a known sum the loader raises instead of reading an unverified file.

Split: the last ``n_valid`` images of the official training set validate, the others
train; the official test set tests.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqprop.data import ChecksumError, DataIntegrityError, DatasetSplits, Split

__all__ = [
    "CIFAR",
    "PUBLISHED_MD5",
    "SHA256",
    "CifarRelease",
    "load_cifar",
    "parse_cifar_records",
]

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarRelease:
    """Layout of one official binary archive."""

    archive: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # bytes before the pixels of each record
    classes: Mapping[str, tuple[int, int]]  # label kind -> (byte index, n_classes)


CIFAR: Mapping[str, CifarRelease] = {
    "cifar-10": CifarRelease(
        "cifar-10-binary.tar.gz",
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        ("test_batch.bin",),
        1,
        {"fine": (0, 10)},
    ),
    "cifar-100": CifarRelease(
        "cifar-100-binary.tar.gz",
        "cifar-100-binary",
        ("train.bin",),
        ("test.bin",),
        2,
        {"coarse": (0, 20), "fine": (1, 100)},
    ),
}

#: MD5 of the archives as published on the CIFAR page (documentation and a manual
#: cross-check of a copy; not used for verification).
PUBLISHED_MD5: Mapping[str, str] = {
    "cifar-10": "c32a1d4ab5d03f1284b67883e8d87530",
    "cifar-100": "03b5dce01913d631647c71ecec9e9cb8",
}

#: SHA-256 of the official archives, once recorded from a verified copy (None: not yet).
SHA256: Mapping[str, str | None] = {"cifar-10": None, "cifar-100": None}


def parse_cifar_records(
    raw: bytes, label_bytes: int, label_index: int, n_classes: int, source: str = "<bytes>"
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, 3072) uint8 and labels (n,) int64 of a CIFAR binary batch file.

    Raises :class:`eqprop.data.DataIntegrityError` when the length is not a whole number
    of records or a label is out of range.
    """
    rec = label_bytes + PIXELS
    if len(raw) == 0 or len(raw) % rec:
        raise DataIntegrityError(
            f"{source}: {len(raw)} bytes is not a whole number of {rec}-byte CIFAR records "
            "(truncated, or not a binary-version batch file)"
        )
    table = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    labels = table[:, label_index].astype(np.int64)
    if labels.max() >= n_classes:
        raise DataIntegrityError(
            f"{source}: label {int(labels.max())} out of range [0, {n_classes}); the file is "
            "not a batch of this data set"
        )
    return table[:, label_bytes:], labels


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_cifar(
    name: str,
    archive: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    labels: str = "fine",
    n_valid: int = 5000,
) -> DatasetSplits:
    """CIFAR-10 or CIFAR-100 from the official binary archive at ``archive``.

    Parameters
    ----------
    name : {"cifar-10", "cifar-100"}
    archive : path
        The ``.tar.gz`` of the binary version, as downloaded.
    sha256 : str, optional
        Expected SHA-256 of the archive; default :data:`SHA256` ``[name]``. One of the
        two must be known (no unverified reads).
    labels : {"fine", "coarse"}
        CIFAR-100's 100 fine or 20 coarse classes (CIFAR-10: ``"fine"``, its 10).
    n_valid : int
        Images at the end of the official training set used for validation (>= 1).

    Returns
    -------
    DatasetSplits
        ``x`` (n, 3072) float32 in [0, 1], channel-major (the ``(3, 32, 32)`` C order),
        ``labels`` int64.
    """
    if name not in CIFAR:
        raise ValueError(f"unknown CIFAR data set {name!r}; choose 'cifar-10' or 'cifar-100'")
    rel = CIFAR[name]
    if labels not in rel.classes:
        raise ValueError(
            f"{name} has label kinds {', '.join(map(repr, rel.classes))}, not {labels!r}"
        )
    path = Path(archive)
    if "python" in path.name or path.suffix == ".pickle":
        raise ValueError(
            f"{path}: this looks like the pickled Python version; eqprop reads only the binary "
            f"version {rel.archive} (unpickling runs code from the file)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; download {rel.archive} from the CIFAR page")
    expected = sha256 if sha256 is not None else SHA256[name]
    if expected is None:
        raise ValueError(
            f"no SHA-256 known for {rel.archive}; pass sha256= (sha256sum of your copy, after "
            f"checking its MD5 against the published {PUBLISHED_MD5[name]})"
        )
    raw = path.read_bytes()
    actual = _sha256(raw)
    if actual != expected.lower():
        raise ChecksumError(path, expected, actual, "Replace it with the official archive")
    index, n_classes = rel.classes[labels]
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        for member in (*rel.train, *rel.test):
            inside = f"{rel.folder}/{member}"
            try:
                f = tar.extractfile(inside)
            except KeyError:
                f = None
            if f is None:
                raise DataIntegrityError(f"{path}: the archive has no file {inside}")
            parts[member] = parse_cifar_records(
                f.read(), rel.label_bytes, index, n_classes, f"{path}:{inside}"
            )
    x_tr = np.concatenate([parts[m][0] for m in rel.train])
    y_tr = np.concatenate([parts[m][1] for m in rel.train])
    x_te = np.concatenate([parts[m][0] for m in rel.test])
    y_te = np.concatenate([parts[m][1] for m in rel.test])
    if isinstance(n_valid, bool) or not isinstance(n_valid, int) or not 1 <= n_valid < len(y_tr):
        raise ValueError(f"n_valid must be an integer in [1, {len(y_tr)}), got {n_valid!r}")
    cut = len(y_tr) - n_valid

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(np.ascontiguousarray(x, dtype=np.float32) / np.float32(255), y, n_classes)

    return DatasetSplits(
        split(x_tr[:cut], y_tr[:cut]),
        split(x_tr[cut:], y_tr[cut:]),
        split(x_te, y_te),
        name=name,
        sources={rel.archive: str(path)},
    )
