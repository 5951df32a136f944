"""The CUDA backend's seam without a GPU (issue #17): the array backends, the device
setting of a run and its one clear error, and that nothing imports CuPy by default."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eqprop import gpu
from eqprop.cli import main
from eqprop.config import RunConfig, TrainConfig
from eqprop.gpu.backend import get_backend
from eqprop.train import Trainer

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def test_numpy_backend_copies_and_multiplies():
    be = get_backend("numpy")
    a = np.arange(6.0).reshape(2, 3)
    d = be.to_device(a)
    d[0, 0] = 99.0
    assert a[0, 0] == 0.0  # always a copy: a phase never writes its caller's arrays
    b = np.ones((3, 2))
    out = be.empty((2, 2), np.float64)
    be.matmul(be.to_device(a), b, out=out)
    np.testing.assert_array_equal(out, [[3.0, 3.0], [12.0, 12.0]])
    assert be.to_host(out) is out


def test_unknown_backend_and_missing_cupy_raise_one_line():
    with pytest.raises(ValueError, match="unknown array backend 'torch'"):
        get_backend("torch")
    if not HAS_CUPY:
        with pytest.raises(RuntimeError, match=r"needs CuPy.*eqprop\[gpu\]"):
            get_backend("cupy")


def test_products_is_a_run_setting_refused_where_it_cannot_apply():
    """The mixed-precision mode (RunConfig.products, --products): stored, read back and
    given on the command line; an unknown format, a CPU run and a float64 network are
    refused by name instead of running in the network's dtype."""
    from eqprop.cli import build_train_parser, config_from_args
    from eqprop.config import PRODUCTS as CONFIG_PRODUCTS
    from eqprop.gpu.backend import PRODUCTS

    assert CONFIG_PRODUCTS == PRODUCTS
    c = TrainConfig().replace(device="cuda", products="bfloat16")
    assert c.run.products == "bfloat16" and TrainConfig().run.products == "native"
    assert TrainConfig.from_json(c.to_json()).run.products == "bfloat16"
    args = build_train_parser().parse_args(["--device", "cuda", "--products", "float16"])
    assert config_from_args(args).run.products == "float16"
    with pytest.raises(ValueError, match="products is 'int8'; choose one of native, float16"):
        TrainConfig(run=RunConfig(device="cuda", products="int8")).validate()
    with pytest.raises(ValueError, match=r"products='float16' .* give device='cuda'"):
        TrainConfig(run=RunConfig(products="float16")).validate()
    with pytest.raises(ValueError, match=r"give dtype='float32', not 'float64'"):
        TrainConfig().replace(dtype="float64", device="cuda", products="bfloat16").validate()


def test_device_setting_is_a_run_setting():
    c = TrainConfig().replace(device="cuda")
    assert c.run.device == "cuda" and TrainConfig().run.device == "cpu"
    assert TrainConfig.from_json(c.to_json()).run.device == "cuda"
    with pytest.raises(ValueError, match="device is 'tpu'; choose one of cpu, cuda"):
        TrainConfig(run=RunConfig(device="tpu")).validate()
    assert gpu.check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        gpu.check_device("gpu")


@pytest.mark.skipif(gpu.available()[0], reason="a CUDA device is usable here")
def test_cuda_training_raises_one_clear_error_not_a_cpu_run():
    config = TrainConfig().replace(device="cuda", epochs=1, limit=5)
    with pytest.raises(RuntimeError, match="device='cuda'") as e:
        Trainer(config, quiet=True)  # before any data is loaded
    msg = str(e.value)
    assert "\n" not in msg and "no usable CUDA device here" in msg


def test_the_stand_in_needs_the_simulator(monkeypatch):
    """The test-only switch alone does not turn device='cuda' into a CPU run."""
    monkeypatch.setenv(gpu.STANDIN_ENV, "1")
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    with pytest.raises(RuntimeError, match="no usable CUDA device here"):
        gpu.check_device("cuda")


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(rule="chl"), "rule 'chl'"),
        (dict(estimator="symmetric", homeostasis=0.1), "EP with homeostasis"),
        (dict(feedback="free"), "a graph network"),
        (dict(free_method="anderson"), "method 'anderson'"),
    ],
)
def test_what_the_cuda_trainer_cannot_run_is_named(changes, match):
    config = TrainConfig().replace(**changes)
    with pytest.raises(ValueError, match=f"device='cuda' cannot train {match}"):
        gpu.check_trainable(config)
    gpu.check_trainable(TrainConfig())  # the default (digits) setting trains


