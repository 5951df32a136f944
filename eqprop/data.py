"""Data sets for training and studies: MNIST, Fashion-MNIST and the 8x8 digits set.

All loaders return the same structure, :class:`DatasetSplits` (``train``, ``valid``,
``test``), each a :class:`Split` of

- ``x``: (n, n_features) C-contiguous float32, pixel intensities scaled to [0, 1];
- ``labels``: (n,) int64 class indices in ``[0, n_classes)``.

MNIST and Fashion-MNIST are read from the original IDX files (gzip-compressed), looked
up, in order, in a local data folder (``data_dir=`` or the environment variable
``EQPROP_DATA_DIR``), in the user cache folder, and finally downloaded into the cache
(``download=True``). Every file is checked against its known SHA-256 sum before it is
parsed; a download is written to a temporary file in the cache folder, verified and only
then renamed into place, so the cache never holds a partial or unverified file.

The split follows Scellier & Bengio (2017): the first 50,000 images of the official
training set train, the last 10,000 validate, the official 10,000 test images test.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import logging
import os
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eqprop._files import atomic_path

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MD5",
    "MIRRORS",
    "SHA256",
    "ChecksumError",
    "DataFileMissing",
    "DataIntegrityError",
    "DatasetSplits",
    "DownloadError",
    "IdxFormatError",
    "Split",
    "default_cache_dir",
    "download_dataset",
    "load_dataset",
    "one_hot",
    "parse_idx",
    "read_idx",
]

log = logging.getLogger(__name__)

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "digits")

_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: SHA-256 of the official gzip-compressed IDX files. Computed from byte-identical copies
#: of the original releases whose MD5 sums equal the published ones (:data:`MD5`): MNIST
#: from Y. LeCun, C. Cortes & C. J. C. Burges, http://yann.lecun.com/exdb/mnist/ (MD5 as
#: listed by the torchvision mirror), Fashion-MNIST from H. Xiao, K. Rasul & R. Vollgraf
#: (2017), https://github.com/zalandoresearch/fashion-mnist (MD5 in its README).
SHA256: Mapping[str, Mapping[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
}

#: MD5 sums published with the original releases (see :data:`SHA256`); kept as the
#: documented link between the SHA-256 sums above and the official files. Not used for
#: verification (MD5 is not collision resistant).
MD5: Mapping[str, Mapping[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

#: Base URLs tried in order when a file has to be downloaded (file name appended).
#: MNIST: the ossci-datasets S3 mirror used by torchvision, then Yann LeCun's site;
#: Fashion-MNIST: Zalando Research's S3 bucket. Any ``file://`` or ``http(s)://`` base
#: works (``mirrors=`` of :func:`load_dataset` overrides these).
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# Folder names accepted inside a data folder / used inside the cache (first one).
_SUBDIRS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist",),
    "fashion-mnist": ("fashion_mnist", "fashion-mnist"),
}

#: Class names of Fashion-MNIST (Xiao et al. 2017), in label order.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Scellier & Bengio (2017): the last 10,000 of the 60,000 training images validate.
N_VALID_MNIST = 10_000

#: The digits split: 30 samples of every class in ``test``, the next 30 in ``valid``
#: (300 each), the remaining 1,197 in ``train``; the order comes from PCG64(DIGITS_SEED).
DIGITS_SEED = 20170519
DIGITS_PER_CLASS_HELD_OUT = 30

_ENV_DATA_DIR = "EQPROP_DATA_DIR"
_ENV_CACHE_DIR = "EQPROP_CACHE_DIR"
_CHUNK = 1 << 20
#: Age after which a leftover ``.part`` download of a killed process is deleted.
STALE_PART_SECONDS = 3600.0


# --------------------------------------------------------------------------------------
# Errors


class DataIntegrityError(ValueError):
    """A data file is corrupt: wrong checksum, truncated, or not in the expected format.

    Subclasses: :class:`ChecksumError`, :class:`IdxFormatError`.
    """


class ChecksumError(DataIntegrityError):
    """A file's SHA-256 differs from the known sum.

    Attributes
    ----------
    path : str
        The file (or URL) that failed.
    expected, actual : str
        Hex digests.
    """

    def __init__(self, path: str | os.PathLike[str], expected: str, actual: str, hint: str = ""):
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        msg = f"SHA-256 mismatch for {self.path}: expected {expected}, got {actual}"
        super().__init__(msg + (f". {hint}" if hint else ""))


class IdxFormatError(DataIntegrityError):
    """Bytes that are not a well-formed IDX file (bad magic, truncated, trailing data)."""


class DownloadError(OSError):
    """No mirror delivered a file (network unreachable, HTTP error, timeout).

    ``detail`` holds what each mirror answered.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class DataFileMissing(DownloadError, FileNotFoundError):
    """A file is neither in the ``data_dir`` given nor in the cache, and could not be
    downloaded (the CLI reports it as bad input, exit status 2)."""


