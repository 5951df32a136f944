"""CIFAR binary loader on generated archives in the official layout (the data set is not
on these machines)."""

import hashlib
import io
import tarfile

import numpy as np
import pytest

from eqprop.data import ChecksumError, DataIntegrityError
from eqprop.data_cifar import CIFAR, load_cifar, parse_cifar_records


def _records(rng, n, label_cols):
    """n records: label bytes then the R, G, B planes; pixel (c, i, j) = known value."""
    labels = np.stack([rng.integers(0, k, n) for k in label_cols], axis=1).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    raw = np.concatenate([labels, pixels.reshape(n, -1)], axis=1).tobytes()
    return raw, labels, pixels


def _archive(tmp_path, name, per_file=4, seed=0, drop=None, truncate=None):
    rel = CIFAR[name]
    rng = np.random.default_rng(seed)
    cols = [20, 100] if name == "cifar-100" else [10]
    data = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member in (*rel.train, *rel.test):
            raw, labels, pixels = _records(rng, per_file, cols)
            data[member] = (labels, pixels)
            if member == truncate:
                raw = raw[:-7]
            if member == drop:
                continue
            info = tarfile.TarInfo(f"{rel.folder}/{member}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    path = tmp_path / rel.archive
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest(), data


@pytest.mark.parametrize(
    "name, kind, col",
    [("cifar-10", "fine", 0), ("cifar-100", "fine", 1), ("cifar-100", "coarse", 0)],
)
def test_loads_generated_binary_archive(tmp_path, name, kind, col):
    path, sha, data = _archive(tmp_path, name)
    rel = CIFAR[name]
    ds = load_cifar(name, path, sha256=sha, labels=kind, n_valid=3)
    train_labels = np.concatenate([data[m][0][:, col] for m in rel.train])
    train_pixels = np.concatenate([data[m][1] for m in rel.train])
    n = len(train_labels)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (n - 3, 3, 4)
    np.testing.assert_array_equal(ds.train.labels, train_labels[:-3])
    np.testing.assert_array_equal(ds.valid.labels, train_labels[-3:])
    np.testing.assert_array_equal(ds.test.labels, data[rel.test[0]][0][:, col])
    assert ds.train.x.dtype == np.float32 and ds.train.x.shape[1] == 3072
    # channel-major (3, 32, 32) C order: the image reshapes back exactly
    img = ds.valid.x[1].reshape(3, 32, 32)
    np.testing.assert_allclose(img * 255, train_pixels[n - 2], atol=1e-4)
    assert ds.train.n_classes == {"fine": 100 if name == "cifar-100" else 10, "coarse": 20}[kind]


def test_checksum_and_format_errors(tmp_path):
    path, sha, _ = _archive(tmp_path, "cifar-10")
    with pytest.raises(ChecksumError, match=r"cifar-10-binary.tar.gz"):
        load_cifar("cifar-10", path, sha256="0" * 64)
    with pytest.raises(ValueError, match=r"no SHA-256 known.*c32a1d4ab5d03f1284b67883e8d87530"):
        load_cifar("cifar-10", path)
    with pytest.raises(ValueError, match="pickled Python version"):
        load_cifar("cifar-10", tmp_path / "cifar-10-python.tar.gz", sha256=sha)
    with pytest.raises(ValueError, match="label kinds"):
        load_cifar("cifar-10", path, sha256=sha, labels="coarse")
    sub = tmp_path / "t"
    sub.mkdir()
    p2, sha2, _ = _archive(sub, "cifar-10", truncate="data_batch_3.bin")
    with pytest.raises(DataIntegrityError, match=r"data_batch_3.bin.*whole number"):
        load_cifar("cifar-10", p2, sha256=sha2)
    sub = tmp_path / "d"
    sub.mkdir()
    p3, sha3, _ = _archive(sub, "cifar-100", drop="test.bin")
    with pytest.raises(DataIntegrityError, match=r"no file cifar-100-binary/test.bin"):
        load_cifar("cifar-100", p3, sha256=sha3)


def test_parse_refuses_out_of_range_labels():
    raw = bytes([12]) + bytes(3072)
    with pytest.raises(DataIntegrityError, match="label 12 out of range"):
        parse_cifar_records(raw, 1, 0, 10)
