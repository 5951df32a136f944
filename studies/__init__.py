"""Studies: sweeps over eqprop runs, exported as self-describing xarray datasets.

Generic parts (no network code needed): :func:`sweep` runs any point function over a grid
on any executor (serial, process pool, Dask), resumably; :func:`check_schema` checks the
dataset schema shared by all studies. Specific studies live in their own modules and are
imported lazily, so ``import studies`` stays light.
"""

from .schema import DIMENSIONS, STUDY_DIMS, SchemaError, check_schema, coord_attrs
from .sweep import WORKER_ENV, SerialExecutor, SweepError, as_dataset, open_executor, sweep

__all__ = [
    "DIMENSIONS",
    "STUDY_DIMS",
    "WORKER_ENV",
    "SchemaError",
    "SerialExecutor",
    "SweepError",
    "as_dataset",
    "check_schema",
    "coord_attrs",
    "open_executor",
    "sweep",
]