# --------------------------------------------------------------------------------------
# Containers


@dataclass(frozen=True)
class Split:
    """One part of a data set: inputs and integer labels.

    Parameters
    ----------
    x : ndarray, shape (n, n_features), float32, C-contiguous
        Inputs, scaled to [0, 1].
    labels : ndarray, shape (n,), int64
        Class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes (10 for every data set here).

    Raises
    ------
    ValueError
        Wrong dtype, shape, memory layout, or a label out of range.
    """

    x: np.ndarray
    labels: np.ndarray
    n_classes: int = 10

    def __post_init__(self) -> None:
        x, y = self.x, self.labels
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.float32:
            raise ValueError(
                f"Split.x must be a 2-D float32 array (n, n_features), got "
                f"{getattr(x, 'dtype', type(x))} with shape {getattr(x, 'shape', None)}"
            )
        if not x.flags.c_contiguous:
            raise ValueError("Split.x must be C-contiguous; pass np.ascontiguousarray(x)")
        if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype != np.int64:
            raise ValueError(
                f"Split.labels must be a 1-D int64 array, got "
                f"{getattr(y, 'dtype', type(y))} with shape {getattr(y, 'shape', None)}"
            )
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"Split has {x.shape[0]} inputs but {y.shape[0]} labels")
        if self.n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {self.n_classes}")
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(
                f"labels must lie in [0, {self.n_classes}), got range [{y.min()}, {y.max()}]"
            )

    @property
    def n_samples(self) -> int:
        """Number of samples ``n``."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """Input dimension (784 for MNIST, 64 for digits)."""
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return self.n_samples

    def one_hot(self, dtype: str | np.dtype = "float32") -> np.ndarray:
        """Targets ``d`` as one-hot rows, shape (n, n_classes); see :func:`one_hot`."""
        return one_hot(self.labels, self.n_classes, dtype=dtype)

    def head(self, n: int) -> Split:
        """The first ``n`` samples (all when ``n >= n_samples``), as copies."""
        n = min(_check_limit(n), self.n_samples)
        return Split(
            np.ascontiguousarray(self.x[:n]).copy(), self.labels[:n].copy(), self.n_classes
        )


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation and test splits of one data set.

    Unpacks like a tuple: ``train, valid, test = load_dataset("digits")``.

    Parameters
    ----------
    train, valid, test : Split
    name : str
        Canonical data set name (``"mnist"``, ``"fashion-mnist"``, ``"digits"``).
    class_names : tuple of str
        Human-readable class names, in label order.
    sources : dict
        File name -> path it was read from (empty for ``digits``), for provenance.
    """

    train: Split
    valid: Split
    test: Split
    name: str = ""
    class_names: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Split]:
        return iter((self.train, self.valid, self.test))

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return self.train.n_classes

    @property
    def n_features(self) -> int:
        """Input dimension."""
        return self.train.n_features


