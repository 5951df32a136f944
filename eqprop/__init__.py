"""eqprop: learning in energy-based networks without backpropagation."""

__version__ = "0.1.0"

# isort: off
# Numba's cache folder is chosen on this import, before eqprop.kernels defines its
# cache=True functions (solvers/_numba_cache.py says why).
import solvers._numba_cache  # noqa: F401

from eqprop import graph  # layers and couplings (issue 11)

# isort: on
from eqprop.network import (
    Gradient,
    Network,
    activities,
    contrast_gradient,
    cost,
    energy,
    init_network,
    output,
    parameter_gradient,
    state_gradient,
)
from eqprop.optim import SGD
from eqprop.phases import (
    Clamped,
    Dynamics,
    Phase,
    clamp,
    free_phase,
    nudged_phase,
    predict,
    run_phase,
)
from eqprop.rules import (
    ContrastiveHebbian,
    CoupledLearning,
    EquilibriumPropagation,
    GeneRec,
    LearningRule,
    PhaseSpec,
    RuleStep,
)
from eqprop.train import TrainConfig, Trainer, TrainResult, load_checkpoint

__all__ = [
    "SGD",
    "Clamped",
    "ContrastiveHebbian",
    "CoupledLearning",
    "Dynamics",
    "EquilibriumPropagation",
    "GeneRec",
    "Gradient",
    "LearningRule",
    "Network",
    "Phase",
    "PhaseSpec",
    "RuleStep",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "__version__",
    "activities",
    "clamp",
    "contrast_gradient",
    "cost",
    "energy",
    "free_phase",
    "graph",
    "init_network",
    "load_checkpoint",
    "nudged_phase",
    "output",
    "parameter_gradient",
    "predict",
    "run_phase",
    "state_gradient",
]
