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


def test_laborieux_cifar_net_takes_one_training_step_on_a_loaded_archive(tmp_path):
    """#14: the Laborieux et al. 2021 / Scellier et al. 2023 CIFAR architecture
    (3x32x32 -> 128-256-512-512, 3x3 kernels, 2x2 max-pool after each, -> 10) trained one
    step on images read from a CIFAR-10 binary archive (generated here in the official
    format): symmetric EP with cross-entropy, then SGD. Checks that every parameter moved
    by exactly -rate * its EP estimate (a second route: the update recomputed here) and
    that the estimate is finite and not zero, so only the data and a faster device stand
    between this network and the papers' runs."""
    from eqprop import Dynamics
    from eqprop.graph.build import conv_network, parse_conv_architecture
    from eqprop.optim import SGD, graph_rates
    from eqprop.rules import EquilibriumPropagation

    path, digest, _ = _archive(tmp_path, "cifar-10", per_file=2)
    data = load_cifar("cifar-10", path, sha256=digest, n_valid=2)
    x = np.ascontiguousarray(data.train.x[:2], dtype=np.float64)
    d = data.train.one_hot("float64")[:2]
    arch = parse_conv_architecture("3x32x32-c128k3p1-p2-c256k3p1-p2-c512k3p1-p2-c512k3-p2-10")
    net = conv_network(arch, output_activation="identity", cost="cross-entropy", seed=0)
    assert [la.shape for la in net.layers[1:-1]] == [
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 1, 1),
    ]
    before = {k: np.array(v, copy=True) for k, v in net.parameters().items()}
    dyn = Dynamics(T=8, K=6, eps=0.5)  # K >= 5: the nudge must reach h1 (one layer a step)
    grad = EquilibriumPropagation(0.2, "symmetric").estimate(net, x, d, dyn).gradient
    lrs = [0.1, 0.05, 0.02, 0.01, 0.005]
    SGD(lrs).step(net, grad)
    rates = graph_rates(net, lrs)
    after = net.parameters()
    for name, old in before.items():
        g = np.asarray(grad[name])
        assert np.all(np.isfinite(g)) and np.any(g != 0), name
        np.testing.assert_allclose(after[name], old - rates[name] * g, rtol=0, atol=1e-12)