def one_hot(labels: np.ndarray, n_classes: int, dtype: str | np.dtype = "float32") -> np.ndarray:
    """One-hot encode integer labels: ``d[i, k] = 1 if labels[i] == k else 0``.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Class indices in ``[0, n_classes)``.
    n_classes : int
        Number of columns.
    dtype : str or numpy dtype, default "float32"
        Floating dtype of the result (use the network's dtype).

    Returns
    -------
    ndarray, shape (n, n_classes), C-contiguous

    Raises
    ------
    ValueError
        Labels not 1-D integers, or out of range.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    out = np.zeros((y.shape[0], n_classes), dtype=np.dtype(dtype))
    out[np.arange(y.shape[0]), y] = 1
    return out


# --------------------------------------------------------------------------------------
# IDX format

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(buffer: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse an uncompressed IDX file.

    Layout (big-endian): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions ``k``, then ``k``
    uint32 sizes, then ``prod(sizes)`` values in C order.

    Parameters
    ----------
    buffer : bytes
        The whole file.
    source : str
        Name used in error messages.

    Returns
    -------
    ndarray
        Writable, native byte order, shape ``sizes``.

    Raises
    ------
    IdxFormatError
        Bad magic number, unknown type code, zero dimensions, truncated header or data,
        or trailing bytes after the data.
    """
    n = len(buffer)
    if n < 4:
        raise IdxFormatError(f"{source}: truncated IDX file ({n} bytes, header needs 4)")
    zero0, zero1, code, ndim = buffer[0], buffer[1], buffer[2], buffer[3]
    magic = int.from_bytes(buffer[:4], "big")
    if zero0 != 0 or zero1 != 0:
        raise IdxFormatError(
            f"{source}: not an IDX file (magic number 0x{magic:08x} must start with two zero "
            "bytes; a gzip file must be decompressed first)"
        )
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise IdxFormatError(f"{source}: unknown IDX type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise IdxFormatError(f"{source}: IDX file with zero dimensions (magic 0x{magic:08x})")
    header = 4 + 4 * ndim
    if n < header:
        raise IdxFormatError(
            f"{source}: truncated IDX header ({n} bytes, {ndim} dimensions need {header})"
        )
    dims = struct.unpack(f">{ndim}I", buffer[4:header])
    dtype = _IDX_DTYPES[code]
    count = 1
    for d in dims:
        count *= d
    expected = header + count * dtype.itemsize
    if n < expected:
        raise IdxFormatError(
            f"{source}: truncated IDX file: shape {dims} of {dtype.name} needs {expected} "
            f"bytes, got {n}"
        )
    if n > expected:
        raise IdxFormatError(
            f"{source}: {n - expected} unexpected trailing bytes after IDX data of shape {dims}"
        )
    data = np.frombuffer(buffer, dtype=dtype, count=count, offset=header).reshape(dims)
    return np.array(data, dtype=dtype.newbyteorder("="), order="C")


def _decompress(raw: bytes, source: str) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise IdxFormatError(f"{source}: corrupt or truncated gzip data ({exc})") from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzip-compressed (detected from its content) or not.

    No checksum is verified here; :func:`load_dataset` does that for the known files.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ndarray
        See :func:`parse_idx`.

    Raises
    ------
    IdxFormatError
        Corrupt gzip stream or malformed IDX content.
    """
    p = Path(path)
    return parse_idx(_decompress(p.read_bytes(), str(p)), str(p))


# --------------------------------------------------------------------------------------
# Locations, verification, download


def default_cache_dir() -> Path:
    """The cache folder: ``$EQPROP_CACHE_DIR``, else ``$XDG_CACHE_HOME/eqprop``, else
    ``~/.cache/eqprop``. Not created here."""
    env = os.environ.get(_ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "eqprop"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return int(limit)


def _fetch(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """Download ``url`` to ``dest`` through a verified temporary file in dest's folder."""
    with atomic_path(dest, suffix=".part") as tmp:
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "eqprop"})
        with open(tmp, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as r:
            while chunk := r.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != sha256:
            raise ChecksumError(url, sha256, actual, "The download was discarded")


def _remove_stale_parts(dest: Path) -> None:
    """Remove temporary files of ``dest`` left by a killed process (older than
    :data:`STALE_PART_SECONDS`; younger ones may belong to a running download)."""
    now = time.time()
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > STALE_PART_SECONDS:
                part.unlink()


def _download_file(
    fname: str, dest: Path, sha256: str, mirrors: Sequence[str], timeout: float
) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)  # a permission error surfaces as itself
    _remove_stale_parts(dest)
    failures: list[str] = []
    integrity: ChecksumError | None = None
    for base in mirrors:
        url = base if base.endswith(fname) else base.rstrip("/") + "/" + fname
        log.info("downloading %s -> %s", url, dest)
        try:
            _fetch(url, dest, sha256, timeout)
            return
        except ChecksumError as exc:
            integrity = integrity or exc
            failures.append(f"{url}: {exc}")
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            failures.append(f"{url}: {exc}")
    detail = "; ".join(failures) if failures else "no mirror configured"
    if integrity is not None:
        raise ChecksumError(integrity.path, integrity.expected, integrity.actual, detail)
    raise DownloadError(
        f"could not download {fname} ({detail}). Offline? Put the files in a folder and pass "
        f"data_dir= or set {_ENV_DATA_DIR}",
        detail,
    )


