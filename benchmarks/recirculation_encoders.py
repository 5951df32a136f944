"""Recirculation on encoder problems, and its update against the exact gradient.

Two parts (both by default):

``encoders``
    Hinton & McClelland (1988)'s encoder experiments: for each problem (``4-2-4``: four
    one-hot visible patterns through two hidden units) and each setting, ``--seeds``
    independent initialisations (weights and biases uniform in ``[-scale, scale]``) trained
    by batch recirculation (one update = both passes for every pattern, the summed
    changes applied) until the squared reconstruction error summed over patterns and
    visible units is below ``--criterion``, or ``--max-updates``. Prints, per problem and
    setting, the fraction that reached the criterion and the distribution of updates to
    criterion among those (mean, median, 10th / 90th percentile, max), plus how symmetric
    the learnt weights are (cosine of the encoder and the decoder's transpose), as an RST
    table; writes a histogram of the updates to criterion (``--figure``).
``cosine``
    The cosine between recirculation's update and minus the exact gradient of the squared
    reconstruction error, per weight matrix, as the regression lambda varies, in and out of
    the restricted case (linear visible units and symmetric weights); mean over ``--seeds``
    random loops on the 4-2-4 patterns; writes ``--cosine-figure``.

Usage::

    PYTHONPATH=. python benchmarks/recirculation_encoders.py \\
        [--parts encoders,cosine] [--problems 4-2-4,8-3-8] [--seeds 100] \\
        [--lr 20] [--lam 0.75] [--criterion 0.1] [--max-updates 5000] \\
        [--figure docs/figures/recirculation_updates.png] \\
        [--cosine-figure docs/figures/recirculation_cosine.png]

Comma lists in ``--problems``, ``--lr`` and ``--lam`` run every combination. CPU only,
float64; the default run takes a few seconds to a minute.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from eqprop.recirculation import (
    LoopWeights,
    RecirculationSettings,
    cosine_by_parameter,
    encoder_patterns,
    init_loop,
    parse_sizes,
    recirculate,
    recirculation_update,
    reconstruction_gradient,
    train_seeds,
)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _symmetry(loop: LoopWeights) -> np.ndarray:
    """Per stacked loop: cosine between the encoder and the decoder's transpose."""
    enc, dec = loop.weights
    dec_t = np.swapaxes(dec, -1, -2)
    dot = np.sum(enc * dec_t, axis=(-2, -1))
    return dot / (np.linalg.norm(enc, axis=(-2, -1)) * np.linalg.norm(dec, axis=(-2, -1)))


def run_problem(problem, lr, lam, lam_h, args):
    sizes = parse_sizes(problem)
    settings = RecirculationSettings(learning_rate=lr, regression=lam, hidden_regression=lam_h)
    study = train_seeds(
        sizes,
        range(args.seeds),
        encoder_patterns(sizes[0]),
        settings,
        scale=args.scale,
        criterion=args.criterion,
        max_updates=args.max_updates,
    )
    if len(sizes) == 2:
        symmetry = _symmetry(study.loop)[study.converged]
    else:
        symmetry = np.array([])
    return study.updates_to_criterion, symmetry


def part_encoders(args):
    rows = []
    results = {}
    for problem in args.problems.split(","):
        for lr in args.lr:
            for lam, lam_h in ((a, b) for a in args.lam for b in args.hidden_lam):
                t0 = time.perf_counter()
                counts, symmetry = run_problem(problem, lr, lam, lam_h, args)
                wall = time.perf_counter() - t0
                ok = counts[np.isfinite(counts)]
                results[(problem, lr, lam)] = counts
                stats = (
                    (np.mean(ok), np.median(ok), *np.percentile(ok, [10, 90]), np.max(ok))
                    if ok.size
                    else (np.nan,) * 5
                )
                rows.append(
                    (
                        problem,
                        f"{lr:g}",
                        f"{lam:g}",
                        f"{lam if lam_h is None else lam_h:g}",
                        f"{ok.size}/{counts.size}",
                        *(f"{x:.1f}" for x in stats),
                        f"{np.mean(symmetry):.2f}" if symmetry.size else "-",
                        f"{wall:.1f}",
                    )
                )
    header = (
        "problem",
        "epsilon",
        "lambda",
        "lambda_h",
        "converged",
        "mean",
        "median",
        "p10",
        "p90",
        "max",
        "symmetry",
        "wall s",
    )
    _print_rst_table(header, rows)
    if args.figure:
        _histogram(results, args)
    return results


def _print_rst_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    print(rule)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print(rule)
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    print(rule)


