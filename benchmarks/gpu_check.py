"""The prepared device check of issue #17: GPU tests, then samples/s of the phases.

On a machine with an NVIDIA GPU, CuPy and numba-cuda (the ``[gpu]`` extra), run from the
repository root (well under 10 minutes on an H200)::

    NUMBA_CACHE_DIR=.numba_cache python benchmarks/gpu_check.py [--output DIR]

1. runs the GPU-marked tests (``pytest -m gpu tests/test_gpu_device.py``: the CUDA
   phases of the presets' networks equal the CPU phases);
2. prints one table: samples/s of one training step's phases (free phase ``T`` steps,
   then nudged phase ``K`` steps from the free state) of the ``ernoult2019-p1h`` and
   ``scellier2017-1h`` settings at batch 20 and 256, on the GPU
   (:func:`eqprop.gpu.free_phase` / ``nudged_phase``, ``method="fixed"``, cuBLAS
   products) and on the CPU in the same run (:mod:`eqprop.phases` with the presets'
   ``method="fused"``), and their ratio. Each figure is the best of ``--repeat``
   blocks of about ``--seconds`` each, after one untimed warm-up (compilation).

The issue's other rows (Ernoult et al.'s P-conv on MNIST, the 128-256-512-512 CIFAR
architecture, mixed precision) need GPU modules of the conv couplings and a GPU trainer,
which do not exist yet; the script says so in its output.

``--simulate`` is the CPU stand-in mode, for a machine without a GPU (and for the
tests): ``NUMBA_ENABLE_CUDASIM=1``, the NumPy array backend, tiny versions of the two
networks (sizes 6-5-3, at most 3 steps, batch 2), no pytest step. Its figures time
Numba's CUDA simulator and mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("ernoult2019-p1h", "scellier2017-1h")
NOT_BUILT_ROWS = (
    "P-conv on MNIST (s/epoch, test error after 2 min): not measured, the conv couplings "
    "have no GPU module yet",
    "CIFAR 128-256-512-512 (s per 50,000 samples, fraction of matrix throughput): not "
    "measured, same reason",
    "mixed precision (cosine to the float32 EP estimate, test error): not built",
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="gpu_check.py",
        description="Issue #17's device check: GPU tests, then phase samples/s GPU vs CPU.",
    )
    p.add_argument(
        "--batches", default="20,256", help="comma list of batch sizes (default: 20,256)"
    )
    p.add_argument("--repeat", type=int, default=3, help="timed blocks per figure (default: 3)")
    p.add_argument(
        "--seconds", type=float, default=1.0, help="length of one timed block (default: 1.0)"
    )
    p.add_argument("--dtype", default="float32", help="float32 or float64 (default: float32)")
    p.add_argument(
        "--skip-tests", action="store_true", help="do not run the GPU-marked tests first"
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="CPU stand-in: Numba's CUDA simulator, NumPy products, tiny networks",
    )
    p.add_argument("--output", "-o", metavar="DIR", help="also write gpu_check.{txt,json} here")
    return p.parse_args(argv)


def run_gpu_tests() -> int:
    """``pytest -m gpu tests/test_gpu_device.py`` in a subprocess; its exit status."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rs"]
    cmd.append(str(ROOT / "tests" / "test_gpu_device.py"))
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def setting(name: str, dtype: str, simulate: bool):
    """The preset's network (seed 0) and the Dynamics of its phases (``method`` kept)."""
    from eqprop.presets import get_preset

    config = get_preset(name).config.replace(dtype=dtype)
    dyn = config.dynamics.free_dynamics()
    if simulate:
        config = config.replace(architecture="6-5-3")
        dyn = dataclasses.replace(dyn, T=min(dyn.T, 3), K=min(dyn.K, 3))
    return config.make_network(), dyn, float(config.rule.params.get("beta", 0.5))