def _data_dirs(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    if data_dir is not None:
        p = Path(data_dir).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"data_dir {str(p)!r} is not a folder")
        return [p]
    env = os.environ.get(_ENV_DATA_DIR)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return [p]
        log.warning("%s=%s is not a folder; ignored", _ENV_DATA_DIR, env)
    return []


def _obtain(
    key: str,
    fname: str,
    data_dirs: Sequence[Path],
    cache: Path,
    download: bool,
    mirrors: Sequence[str],
    timeout: float,
) -> tuple[bytes, Path]:
    """Return the verified bytes of one file and where they came from."""
    sha = SHA256[key][fname]
    searched: list[Path] = []
    for d in data_dirs:
        searched += [d / sub / fname for sub in _SUBDIRS[key]] + [d / fname]
    cached = cache / _SUBDIRS[key][0] / fname
    searched.append(cached)
    for path in searched:
        if path.is_file():
            raw = path.read_bytes()
            actual = _sha256(raw)
            if actual != sha:
                hint = (
                    "Delete it to download it again"
                    if path == cached
                    else "Replace it with the official file"
                )
                raise ChecksumError(path, sha, actual, hint)
            return raw, path
    if not download:
        where = ", ".join(str(p) for p in searched)
        raise FileNotFoundError(
            f"{fname} of {key} not found (looked in: {where}) and download=False. Pass "
            f"data_dir= or set {_ENV_DATA_DIR} to a folder holding {_SUBDIRS[key][0]}/{fname}"
        )
    try:
        _download_file(fname, cached, sha, mirrors, timeout)
    except DownloadError as exc:
        if not data_dirs:
            raise
        # the user gave a data folder: say it lacks the file, not "pass data_dir="
        folders = ", ".join(repr(str(d)) for d in data_dirs)
        raise DataFileMissing(
            f"{fname} of {key} is not in the data folder {folders} (looked for "
            f"{', '.join(str(p) for p in searched[:-1])}) nor in the cache, and the download "
            f"failed: {exc.detail}. Put {fname} into {data_dirs[0] / _SUBDIRS[key][0]}"
        ) from None
    raw = cached.read_bytes()
    actual = _sha256(raw)
    if actual != sha:  # changed on disk between the rename and now
        raise ChecksumError(cached, sha, actual, "Delete it to download it again")
    return raw, cached


def download_dataset(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = 60.0,
) -> dict[str, Path]:
    """Download the IDX files of ``name`` into the cache (files already there and verified
    are kept).

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    cache_dir : path-like, optional
        Defaults to :func:`default_cache_dir`; files go to ``<cache_dir>/mnist/`` or
        ``<cache_dir>/fashion_mnist/``.
    mirrors : sequence of str, optional
        Base URLs tried in order (the file name is appended); default :data:`MIRRORS`.
    timeout : float
        Seconds allowed per network operation (``urllib`` socket timeout).

    Returns
    -------
    dict
        File name -> path in the cache.

    Raises
    ------
    ChecksumError
        Every mirror delivered a file with the wrong sum, or a cached file is corrupt.
    DownloadError
        No mirror could be reached.
    """
    key = _canonical(name)
    if key not in SHA256:
        raise ValueError(f"{key!r} is embedded in scikit-learn and needs no download")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    bases = tuple(mirrors) if mirrors is not None else MIRRORS[key]
    out: dict[str, Path] = {}
    for fname in _FILES:
        _, path = _obtain(key, fname, [], cache, True, bases, timeout)
        out[fname] = path
    return out


