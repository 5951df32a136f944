"""Equilibrium solvers for batched dynamical systems (no notion of networks).

Fixed points ``x = g(x)`` (:func:`solve_fixed_point` with :class:`Picard`,
:class:`Anderson`, :class:`Broyden`, :class:`GaussSeidel`) and steady states ``dx/dt = f(x) = 0``
(:func:`solve_steady_state` with :class:`Euler`, :class:`RK4`, :class:`Dopri5`) of a
batch of independent states, with the user's map given as a Numba ``@njit`` function.
See ``docs/solvers.rst``.
"""

# First: chooses Numba's cache folder before any cache=True function is defined.
from . import _numba_cache  # noqa: F401
from ._callbacks import CallbackError

# public name of the result builder every driver uses (also for backends outside this
# package, e.g. eqprop.gpu: one definition of the status, message and failure rules);
# solvers._common.build_result stays as the private spelling
from ._common import build_result
from ._result import SolveResult, SolverFailure, Status
from .fixed_point import solve_fixed_point
from .methods import RK4, Anderson, Broyden, Dopri5, Euler, GaussSeidel, Picard
from .steady_state import solve_steady_state
from .warmup import warmup

__all__ = [
    "RK4",
    "Anderson",
    "Broyden",
    "CallbackError",
    "Dopri5",
    "Euler",
    "GaussSeidel",
    "Picard",
    "SolveResult",
    "SolverFailure",
    "Status",
    "build_result",
    "solve_fixed_point",
    "solve_steady_state",
    "warmup",
]
