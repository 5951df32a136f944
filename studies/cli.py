"""``eqprop study`` and ``eqprop plot``: run a study to a netCDF file, draw its figure.

``eqprop study KIND --out FILE.nc [study options] [--workers N | --processes N |
--scheduler ADDRESS] [--points DIR] [--plot FIG.png] [--quiet]``

KIND is ``convergence``, ``beta-sweep``, ``gdu`` or ``training``. Finished points are kept
in ``--points`` (default ``FILE.nc.points/``), so running the same command again after an
interruption computes only the missing points. Lists are comma-separated
(``--betas 0.001,0.01,0.1``), layer sizes dash-separated (``--sizes 784-500-10``).

``eqprop plot FILE.nc [-o FIG.png]`` draws the study's standard figure.

Both return 0 on success; bad input raises ValueError (``eqprop`` prints it and exits 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eqprop._cli_options import float_list, int_list, name_list

__all__ = ["STUDIES", "plot_main", "study_main"]

STUDIES = ("convergence", "beta-sweep", "gdu", "training")


def _sizes(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", "-").split("-") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 784-500-10, got {text!r}") from None


def _keyvalue(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output and execution")
    g.add_argument("--out", "-o", required=True, help="netCDF file of the combined dataset")
    g.add_argument("--points", help="folder of per-point files (default: OUT.points)")
    ex = g.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=int, help="local Dask cluster of N worker processes")
    ex.add_argument("--processes", type=int, help="local process pool of N processes")
    ex.add_argument("--scheduler", help="address of a running Dask scheduler")
    g.add_argument("--plot", help="also draw the standard figure to this file")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="eqprop study",
        description="Run a study; each grid point is saved as it finishes (resumable).",
    )
    sub = top.add_subparsers(dest="kind", required=True, metavar="KIND")

    p = sub.add_parser("convergence", help="solver residual/energy per iteration")
    p.add_argument("--methods", type=name_list, default=["picard", "anderson", "gauss-seidel"])
    p.add_argument("--depths", type=int_list, default=[1, 2, 3])
    p.add_argument("--tols", type=float_list, default=[1e-2, 1e-4, 1e-6])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--n-in", type=int, default=64)
    p.add_argument("--n-out", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-iter", type=int, default=500)
    p.add_argument("--eps", type=float, default=0.5)
    p.add_argument(
        "--kind-net", dest="net_kind", default="hopfield", choices=["hopfield", "prototypical"]
    )
    p.add_argument("--activation", default="hardsigmoid")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--seed", type=int, default=0)
    _common(p)

    p = sub.add_parser("beta-sweep", help="bias/variance of EP estimators versus beta")
    p.add_argument("--betas", type=float_list, default=None, help="default: 8 from 1e-3 to 1")
    p.add_argument(
        "--estimators", type=name_list, default=["one-sided", "random-sign", "symmetric"]
    )
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2, 3])
    p.add_argument("--sizes", type=_sizes, default=[20, 16, 5])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--kind-net", dest="net_kind", default="hopfield", choices=["hopfield", "prototypical"]
    )
    p.add_argument("--activation", default="hardsigmoid")
    p.add_argument("--cost", default="squared")
    p.add_argument("--eps", type=float, default=0.5)
    p.add_argument("--method", default="picard")
    p.add_argument("--atol", type=float, default=1e-11)
    p.add_argument("--max-iter", type=int, default=20000)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--net-seed", type=int, default=0)
    p.add_argument("--data", default=None, help="digits, mnist or fashion-mnist (default random)")
    _common(p)

    p = sub.add_parser("gdu", help="EP nudged-phase updates versus BPTT (GDU)")
    p.add_argument("--betas", type=float_list, default=[1e-3, 1e-2, 1e-1])
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    p.add_argument("--setting", default="toy", help="toy, prototypical or energy-based")
    p.add_argument("--sizes", type=_sizes, default=None)
    p.add_argument("--T", type=int, default=None)
    p.add_argument("--K", type=int, default=None)
    p.add_argument("--eps", type=float, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--data", default=None)
    _common(p)

    p = sub.add_parser("training", help="train/test error per epoch")
    p.add_argument(
        "--estimators", type=name_list, default=["one-sided", "random-sign", "symmetric"]
    )
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    p.add_argument("--costs", type=name_list, default=["squared"])
    p.add_argument("--preset", default=None, help="start from an eqprop preset")
    p.add_argument(
        "--set",
        dest="overrides",
        type=_keyvalue,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig setting (JSON value), repeatable",
    )
    _common(p)
    return top


def _run(args: argparse.Namespace, command: Sequence[str]) -> Any:
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    sweep_kwargs: dict[str, Any] = dict(
        out_dir=Path(args.points) if args.points else out.with_name(out.name + ".points"),
        path=out,
        workers=args.workers,
        processes=args.processes,
        scheduler=args.scheduler,
        progress=False if args.quiet else None,
        command=list(command),
    )
    if args.kind == "convergence":
        from .convergence import solver_convergence

        return solver_convergence(
            args.methods,
            args.depths,
            tols=args.tols,
            hidden=args.hidden,
            n_in=args.n_in,
            n_out=args.n_out,
            batch=args.batch,
            max_iter=args.max_iter,
            eps=args.eps,
            kind=args.net_kind,
            activation=args.activation,
            dtype=args.dtype,
            seed=args.seed,
            **sweep_kwargs,
        )
    if args.kind == "beta-sweep":
        from .beta import beta_sweep

        extra = {} if args.betas is None else {"betas": args.betas}
        return beta_sweep(
            estimators=args.estimators,
            seeds=args.seeds,
            sizes=args.sizes,
            batch=args.batch,
            kind=args.net_kind,
            activation=args.activation,
            cost=args.cost,
            eps=args.eps,
            method=args.method,
            atol=args.atol,
            max_iter=args.max_iter,
            dtype=args.dtype,
            net_seed=args.net_seed,
            data=args.data,
            **extra,
            **sweep_kwargs,
        )
    if args.kind == "gdu":
        from .gdu import gdu_study

        over = {k: getattr(args, k) for k in ("sizes", "T", "K", "eps", "batch", "data")}
        over = {k: v for k, v in over.items() if v is not None}
        setting = None if args.setting in ("", "none") else args.setting
        return gdu_study(args.betas, args.seeds, setting=setting, **over, **sweep_kwargs)
    from .training import QUICK, training_curves

    base: dict[str, Any] = dict(QUICK)
    if args.preset:
        from eqprop.presets import get_preset

        base = dict(get_preset(args.preset).settings)
    base.update(dict(args.overrides))
    return training_curves(args.estimators, args.seeds, args.costs, base=base, **sweep_kwargs)


def study_main(argv: Sequence[str]) -> int:
    """Entry point of ``eqprop study``; returns the exit status (0 on success)."""
    argv = list(argv)
    args = _parser().parse_args(argv)
    ds = _run(args, ["eqprop", "study", *argv])
    print(f"wrote {args.out} ({', '.join(f'{k}={v}' for k, v in ds.sizes.items())})")
    if args.plot:
        from .plot import plot_study

        plot_study(ds, args.plot)
        print(f"wrote {args.plot}")
    return 0


def plot_main(argv: Sequence[str]) -> int:
    """Entry point of ``eqprop plot FILE.nc [-o FIG.png]``; returns 0 on success."""
    p = argparse.ArgumentParser(prog="eqprop plot", description="Draw a study's figure.")
    p.add_argument("path", help="netCDF file written by 'eqprop study'")
    p.add_argument("-o", "--out", help="image file (default: PATH with suffix .png)")
    p.add_argument("--dpi", type=int, default=120)
    args = p.parse_args(list(argv))
    if not Path(args.path).exists():
        raise FileNotFoundError(f"no such file: {args.path}")
    from .plot import plot_study

    out = args.out or str(Path(args.path).with_suffix(".png"))
    plot_study(args.path, out, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(study_main(sys.argv[1:]))