# --------------------------------------------------------------------------------------
# Loaders


def _idx_from(raw: bytes, path: Path, magic: int, tail: tuple[int, ...]) -> np.ndarray:
    arr = parse_idx(_decompress(raw, str(path)), str(path))
    if arr.dtype != np.uint8 or arr.ndim != 1 + len(tail) or arr.shape[1:] != tail:
        raise IdxFormatError(
            f"{path}: expected uint8 IDX data of shape (n, {', '.join(map(str, tail))}) "
            f"(magic 0x{magic:08x}), got {arr.dtype} {arr.shape}"
        )
    return arr


def _load_idx_set(
    key: str,
    data_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    download: bool,
    mirrors: Sequence[str] | None,
    timeout: float,
) -> DatasetSplits:
    dirs = _data_dirs(data_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    bases = tuple(mirrors) if mirrors is not None else MIRRORS[key]
    arrays: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for fname in _FILES:
        raw, path = _obtain(key, fname, dirs, cache, download, bases, timeout)
        sources[fname] = str(path)
        if "images" in fname:
            arrays[fname] = _idx_from(raw, path, 0x00000803, (28, 28))
        else:
            arrays[fname] = _idx_from(raw, path, 0x00000801, ())

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        x = images.reshape(images.shape[0], -1).astype(np.float32)
        x /= np.float32(255.0)
        return Split(x, labels.astype(np.int64), 10)

    tr_img, tr_lab = arrays[_FILES[0]], arrays[_FILES[1]]
    te_img, te_lab = arrays[_FILES[2]], arrays[_FILES[3]]
    for img_name, lab_name in ((_FILES[0], _FILES[1]), (_FILES[2], _FILES[3])):
        n_img, lab = arrays[img_name].shape[0], arrays[lab_name]
        if n_img != lab.shape[0]:
            raise IdxFormatError(
                f"{img_name} has {n_img} images but {lab_name} has {lab.shape[0]} labels"
            )
        if lab.size and lab.max() > 9:
            raise IdxFormatError(f"{lab_name}: label {lab.max()} out of range [0, 9]")
    if tr_img.shape[0] <= N_VALID_MNIST:
        raise IdxFormatError(
            f"{_FILES[0]} has {tr_img.shape[0]} images; the validation split alone needs "
            f"{N_VALID_MNIST}"
        )
    n_train = tr_img.shape[0] - N_VALID_MNIST
    return DatasetSplits(
        train=split(tr_img[:n_train], tr_lab[:n_train]),
        valid=split(tr_img[n_train:], tr_lab[n_train:]),
        test=split(te_img, te_lab),
        name=key,
        class_names=FASHION_MNIST_CLASSES
        if key == "fashion-mnist"
        else tuple(str(i) for i in range(10)),
        sources=sources,
    )


def _digits_assignment(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the digits train/valid/test split (see :data:`DIGITS_SEED`).

    The order is the argsort of raw PCG64 outputs, which NumPy keeps stable across
    versions; per class, the first 30 samples in that order test, the next 30 validate.
    """
    n = labels.shape[0]
    order = np.argsort(np.random.PCG64(DIGITS_SEED).random_raw(n), kind="stable")
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 valid, 2 test
    k = DIGITS_PER_CLASS_HELD_OUT
    for c in np.unique(labels):
        members = order[labels[order] == c]
        part[members[:k]] = 2
        part[members[k : 2 * k]] = 1
    ranked = part[order]
    return order[ranked == 0], order[ranked == 1], order[ranked == 2]


def _load_digits() -> DatasetSplits:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            'the "digits" data set is shipped with scikit-learn, which is not installed: '
            'pip install "eqprop[digits]"'
        ) from exc
    bunch = load_digits()
    x_all = np.ascontiguousarray(bunch.data / 16.0, dtype=np.float32)
    y_all = np.asarray(bunch.target, dtype=np.int64)
    train, valid, test = _digits_assignment(y_all)

    def split(idx: np.ndarray) -> Split:
        return Split(np.ascontiguousarray(x_all[idx]), y_all[idx].copy(), 10)

    return DatasetSplits(
        split(train),
        split(valid),
        split(test),
        name="digits",
        class_names=tuple(str(i) for i in range(10)),
        sources={},
    )


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    limit: int | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = 60.0,
) -> DatasetSplits:
    """Load a data set as train / validation / test splits.

    =================  ==========  ======  ======  ======  ============
    name               n_features  train   valid   test    source
    =================  ==========  ======  ======  ======  ============
    ``mnist``          784         50,000  10,000  10,000  IDX files
    ``fashion-mnist``  784         50,000  10,000  10,000  IDX files
    ``digits``         64          1,197   300     300     scikit-learn
    =================  ==========  ======  ======  ======  ============

    MNIST / Fashion-MNIST: ``train`` is the first 50,000 images of the official training
    set, ``valid`` its last 10,000 (Scellier & Bengio 2017), ``test`` the official test
    set; pixels ``x = p / 255`` for the stored bytes ``p``, rows are the 28x28 images in
    C (row-major) order. Each file is searched in ``data_dir`` (or ``$EQPROP_DATA_DIR``)
    as ``<dir>/mnist/<file>``, ``<dir>/fashion_mnist/<file>`` or ``<dir>/<file>``, then in
    the cache ``<cache_dir>/<mnist|fashion_mnist>/<file>``, then downloaded into the
    cache when ``download`` is true. Every file is verified against :data:`SHA256`.

    Digits: the 8x8 images of scikit-learn (``pip install "eqprop[digits]"``), ``x = v /
    16`` for the stored values ``v`` in 0..16; per class, 30 samples test, 30 validate,
    the rest train, in a fixed order (:data:`DIGITS_SEED`), so every split holds all
    classes and the split never changes.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "digits"}
        Case-insensitive; ``_`` and ``-`` are interchangeable.
    data_dir : path-like, optional
        Local folder with the IDX ``.gz`` files (must exist when given). Default:
        ``$EQPROP_DATA_DIR`` if set.
    cache_dir : path-like, optional
        Default :func:`default_cache_dir` (``$EQPROP_CACHE_DIR``,
        ``$XDG_CACHE_HOME/eqprop`` or ``~/.cache/eqprop``).
    download : bool, default True
        Download missing files into the cache. With False a missing file raises
        FileNotFoundError.
    limit : int, optional
        Keep only the first ``limit`` samples of each split (quick runs).
    mirrors : sequence of str, optional
        Base URLs to download from, in order; default :data:`MIRRORS`.
    timeout : float, default 60
        Seconds per network operation.

    Returns
    -------
    DatasetSplits
        ``train``, ``valid``, ``test``: :class:`Split` with ``x`` (n, n_features)
        C-contiguous float32 in [0, 1] and ``labels`` (n,) int64 in [0, 10).

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the valid ones) or bad ``limit``.
    DataIntegrityError
        A file with the wrong SHA-256 (:class:`ChecksumError`, naming the file, expected
        and actual sum) or malformed content (:class:`IdxFormatError`).
    FileNotFoundError
        A file is missing and ``download`` is False, or ``data_dir`` is not a folder.
    DownloadError
        A file is missing and no mirror could be reached.
    ImportError
        ``digits`` without scikit-learn.

    Examples
    --------
    >>> train, valid, test = load_dataset("digits")
    >>> train.x.shape, valid.x.shape, test.x.shape
    ((1197, 64), (300, 64), (300, 64))
    """
    key = _canonical(name)
    if limit is not None:
        limit = _check_limit(limit)
    if key == "digits":
        splits = _load_digits()
    else:
        splits = _load_idx_set(key, data_dir, cache_dir, download, mirrors, timeout)
    if limit is None:
        return splits
    return DatasetSplits(
        splits.train.head(limit),
        splits.valid.head(limit),
        splits.test.head(limit),
        name=splits.name,
        class_names=splits.class_names,
        sources=splits.sources,
    )
