"""How close is the EP estimate with the ``--fast`` free phase to the paper's? (#16; a
script, not a test.)

On the weights and persistent particles of a 2h (or 3h) training checkpoint, for the
minibatches of 20 of training images ``--start`` ... (the checkpoint's own data order):

1. the paper's free phase, ``T`` synchronous projected Euler steps (``eps = 0.5``) from
   the particles (the reference), and the ``--fast`` free phase (``gauss-seidel-parity``,
   ``eps = 1``, damping 1.5, at most ``--max-iter`` sweeps) to each ``--atols`` value;
2. from each free state, the rule's nudged phase (the preset's ``K`` steps, random-sign
   ``beta``: the sign drawn from ``numpy.random.default_rng(minibatch index)``, the same
   for every variant) and the EP estimate :math:`\\hat g` (all parameters, flattened,
   float64);
3. per minibatch, the cosine of each variant's :math:`\\hat g` to the reference's, and
   over all minibatches the cosine and norm ratio of the **summed** estimates (what
   ``--batches`` consecutive SGD steps add up to, to first order), beside
   :math:`\\max|s - s_\\mathrm{ref}|` of the free states and the slowest sample's sweeps.

Late in training most samples of a minibatch are classified with their outputs at the
target, where the nudge does nothing and the reference estimate is nearly zero; there any
free-phase difference dominates one minibatch's estimate, while what training integrates
is the sum. Both are printed.

Run from the repository root::

    python benchmarks/bench_free_tolerance_gradient.py --checkpoint runs/X/checkpoint.npz
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from eqprop.phases import Dynamics


def _estimates(tr, free_dyn, batches, start, batch):
    """Per minibatch: (flattened EP estimate, free state, slowest sample's iterations)."""
    out = []
    for b in range(batches):
        idx = np.arange(start + b * batch, start + (b + 1) * batch)
        x, d, s0 = tr.x_train[idx], tr.d_train[idx], tr.particles[idx]
        rng = np.random.default_rng(b)
        st = tr.rule.estimate(tr.net, x, d, tr.dyn, rng=rng, s0=s0, free_dyn=free_dyn)
        g = st.gradient.flat().astype(np.float64)
        out.append((g, st.free.state, int(st.free.result.n_iter.max())))
    return out


def _cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a dense EP training checkpoint .npz")
    p.add_argument(
        "--atols",
        default="1e-3,1e-4,1e-5,1e-6",
        help="tolerances of the --fast free phase, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--batches", type=int, default=100, help="minibatches of 20 (default: %(default)s)"
    )
    p.add_argument(
        "--start", type=int, default=1000, help="first training image (default: %(default)s)"
    )
    p.add_argument("--max-iter", type=int, default=300, help="sweeps cap (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        atols = [float(v) for v in args.atols.split(",")]
    except ValueError:
        p.error(f"--atols must be comma-separated numbers, got {args.atols!r}")
    if not atols or any(not a > 0 for a in atols) or args.batches < 1 or args.max_iter < 1:
        p.error("--atols must be > 0, --batches and --max-iter >= 1")
    from eqprop.train import Trainer

    tr = Trainer.from_checkpoint(args.checkpoint, quiet=True, overrides={"output": None})
    if tr.particles is None or not hasattr(tr.rule, "beta"):
        p.error("--checkpoint must be an EP run with persistent particles")
    batch = tr.config.run.batch_size
    if args.start < 0 or args.start + args.batches * batch > tr.x_train.shape[0]:
        p.error(f"--start/--batches leave the {tr.x_train.shape[0]} training images")
    paper = dataclasses.replace(tr.dyn, method="fused")
    ref = _estimates(tr, paper, args.batches, args.start, batch)
    ref_sum = sum(g for g, _, _ in ref)
    print(f"# {args.checkpoint}: epoch {tr.epoch}, {args.batches} minibatches of {batch} "
          f"from image {args.start}; reference: the paper's T = {tr.dyn.T} steps "
          f"(eps {tr.dyn.eps:g}) from the particles")  # fmt: skip
    head = (
        f"{'free phase':24s} {'sweeps':>7s} {'max|s-s_ref|':>13s} {'cos mean':>9s} "
        f"{'cos min':>8s} {'summed cos':>11s} {'summed |g|/|g_ref|':>19s}"
    )
    print(head)
    print("-" * len(head))
    for atol in atols:
        fast = Dynamics(
            method="gauss-seidel-parity", eps=1.0, damping=1.5, T=tr.dyn.T, K=tr.dyn.K,
            atol=atol, max_iter=args.max_iter, nudge=tr.dyn.nudge,
        )  # fmt: skip
        got = _estimates(tr, fast, args.batches, args.start, batch)
        cos = [_cos(g, r) for (g, _, _), (r, _, _) in zip(got, ref, strict=True)]
        dmax = max(
            float(np.abs(s - r).max()) for (_, s, _), (_, r, _) in zip(got, ref, strict=True)
        )
        g_sum = sum(g for g, _, _ in got)
        sweeps = float(np.mean([n for _, _, n in got]))
        print(
            f"{'--fast atol ' + format(atol, 'g'):24s} {sweeps:7.1f} {dmax:13.2e} "
            f"{np.nanmean(cos):9.4f} {np.nanmin(cos):8.4f} {_cos(g_sum, ref_sum):11.5f} "
            f"{np.linalg.norm(g_sum) / np.linalg.norm(ref_sum):19.3f}"
        )


if __name__ == "__main__":
    main()