@pytest.mark.skipif(gpu.available()[0], reason="a CUDA device is usable here")
def test_cli_device_cuda_is_one_error_line(capsys):
    rc = main(["train", "--device", "cuda", "--epochs", "1", "--limit", "5", "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("eqprop: error: device='cuda'") and "\n" not in err


def test_default_imports_do_not_import_cupy_or_numba_cuda():
    code = (
        "import sys, eqprop, eqprop.gpu, eqprop.train, eqprop.cli, eqprop.gpu.backend\n"
        "bad = [m for m in ('cupy', 'numba.cuda') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_gpu_check_script_help_and_dry_run(tmp_path):
    """The prepared device script (benchmarks/gpu_check.py) parses, refuses to run without
    a GPU in one line, and runs every stage of its --dry-run (simulator, NumPy stand-in,
    tiny sizes) end to end, writing its table; so it cannot rot where there is no GPU."""
    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py")
    r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--dry-run" in r.stdout
    if not gpu.available()[0]:
        r = subprocess.run([sys.executable, script], capture_output=True, text=True)
        assert r.returncode == 2 and r.stdout.startswith("gpu_check: no usable GPU")
    cmd = [sys.executable, script, "--dry-run", "-o", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "DRY RUN" in r.stdout and "stage failed" not in r.stdout
    info = json.loads((tmp_path / "gpu_check.json").read_text())
    stages = [row["stage"] for row in info["rows"]]
    want = ["preset", "preset", "pconv", "pconv", "cifar", "cifar", "mixed", "mixed", "mixed"]
    assert stages == want
    assert info["rows"][2]["value"].endswith("s / epoch (60k)")
    assert info["rows"][3]["value"].startswith("test error ")
    assert "nan" not in info["rows"][3]["value"]
    assert all("s / 50k samples" in row["value"] for row in info["rows"][4:6])
    assert all("samples/s" in row["value"] for row in info["rows"][:2])
    cosines = [float(row["value"].split()[1]) for row in info["rows"][6:8]]
    assert all(0.99 < c <= 1.0 for c in cosines)
    assert info["head"][3].startswith("preflight: kernel launch and numpy product equal")
    assert info["head"][1].startswith("versions: numba ")
    assert (tmp_path / "gpu_check.txt").read_text().count("\n") == len(info["rows"]) + 6


def test_gpu_check_runs_the_chosen_stages_only(tmp_path):
    """``--stages cifar`` (a rerun of what a short lease left out) runs that stage alone;
    an unknown stage is refused by name."""
    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py")
    r = subprocess.run(
        [sys.executable, script, "--stages", "cifar,nope"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "unknown or none ['nope']" in r.stderr
    cmd = [sys.executable, script, "--dry-run", "--stages", "cifar", "-o", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    info = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [row["stage"] for row in info["rows"]] == ["cifar", "cifar"]


def test_gpu_check_stops_at_a_failed_preflight(tmp_path):
    """A toolchain that cannot launch a kernel (planted: the preflight fails) ends the
    check with status 3 before the tests and stages, its header written, instead of
    spending the device's minutes on stages that all fail."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('gpu_check', {str(script)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "m.preflight = lambda backend: (False, 'preflight FAILED: planted')\n"
        "m.preset_rows = None  # a stage reached would fail loudly\n"
        f"sys.exit(m.main(['--dry-run', '-o', {str(tmp_path)!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    info = json.loads((tmp_path / "gpu_check.json").read_text())
    assert info["rows"] == [] and info["tests_rc"] == -1
    assert "preflight FAILED: planted" in info["head"]
    assert "stage failed" not in r.stdout