def _histogram(results, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.0), dpi=110)
    finite = [c[np.isfinite(c)] for c in results.values()]
    top = max((c.max() for c in finite if c.size), default=1.0)
    bins = np.logspace(0, np.log10(max(top, 10.0)) + 0.05, 40)
    for (problem, lr, lam), counts in results.items():
        ok = counts[np.isfinite(counts)]
        label = f"{problem}, eps={lr:g}, lambda={lam:g}: {ok.size}/{counts.size} converged"
        ax.hist(ok, bins=bins, histtype="step", linewidth=1.5, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("weight updates to criterion (log scale)")
    ax.set_ylabel("seeds")
    ax.set_title(f"recirculation, error < {args.criterion:g}, {args.seeds} seeds", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.figure)
    print(f"wrote {args.figure}")


CASES = (
    ("linear visible, symmetric weights", "linear", "symmetric"),
    ("logistic visible, symmetric weights", "sigmoid", "symmetric"),
    ("logistic visible, independent weights", "sigmoid", "independent"),
    ("logistic visible, after 20 recirculation updates", "sigmoid", "trained"),
)
PANELS = (("W0", "encoder weights"), ("W1", "decoder weights"), ("all", "all weights and biases"))


def _cosine_loop(seed, weights, patterns):
    loop = init_loop((4, 2), np.random.default_rng(seed), scale=1.0)
    if weights == "symmetric":
        return LoopWeights((loop.weights[0], loop.weights[0].T.copy()), loop.biases)
    if weights == "trained":
        loop = init_loop((4, 2), np.random.default_rng(seed), scale=0.5)
        settings = RecirculationSettings(learning_rate=20.0, regression=0.75)
        for _ in range(20):
            loop = loop.plus(
                recirculation_update(loop, recirculate(loop, patterns, settings), settings)
            )
    return loop


def part_cosine(args):
    lams = np.sort(np.concatenate([np.linspace(0.0, 0.9, 10), [0.75, 0.95, 0.99, 0.999]]))
    patterns = encoder_patterns(4)
    table = {}
    for label, visible, weights in CASES:
        cos = {name: np.zeros((args.cosine_seeds, lams.size)) for name, _ in PANELS}
        for seed in range(args.cosine_seeds):
            loop = _cosine_loop(seed, weights, patterns)
            for i, lam in enumerate(lams):
                settings = RecirculationSettings(regression=lam, visible_activation=visible)
                update = recirculation_update(loop, recirculate(loop, patterns, settings), settings)
                c = cosine_by_parameter(update, reconstruction_gradient(loop, patterns, settings))
                for name in cos:
                    cos[name][seed, i] = -c[name]
        table[label] = {name: values.mean(0) for name, values in cos.items()}
    print(
        f"\ncosine(recirculation update, -dE/dtheta), 4-2-4 patterns, mean over "
        f"{args.cosine_seeds} loops:"
    )
    print("lambda      " + "  ".join(f"{lam:6.3f}" for lam in lams))
    for label, rows in table.items():
        print(label)
        for name, values in rows.items():
            print(f"  {name:<8s}  " + "  ".join(f"{x:6.3f}" for x in values))
    if args.cosine_figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.0), dpi=100, sharey=True)
        x = 1.0 - lams
        for label, rows in table.items():
            for ax, (name, _) in zip(axes, PANELS):
                ax.semilogx(x, rows[name], marker=".", label=label)
        for ax, (_, title) in zip(axes, PANELS):
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("1 - lambda")
            ax.invert_xaxis()
            ax.axhline(0.99, color="grey", linewidth=0.5, linestyle="--")
        axes[0].set_ylabel("cosine with -dE/dtheta")
        axes[0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(args.cosine_figure)
        print(f"wrote {args.cosine_figure}")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="encoders,cosine", help="encoders,cosine (default)")
    parser.add_argument("--problems", default="4-2-4", help="comma list of sizes (default 4-2-4)")
    parser.add_argument("--seeds", type=int, default=100, help="seeds per setting (default 100)")
    parser.add_argument("--lr", type=_floats, default=[20.0], help="epsilon list (default 20)")
    parser.add_argument("--lam", type=_floats, default=[0.75], help="lambda list (default 0.75)")
    parser.add_argument(
        "--hidden-lam",
        type=_floats,
        default=[None],
        help="hidden groups' lambda list (default: the same as --lam)",
    )
    parser.add_argument("--scale", type=float, default=0.5, help="init half-width (default 0.5)")
    parser.add_argument("--criterion", type=float, default=0.1, help="error criterion (0.1)")
    parser.add_argument("--max-updates", type=int, default=5000, help="cap (default 5000)")
    parser.add_argument("--figure", default="", help="histogram PNG path (default: none)")
    parser.add_argument("--cosine-figure", default="", help="cosine PNG path (default: none)")
    parser.add_argument("--cosine-seeds", type=int, default=20, help="loops averaged (20)")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = set(parts) - {"encoders", "cosine"}
    if unknown:
        parser.error(f"unknown --parts {sorted(unknown)}; choose from encoders, cosine")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    try:
        if "encoders" in parts:
            part_encoders(args)
        if "cosine" in parts:
            part_cosine(args)
    except ValueError as exc:
        parser.exit(2, f"recirculation_encoders: error: {exc}\n")


if __name__ == "__main__":
    main()
