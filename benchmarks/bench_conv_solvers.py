"""Free-phase solvers on conv networks: iterations and time to a tolerance (#14).

For Ernoult et al. 2019's P-conv (prototypical, ``1x28x28-c32k5-p2-c64k5-p2-10``, hard
sigmoid) and a small conv Hopfield network (``1x28x28-c16k3p1-p2-c32k3p1-p2-10``,
``eps = 0.5``), both at their initial weights (:func:`eqprop.graph.build.conv_network`,
seed 0), on MNIST test images in batches of 20, the free phase is run by

* ``fixed``: the papers' fixed steps (P-conv: T = 200; Hopfield: T = 100) on the fast
  conv map (:class:`eqprop.graph.conv_kernels.FastMap`, picked by ``path="auto"``);
* ``picard`` and ``gauss-seidel-parity`` (red-black: the odd layers, then the even
  layers, each from the other parity's newest values; the method of Scellier et al.
  2023) with damping 1 and over-relaxed (damping 1.5, hopfield only), each twice: on the
  fast conv map (``FastMap.solve``, what ``path="auto"`` picks; column ``path`` =
  fast) and through :mod:`solvers` on the general graph kernels (``path="general"``),
  and ``anderson`` (general kernels only), to ``max|g(s) - s| <= atol`` per sample.
  Both paths give the same iterates (``tests/test_conv_fast_solve.py``), so their
  iteration counts agree and the seconds compare the two maps.

Columns: iterations (mean and max over samples; a red-black iteration is one sweep
of both parities), full map evaluations the solver made (``maps``, ``nfev``) and block
evaluations (``blocks``: :func:`eqprop.graph.kernels.fixed_point_block`, the couplings
into or out of one layer; a red-black sweep is one full map, whose values update the
first parity and give the residual, and one block per layer of the second parity),
wall seconds per batch, and the residual ``max|g(s) - s|`` of the returned state. The
fixed-steps row's residual says how far the papers' ``T`` steps are from a fixed point.

Run::

    python benchmarks/bench_conv_solvers.py --batches 3 --atol 1e-4
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from eqprop import Dynamics, clamp, free_phase  # noqa: E402
from eqprop.data import load_dataset  # noqa: E402
from eqprop.graph import reference as R  # noqa: E402
from eqprop.graph.build import conv_network, parse_conv_architecture  # noqa: E402

NETS = {
    "P-conv": dict(arch="1x28x28-c32k5-p2-c64k5-p2-10", kind="prototypical", T=200, eps=0.5),
    "conv Hopfield": dict(arch="1x28x28-c16k3p1-p2-c32k3p1-p2-10", kind="hopfield", T=100, eps=0.5),
}


def rows_for(name: str, spec: dict, xs: list[np.ndarray], atol: float, dtype: str):
    net = conv_network(parse_conv_architecture(spec["arch"]), kind=spec["kind"], dtype=dtype)
    eps = spec["eps"]
    runs = [("fixed", dict(method="fixed", T=spec["T"]), "auto")]
    tol = [("picard", dict(method="picard")), ("red-black", dict(method="gauss-seidel-parity"))]
    if spec["kind"] == "hopfield":
        tol += [
            ("picard d=1.5", dict(method="picard", damping=1.5)),
            ("red-black d=1.5", dict(method="gauss-seidel-parity", damping=1.5)),
        ]
    for label, kw in tol:  # the fast map (auto) and the general kernels, one after the other
        runs.append((label, dict(kw, fixed_steps=False), "auto"))
        runs.append((label, dict(kw, fixed_steps=False), "general"))
    runs.append(("anderson", dict(method="anderson", fixed_steps=False), "general"))
    out = []
    for label, kw, path in runs:
        dyn = Dynamics(eps=eps, atol=atol, max_iter=5000, **kw)
        iters, maxit, nfev, nblock, secs, resid = [], 0, [], [], [], []
        for x in xs:
            cx = clamp(net, x, path=path)
            free_phase(net, cx, dyn)  # warm: compilation, buffers
            cx = clamp(net, x, path=path)
            t0 = time.perf_counter()
            ph = free_phase(net, cx, dyn)
            secs.append(time.perf_counter() - t0)
            where = "fast" if cx.fast is not None else "general"
            iters.append(float(np.mean(ph.result.n_iter)))
            maxit = max(maxit, int(np.max(ph.result.n_iter)))
            nfev.append(int(ph.result.nfev))
            nblock.append(int(getattr(ph.result, "nfev_block", 0)))
            g = R.fixed_point_map(net, x, ph.state, eps=eps)
            resid.append(float(np.max(np.abs(g - ph.state))))
        out.append(
            (
                name,
                label,
                where,
                np.mean(iters),
                maxit,
                np.mean(nfev),
                np.mean(nblock),
                np.mean(secs),
                max(resid),
            )
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    a = p.parse_args()
    test = load_dataset("mnist").test
    B = a.batch_size
    xs = [np.asarray(test.x[k * B : (k + 1) * B], dtype=a.dtype) for k in range(a.batches)]
    print(f"# {a.batches} batches of {B} MNIST test images, {a.dtype}, atol {a.atol:g}")
    head = ("net", "method", "path", "iterations", "max", "maps", "blocks", "s/batch", "residual")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name in a.nets:
        for r in rows_for(name, NETS[name], xs, a.atol, a.dtype):
            print(
                f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]} | {r[5]:.0f} | {r[6]:.0f} | "
                f"{r[7]:.3f} | {r[8]:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
