"""Studies: sweeps over eqprop runs, exported as self-describing xarray datasets.

Generic parts (no network code needed): :func:`sweep` runs any point function over a grid
on any executor (serial, process pool, Dask), resumably; :func:`check_schema` checks the
dataset schema shared by all studies. Specific studies live in their own modules and are
imported lazily, so ``import studies`` stays light.
"""

from .schema import DIMENSIONS, STUDY_DIMS, SchemaError, check_schema, coord_attrs
from .sweep import WORKER_ENV, SerialExecutor, SweepError, as_dataset, open_executor, sweep

# beta_sweep, gdu_study, plot_study, solver_convergence, training_curves are imported on
# first use (they need eqprop's network code and matplotlib)
__all__ = [
    "DIMENSIONS",
    "STUDY_DIMS",
    "WORKER_ENV",
    "SchemaError",
    "SerialExecutor",
    "SweepError",
    "as_dataset",
    "beta_sweep",
    "check_schema",
    "coord_attrs",
    "gdu_study",
    "open_executor",
    "plot_study",
    "solver_convergence",
    "sweep",
    "training_curves",
]

_LAZY = {
    "solver_convergence": "studies.convergence",
    "beta_sweep": "studies.beta",
    "gdu_study": "studies.gdu",
    "training_curves": "studies.training",
    "plot_study": "studies.plot",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'studies' has no attribute {name!r}")
