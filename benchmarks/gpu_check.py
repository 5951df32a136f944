"""The prepared device check of issue #17: GPU tests, then one table.

On a machine with an NVIDIA GPU, CuPy and numba-cuda (the ``[gpu]`` extra), from the
repository root, with the MNIST files under ``EQPROP_DATA_DIR`` (total under 10 minutes:
every stage has its own time guard inside ``--budget``, default 540 s)::

    NUMBA_CACHE_DIR=.numba_cache EQPROP_DATA_DIR=... python benchmarks/gpu_check.py -o $OUT

First a preflight: one Numba CUDA kernel launch and one cuBLAS product against NumPy
(a few seconds). When it fails, the script prints the traceback, writes the header and
exits with status 3 at once, so that a toolchain that cannot launch a kernel costs
seconds of device time, not the whole check (on 2026-12-04 numba-cuda's ``np.row_stack``
overload under NumPy 2.5 failed every launch: :mod:`eqprop.gpu.compat`).

Stages (each prints its rows as it finishes; a stage that cannot run says why in its
row, with its traceback in the log, instead of crashing, and a stage that would pass
the budget is reported as skipped):

1. ``pytest -m gpu tests/test_gpu_device.py``: the CUDA phases, the CUDA trainer and the
   conv coupling on cuBLAS equal the CPU path.
2. ``ernoult2019-p1h`` and ``scellier2017-1h`` at batch 20 and 256: training samples/s of
   ``Trainer(device="cuda")`` (the second of two epochs over random MNIST-shaped
   inputs: the first compiles), against the CPU trainer on the same data in the same run
   and the CPU figure recorded in ``docs/networks.rst`` (bench_step.py, fused path,
   batch 20, 2-core machine: P-1h 7,216 and 1h 8,770 samples/s).
3. Ernoult et al.'s P-conv on MNIST (``ernoult2019-pconv``, batch 20, T=200, K=10):
   seconds per epoch of 60,000 samples from the timed device work of one training step
   (free and nudged phases of :mod:`eqprop.gpu.graph`, the weight-gradient products; the
   graph optimizer's update is not on the device yet); then ``Trainer(device="cuda")``
   on MNIST for as many epochs as fit in two minutes, and its test error.
4. The Laborieux et al. 2021 / Scellier et al. 2023 CIFAR architecture (3x32x32,
   conv 128-256-512-512, 3x3, pad 1, 2x2 max-pool after each, dense to 10), batch 128,
   random inputs, centered EP (free phase, nudged at +beta and -beta): the same timed
   step, per 50,000 samples, for T1 = 60 / T2 = 20 (Scellier et al. 2023's red-black
   schedule: the device's ``"gauss-seidel-parity"`` sweeps, fixed steps) and T1 = 250 /
   T2 = 30 (synchronous, Laborieux et al. 2021), against holomorphic EP's 230 s and
   Scellier et al.'s 108 s per epoch; and the fraction of the float32 GEMM rate measured
   in the same run (a 8192^3 matmul) that the products the step evaluates reach.
5. Mixed precision: the cosine of the EP estimate with float16 / bfloat16 matmul
   operands (float32 state and accumulation) to the float32 estimate, ``ernoult2019-p1h``
   on the first 20 MNIST training images (:func:`eqprop.gpu.train.mixed_precision_cosines`);
   then, budget allowing, the test error after one epoch on 10,000 MNIST images in float32
   and with bfloat16 products.

``--dry-run`` runs every stage at tiny sizes on Numba's CUDA simulator and the NumPy
stand-in (``NUMBA_ENABLE_CUDASIM=1``, ``EQPROP_CUDA_STANDIN=1``), without pytest and
without data files, so that the script is exercised where there is no GPU
(``tests/test_gpu_backend.py`` runs it); its figures time the simulator and mean nothing.

Writes ``gpu_check.txt`` (the table) and ``gpu_check.json`` (rows, machine, command) to
``--output`` (default ``$OUT`` when set).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("ernoult2019-p1h", "scellier2017-1h")
#: the table's stages, in the order they run (``--stages`` picks some)
STAGES = ("preset", "pconv", "cifar", "mixed")
#: docs/networks.rst, ``bench_step.py --repeat 7``, fused path, batch 20, float32
DOC_CPU = {"ernoult2019-p1h": 7216.0, "scellier2017-1h": 8770.0}
CIFAR_CHANNELS = (128, 256, 512, 512)
CIFAR_SCHEDULES = (
    ("red-black T1=60 T2=20", 60, 20, "gauss-seidel-parity"),
    ("synchronous T1=250 T2=30", 250, 30, "fused"),
)
PUBLISHED_S = "holomorphic EP 230 s/epoch, Scellier et al. 2023 108 s/epoch"


class Clock:
    """The run's time budget: ``left()`` seconds remain; ``fits(s)`` whether ``s`` do."""

    def __init__(self, budget: float):
        self.t0 = time.perf_counter()
        self.budget = float(budget)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def fits(self, seconds: float) -> bool:
        return self.left() > seconds


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="gpu_check.py",
        description="Issue #17's device check: GPU tests, then the table (see the docstring).",
    )
    p.add_argument("--budget", type=float, default=540.0, help="total seconds (default 540)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny sizes on Numba's CUDA simulator and the NumPy stand-in (no GPU, no data)",
    )
    p.add_argument("--skip-tests", action="store_true", help="skip the GPU-marked tests")
    p.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated table stages to run, in their order (default {','.join(STAGES)};"
        " e.g. a rerun of the ones a short lease left out)",
    )
    p.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        default=os.environ.get("OUT"),
        help="write gpu_check.{txt,json} here (default: $OUT when set)",
    )
    args = p.parse_args(argv)
    chosen = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown or not chosen:
        p.error(f"--stages: unknown or none {unknown}; choose from {', '.join(STAGES)}")
    args.stages = chosen
    return args