def time_step(step, repeat: int, seconds: float) -> float:
    """Best seconds per call of ``step()`` over ``repeat`` blocks of about ``seconds``."""
    step()  # warm-up: compilation
    t0 = time.perf_counter()
    step()
    once = max(time.perf_counter() - t0, 1e-6)
    n = max(1, int(seconds / once))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def steps(net, x, d, beta, dyn, gdyn, backend):
    """One training step's phases (free, then nudged from the free state) on the CPU
    (``dyn``) and on the CUDA backend (``gdyn``), as two functions without arguments."""
    from eqprop import gpu, phases

    def cpu_step():
        f = phases.free_phase(net, x, dyn)
        phases.nudged_phase(net, x, d, beta, dyn, s0=f.state)

    def gpu_step():
        f = gpu.free_phase(net, x, gdyn, backend=backend)
        gpu.nudged_phase(net, x, d, beta, gdyn, s0=f.state, backend=backend)

    return cpu_step, gpu_step


def measure(args: argparse.Namespace) -> list[dict]:
    import numpy as np

    backend = "numpy" if args.simulate else "cupy"
    rows = []
    for name in PRESETS:
        net, dyn, beta = setting(name, args.dtype, args.simulate)
        gdyn = dataclasses.replace(dyn, method="fixed")
        for B in [int(b) for b in args.batches.split(",")]:
            rng = np.random.default_rng(0)
            x = rng.random((B, net.sizes[0])).astype(net.dtype)
            d = np.eye(net.n_out, dtype=net.dtype)[rng.integers(0, net.n_out, B)]
            cpu_step, gpu_step = steps(net, x, d, beta, dyn, gdyn, backend)
            t_cpu = time_step(cpu_step, args.repeat, args.seconds)
            t_gpu = time_step(gpu_step, args.repeat, args.seconds)
            rows.append(
                dict(
                    setting=name,
                    batch=B,
                    T=dyn.T,
                    K=dyn.K,
                    dtype=args.dtype,
                    cpu_samples_per_s=B / t_cpu,
                    gpu_samples_per_s=B / t_gpu,
                    ratio=t_cpu / t_gpu,
                )
            )
            print(format_row(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'setting':<18} {'batch':>5} {'T+K':>7} {'dtype':>8} "
    f"{'CPU samples/s':>14} {'GPU samples/s':>14} {'GPU/CPU':>8}"
)


def format_row(r: dict) -> str:
    return (
        f"{r['setting']:<18} {r['batch']:>5} {str(r['T']) + '+' + str(r['K']):>7} "
        f"{r['dtype']:>8} {r['cpu_samples_per_s']:>14.1f} {r['gpu_samples_per_s']:>14.1f} "
        f"{r['ratio']:>8.2f}"
    )


def machine() -> str:
    text = f"{platform.node()} {platform.processor() or platform.machine()}, "
    text += f"{os.cpu_count()} cores, Python {platform.python_version()}"
    try:
        import cupy

        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        text += f", GPU {props['name'].decode()}"
    except Exception:  # no GPU: the simulator or a bare machine
        text += ", no GPU (simulator)"
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.simulate:  # before numba.cuda is imported anywhere
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        args.batches = "2"
        args.skip_tests = True
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    from eqprop import gpu

    ok, why = gpu.available()
    if not ok and not args.simulate:
        print(f"gpu_check: no usable GPU: {why} (--simulate runs the CPU stand-in)")
        return 2
    rc = 0 if args.skip_tests else run_gpu_tests()
    print("machine: " + machine())
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    if args.simulate:
        print("SIMULATOR: Numba's CUDA simulator and NumPy products; not a timing")
    print(HEADER, flush=True)
    rows = measure(args)
    for line in NOT_BUILT_ROWS:
        print("not built: " + line)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        lines = [HEADER] + [format_row(r) for r in rows]
        (out / "gpu_check.txt").write_text("\n".join(lines) + "\n")
        info = dict(machine=machine(), simulate=args.simulate, tests_rc=rc, rows=rows)
        (out / "gpu_check.json").write_text(json.dumps(info, indent=1))
    if rc != 0:
        print(f"gpu_check: the GPU tests failed (pytest exit status {rc})")
    return 1 if rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