def row(stage: str, setting: str, value: str, reference: str = "", note: str = "") -> dict:
    return dict(stage=stage, setting=setting, value=value, reference=reference, note=note)


def format_row(r: dict) -> str:
    text = f"{r['stage']:<10} {r['setting']:<44} {r['value']:<30} {r['reference']}"
    return text + (f"  [{r['note']}]" if r["note"] else "")


def emit(rows: list, r: dict) -> None:
    rows.append(r)
    print(format_row(r), flush=True)


# ----------------------------------------------------------------------------- preflight
def versions() -> str:
    """The toolchain's versions (one line; packages not installed are left out)."""
    from importlib import metadata

    parts = []
    for dist in ("numba", "numba-cuda", "numpy", "cupy-cuda13x", "cupy-cuda12x", "cupy"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    try:
        import cupy

        rt = cupy.cuda.runtime
        parts.append(f"CUDA driver {rt.driverGetVersion()} runtime {rt.runtimeGetVersion()}")
    except Exception:  # no CuPy or no device: the simulator
        pass
    return ", ".join(parts)


def preflight(backend: str) -> tuple[bool, str]:
    """One Numba CUDA kernel launch (:func:`eqprop.gpu.kernels.activities_kernel`, hard
    sigmoid on a 4x8 float32 array) and one product on ``backend``, each against NumPy
    (exact for the clip; 1e-5 for the product); ``(ok, one line)``, the traceback
    printed on failure."""
    import numpy as np

    t0 = time.perf_counter()
    try:
        from eqprop.gpu import kernels as GK
        from eqprop.gpu.backend import get_backend
        from eqprop.kernels import ACT_HARD

        be = get_backend(backend)
        host = np.linspace(-1.0, 2.0, 32, dtype=np.float32).reshape(4, 8)
        s, a = be.to_device(host), be.zeros((4, 8), np.float32)
        GK.launch(GK.activities_kernel, a.size, s, a, ACT_HARD)
        be.synchronize()
        got = be.to_host(a)
        if not np.array_equal(got, np.clip(host, 0.0, 1.0)):
            raise AssertionError(f"the clip kernel returned {got!r}")
        prod = be.to_host(be.matmul(s, s.T))
        np.testing.assert_allclose(prod, host @ host.T, rtol=1e-5, atol=1e-5)
    except Exception as e:
        traceback.print_exc()
        return False, f"preflight FAILED: {type(e).__name__}: {e}"[:300]
    took = time.perf_counter() - t0
    return True, f"preflight: kernel launch and {backend} product equal NumPy ({took:.1f} s)"


# ----------------------------------------------------------------------------- stage 1
def run_gpu_tests(timeout: float) -> int:
    """``pytest -m gpu tests/test_gpu_device.py``; its exit status (124: timed out)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rs"]
    cmd.append(str(ROOT / "tests" / "test_gpu_device.py"))
    print("$ " + " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, cwd=ROOT, timeout=max(timeout, 1.0)).returncode
    except subprocess.TimeoutExpired:
        return 124


# ----------------------------------------------------------------------------- stage 2
def _random_data(n: int, n_in: int, n_out: int, seed: int = 0, n_test: int = 0):
    import numpy as np

    from eqprop.data import DatasetSplits, Split

    rng = np.random.default_rng(seed)

    def split(m):
        return Split(rng.random((m, n_in)).astype(np.float32), rng.integers(0, n_out, m), n_out)

    return DatasetSplits(split(n), split(0), split(n_test), name="random")


def preset_rows(rows: list, clock: Clock, dry: bool) -> None:
    from eqprop.presets import get_preset
    from eqprop.train import Trainer

    for name in PRESETS:
        for B in (2,) if dry else (20, 256):
            if not clock.fits(45.0):
                emit(rows, row("preset", f"{name} batch {B}", "skipped: time budget"))
                continue
            config = get_preset(name).config.replace(batch_size=B, epochs=2)
            if dry:
                config = config.replace(architecture="6-5-3", T=3, K=2)
            n = 4 * B if dry else max(20 * B, 2560)
            sizes, dyn = config.sizes, config.dynamics.phases
            data = _random_data(n, sizes[0], sizes[-1])
            rates = {}
            for device in ("cuda", "cpu"):
                t = Trainer(config.replace(device=device), data=data, quiet=True)
                t.train_epoch()  # compilation, uploads
                rates[device] = t.train_epoch()["samples_per_second"]
            ref = f"CPU here {rates['cpu']:.0f}/s"
            if B == 20 or dry:
                ref += f", docs {DOC_CPU[name]:.0f}/s"
            emit(
                rows,
                row(
                    "preset",
                    f"{name} batch {B} (T={dyn.T}, K={dyn.K})",
                    f"{rates['cuda']:.0f} samples/s",
                    ref,
                    f"GPU/CPU-here {rates['cuda'] / rates['cpu']:.2f}x",
                ),
            )


# ----------------------------------------------------------------------------- stages 3, 4
def conv_step_seconds(
    net,
    B: int,
    T1: int,
    T2: int,
    centered: bool,
    beta: float,
    nudge: str,
    backend: str,
    method: str = "fused",
):
    """Seconds of one EP training step's device work on a conv graph network at batch
    ``B``: the free phase (``T1`` iterations of ``method``, :mod:`eqprop.gpu.graph`:
    ``"fused"`` synchronous map evaluations, ``"gauss-seidel-parity"`` red-black sweeps,
    each a full map, whose residual is checked, then the second colour's layers again),
    one (one-sided) or two (centered, +-beta) nudged phases of ``T2`` from the free state,
    and the weight-gradient products of every coupling at each state (the graph
    optimizer's update is not on the device yet); plus the GEMM flops of the products
    actually evaluated. The best of two timed steps after one untimed (compilation)."""
    import numpy as np

    from eqprop.gpu.backend import get_backend
    from eqprop.gpu.conv import DeviceConv2d
    from eqprop.gpu.dense import device_phase, sweep_groups
    from eqprop.gpu.graph import DeviceGraphMap
    from eqprop.phases import Dynamics

    be = get_backend(backend)
    rng = np.random.default_rng(0)
    dt = np.dtype(net.dtype)
    x = be.to_device(rng.random((B, net.n_in)).astype(dt))
    d = be.to_device(np.eye(net.n_out, dtype=dt)[rng.integers(0, net.n_out, B)])
    gmap = DeviceGraphMap(net, be, nudge, 0.5)
    fixed = None if method == "fused" else True
    dyn = Dynamics(T=T1, K=T2, method=method, fixed_steps=fixed, nudge=nudge)
    betas = (beta, -beta) if centered else (beta,)

    def step():
        gmap.set_input(x, d, 0.0)
        free = device_phase(gmap, be.zeros((B, net.n_state), dt), dyn, T1)
        states = [free.state]
        for b in betas:
            gmap.beta = float(b)
            states.append(device_phase(gmap, free.state.copy(), dyn, T2).state)
        for st in states if not centered else states[1:]:
            for c, op, *_ in gmap.input_ops + gmap.inner_ops:
                a, b2 = net.offsets[c.target]
                dst = st[:, a:b2]
                if c.source == net.input_layer.name:
                    src = x
                else:
                    a0, b0 = net.offsets[c.source]
                    src = st[:, a0:b0]
                if isinstance(op, DeviceConv2d):
                    op.weight_gradient(src, dst)
                else:
                    be.matmul(src.T, dst)
        be.synchronize()

    step()
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    n_iter = T1 + len(betas) * T2
    n_grad = len(betas) + (0 if centered else 1)
    # the layers each iteration evaluates again after its full map (a sweep's later groups)
    later = {gmap.layers[l][0] for g in sweep_groups(gmap.L, method)[1:] for l in g}
    flops = 0.0
    for c, op, *_ in gmap.input_ops + gmap.inner_ops:
        inner = net.layer(c.source).role != "input"  # input couplings: once per batch
        if isinstance(op, DeviceConv2d):
            Co, Ci, kh, kw = op.W.shape
            one = 2.0 * B * op.conv_hw[0] * op.conv_hw[1] * Co * Ci * kh * kw
            # forward: one product; feedback: the routing conv (max pool) + transposed
            # product; per gradient: routing conv + weight GEMM
            fwd, back, grad = one, (2 * one if op.pool == "max" else one), 2 * one
        else:
            one = 2.0 * B * op.shape[0] * op.shape[1]
            fwd, back, grad = one, one, one
        if inner:
            per_iter = fwd + back  # the full map
            per_iter += (fwd if c.target in later else 0.0) + (back if c.source in later else 0.0)
            flops += n_iter * per_iter
        flops += n_grad * grad
    return best, flops


def gemm_rate(backend: str, dry: bool) -> float:
    """float32 GEMM flop/s of a square matmul (8192; 256 in the dry run) on ``backend``."""
    import numpy as np

    from eqprop.gpu.backend import get_backend

    be = get_backend(backend)
    n = 256 if dry else 8192
    a = be.xp.ones((n, n), dtype=np.float32)
    be.matmul(a, a)
    be.synchronize()
    t0 = time.perf_counter()
    reps = 1 if dry else 5
    for _ in range(reps):
        be.matmul(a, a)
    be.synchronize()
    return 2.0 * n**3 * reps / (time.perf_counter() - t0)


def pconv_rows(rows: list, clock: Clock, dry: bool, backend: str) -> None:
    from eqprop.presets import get_preset

    if not clock.fits(60.0):
        emit(rows, row("pconv", "ernoult2019-pconv MNIST", "skipped: time budget"))
        return
    config = get_preset("ernoult2019-pconv").config
    dyn = config.dynamics.phases
    T, K, B = dyn.T, dyn.K, config.run.batch_size
    if dry:
        config = config.replace(architecture="1x12x12-c2k5-p2-c2k3-10")
        T, K, B = 3, 2, 2
    net = config.make_network()
    beta = float(config.rule.params["beta"])
    t, _ = conv_step_seconds(net, B, T, K, False, beta, dyn.nudge, backend)
    est = t * 60000 / B
    emit(
        rows,
        row(
            "pconv",
            f"ernoult2019-pconv b{B} T={T} K={K} (phases + gradient products)",
            f"{est:.0f} s / epoch (60k)",
            "",
            "one timed step's device work, without the optimizer",
        ),
    )
    pconv_training(rows, clock, dry, config, est)


def pconv_training(rows: list, clock: Clock, dry: bool, config, est_epoch: float) -> None:
    """Train ``Trainer(device="cuda")`` on MNIST for as many epochs as fit in two minutes
    (a first partial epoch on a prefix of the training set when one epoch would not:
    then ``limit`` also cuts the test split); the measured s/epoch and the test error."""
    from eqprop.train import Trainer

    window = 3.0 if dry else min(120.0, clock.left() - 150.0)
    if window < (1.0 if dry else 30.0):
        emit(rows, row("pconv", "P-conv 2-minute training", "skipped: time budget"))
        return
    limit = None
    if est_epoch > 0.9 * window:  # a prefix that fits, in whole minibatches
        B = config.run.batch_size
        limit = max(B, int(60000 * 0.8 * window / est_epoch) // B * B)
    data = None
    if dry:
        data = _random_data(8, config.sizes[0], config.sizes[-1], n_test=4)
        config = config.replace(batch_size=2, T=3, K=2)
    # evaluation in batches of 1000 (the preset's 20 would launch 50x more kernels; the
    # phases are per sample, so the errors are the same)
    c = config.replace(device="cuda", limit=limit, epochs=1000, eval_batch_size=1000)
    t = Trainer(c, data=data, quiet=True)
    t0 = time.perf_counter()
    while True:
        t.run(t.epoch + 1)
        spent = time.perf_counter() - t0
        last = t.history["train_time"][-1] + t.history["eval_time"][-1]
        if spent + last > window or dry:
            break
    n = t.x_train.shape[0]
    emit(
        rows,
        row(
            "pconv",
            f"P-conv MNIST training, {t.epoch} epoch(s) of {n} samples in {spent:.0f} s",
            f"test error {100 * t.history['test_error'][-1]:.2f}%",
            "Ernoult et al. 2019 Table 1: ~1% after 40 epochs",
            f"{t.history['train_time'][-1] * 60000 / n:.0f} s per 60k training samples"
            + ("" if limit is None else f"; test on the first {limit} test images"),
        ),
    )


def cifar_rows(rows: list, clock: Clock, dry: bool, backend: str) -> None:
    from eqprop.graph.build import conv_chain

    if not clock.fits(90.0):
        emit(rows, row("cifar", "128-256-512-512 batch 128", "skipped: time budget"))
        return
    shape, channels, B = (
        ((3, 16, 16), (4, 8, 8, 8), 2) if dry else ((3, 32, 32), CIFAR_CHANNELS, 128)
    )
    net = conv_chain(shape, channels, 10, kernels=3, paddings=1, pool="max", dtype="float32")
    peak = gemm_rate(backend, dry)
    for label, T1, T2, method in CIFAR_SCHEDULES:
        if dry:
            T1, T2 = 3, 2
        if not clock.fits(45.0):
            emit(rows, row("cifar", f"128-256-512-512 centered {label}", "skipped: time budget"))
            continue
        t, flops = conv_step_seconds(net, B, T1, T2, True, 0.5, "inside", backend, method)
        emit(
            rows,
            row(
                "cifar",
                f"128-256-512-512 b{B} centered {label}",
                f"{t * 50000 / B:.0f} s / 50k samples",
                PUBLISHED_S,
                f"{100 * flops / t / peak:.1f}% of the f32 GEMM rate {peak / 1e12:.1f} TFLOP/s;"
                + (
                    " each sweep a full map (its residual) + the second colour again;"
                    if method != "fused"
                    else ""
                )
                + " no optimizer step",
            ),
        )


# ----------------------------------------------------------------------------- stage 5
def mixed_rows(rows: list, clock: Clock, dry: bool, backend: str) -> None:
    import numpy as np

    from eqprop.gpu import train as GT
    from eqprop.presets import get_preset
    from eqprop.rules.base import PhaseSpec

    if not clock.fits(30.0):
        emit(rows, row("mixed", "cosine to float32", "skipped: time budget"))
        return
    config = get_preset("ernoult2019-p1h").config
    if dry:
        config = config.replace(architecture="6-5-3", T=3, K=2)
    net = config.make_network()
    source = "random inputs"
    if dry:
        x = np.random.default_rng(0).random((4, 6)).astype(np.float32)
        labels = np.arange(4) % 3
    else:
        from eqprop.data import load_dataset

        try:
            data = load_dataset("mnist", limit=20)
            x, labels, source = data.train.x[:20], data.train.labels[:20], "MNIST train[:20]"
        except Exception as e:  # no data files carried: say so, measure on random inputs
            x = np.random.default_rng(0).random((20, 784)).astype(np.float32)
            labels = np.arange(20) % 10
            source = f"random inputs (MNIST not found: {type(e).__name__})"
    x = np.ascontiguousarray(x, np.float32)
    d = np.eye(net.n_out, dtype=np.float32)[labels]
    dyn = config.dynamics.phases
    fdyn = config.dynamics.free_dynamics()
    specs = (PhaseSpec("nudged+", float(config.rule.params["beta"])),)
    cos = GT.mixed_precision_cosines(net, x, d, dyn, fdyn, specs, "one-sided", backend)
    for p, v in cos.items():
        emit(rows, row("mixed", f"p1h EP estimate, {p} products", f"cosine {v:.6f}", source))
    if dry or not clock.fits(150.0):
        emit(
            rows,
            row(
                "mixed",
                "p1h test error, 1 epoch on 10k",
                "skipped: time budget" if not dry else "skipped in --dry-run",
            ),
        )
        return
    from eqprop.train import Trainer

    c = config.replace(epochs=1, limit=10000, device="cuda")
    for products in ("native", "bfloat16"):
        t = Trainer(c.replace(products=products), quiet=True)
        t.run()
        err = float(t.history["test_error"][-1])
        emit(
            rows,
            row(
                "mixed",
                f"p1h 1 epoch (10k MNIST), {products} products",
                f"test error {100 * err:.2f}%",
                "",
            ),
        )


# ----------------------------------------------------------------------------- main
def write_outputs(args, head: list, rows: list, tests_rc: int, clock: Clock) -> None:
    """``gpu_check.txt`` (header and table) and ``gpu_check.json`` under ``--output``
    (nothing without one); ``tests_rc`` -1 when the tests did not run."""
    if not args.output:
        return
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.txt").write_text("\n".join(head + [format_row(r) for r in rows]) + "\n")
    info = dict(
        head=head,
        dry_run=args.dry_run,
        tests_rc=tests_rc,
        rows=rows,
        seconds=args.budget - clock.left(),
    )
    (out / "gpu_check.json").write_text(json.dumps(info, indent=1))


def machine() -> str:
    text = f"{platform.node()} {platform.processor() or platform.machine()}, "
    text += f"{os.cpu_count()} cores, Python {platform.python_version()}"
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        text += f", GPU {props['name'].decode()}, CuPy {cupy.__version__}"
    except Exception:  # no GPU: the simulator or a bare machine
        text += ", no GPU (simulator)"
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:  # before numba.cuda is imported anywhere
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        os.environ["EQPROP_CUDA_STANDIN"] = "1"
        args.skip_tests = True
    # small batches launch small grids by design: keep Numba's occupancy warning, one per
    # launch site, out of the log (the rows report the rates)
    os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    shared = ROOT.parent / "shared" / "data"  # the project's data folder, as tests/conftest.py
    if shared.is_dir():
        os.environ.setdefault("EQPROP_DATA_DIR", str(shared))
    from eqprop import gpu

    ok, why = gpu.available()
    if not ok and not args.dry_run:
        print(f"gpu_check: no usable GPU: {why} (--dry-run runs the CPU stand-in)")
        return 2
    backend = "numpy" if args.dry_run else "cupy"
    clock = Clock(args.budget)
    head = [
        "machine: " + machine(),
        "versions: " + versions(),
        "command: " + " ".join([Path(sys.executable).name, *sys.argv]),
    ]
    ok, line = preflight(backend)
    head.append(line)
    if args.dry_run:
        head.append("DRY RUN: Numba's CUDA simulator and NumPy products; not a timing")
    for text in head:
        print(text, flush=True)
    rows: list[dict] = []
    if not ok:  # nothing below can run: say so in seconds, not minutes
        write_outputs(args, head, rows, -1, clock)
        return 3
    rc = 0
    if not args.skip_tests:
        rc = run_gpu_tests(min(180.0, clock.left() - 240.0))
    line = f"GPU tests: exit status {rc}" if not args.skip_tests else "GPU tests: skipped"
    head.append(line)
    print(line, flush=True)
    stages = (
        ("preset", lambda: preset_rows(rows, clock, args.dry_run)),
        ("pconv", lambda: pconv_rows(rows, clock, args.dry_run, backend)),
        ("cifar", lambda: cifar_rows(rows, clock, args.dry_run, backend)),
        ("mixed", lambda: mixed_rows(rows, clock, args.dry_run, backend)),
    )
    for name, stage in stages:
        if name not in args.stages:
            continue
        try:
            stage()
        except Exception as e:  # one stage's failure is a row, not a lost table
            traceback.print_exc()
            emit(rows, row(name, "stage failed", f"{type(e).__name__}: {e}"[:200]))
    write_outputs(args, head, rows, rc, clock)
    failed = [r for r in rows if r["setting"] == "stage failed"]
    if rc != 0:
        print(f"gpu_check: the GPU tests failed (pytest exit status {rc})")
    return 1 if rc != 0 or failed else 0


if __name__ == "__main__":
    sys.exit(main())
