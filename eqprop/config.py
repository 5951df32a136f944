"""The settings of a training run, composed of the parts' own records.

:class:`TrainConfig` holds one record per part of a run, each built by the module that
owns the concept, so that adding a rule, a coupling or a solver setting changes one
record and no list of names elsewhere::

    TrainConfig(
        network=NetworkConfig("784-500-10", kind="hopfield", activation="hardsigmoid"),
        dynamics=DynamicsConfig(Dynamics(T=20, K=4, eps=0.5, method="fused", atol=1e-4)),
        rule=RuleConfig("ep", {"beta": 1.0, "estimator": "random-sign"}),
        optimizer=OptimizerConfig(lrs=(0.2, 0.1)),
        data=DataConfig("mnist"),
        run=RunConfig(epochs=25, batch_size=20),
    )

* ``network`` (:class:`NetworkConfig`): what :func:`eqprop.network.init_network` and the
  graph builder (:func:`eqprop.graph.build.extend_chain`) take.
* ``dynamics`` (:class:`DynamicsConfig`): an :class:`eqprop.phases.Dynamics` (the record
  the phases and the rules read; *its* fields, not copies) for every phase, the changes of
  the free phases (``free``: Dynamics field -> value) from epoch ``free_from_epoch`` (its
  sample ``free_from_sample``) on, and the evaluation's step count ``eval_T``.
* ``rule`` (:class:`RuleConfig`): a name of :data:`eqprop.rules.RULE_CLASSES` and the
  class's keyword arguments, the rule's parameters (the class's signature is the schema).
* ``optimizer`` (:class:`OptimizerConfig`): the arguments of :class:`eqprop.optim.SGD`.
* ``data`` (:class:`DataConfig`) and ``run`` (:class:`RunConfig`): which data, and the
  trainer's loop (epochs, minibatches, seed, persistent particles, output, threads).

**Flat names.** Every setting also has one flat name, the ``dest`` of its
``eqprop train`` option and the key of the configuration files written before the
records (format ``eqprop-checkpoint-1``'s config): the field's own name for the fields of
the network, optimizer, data and run records and of :class:`~eqprop.phases.Dynamics`,
``free_<field>`` for the free phases' changes, ``early_free_<field>`` for those of the
epochs before ``free_from_epoch``, ``free_from_epoch``, ``free_from_sample``, ``eval_T``, ``rule``
for the rule's name and :data:`eqprop.rules.RULE_OPTIONS` for the rule's parameters
(:func:`flat_names` generates them from the records). :meth:`TrainConfig.replace` and
:meth:`TrainConfig.from_dict` take them beside the records.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqprop.gpu.backend import PRODUCTS as BACKEND_PRODUCTS
from eqprop.phases import Dynamics

__all__ = [
    "CONFIG_FORMAT",
    "GRAPH_RULES",
    "PARTS",
    "DataConfig",
    "DynamicsConfig",
    "NetworkConfig",
    "OptimizerConfig",
    "RuleConfig",
    "RunConfig",
    "TrainConfig",
    "flat_defaults",
    "flat_names",
    "parse_architecture",
    "train_dynamics",
]

#: Format tag written in every :meth:`TrainConfig.to_dict`; a mapping without it and
#: without part keys is read as the flat format of eqprop's first trainer.
CONFIG_FORMAT = "eqprop-train-config-2"

_DTYPES = ("float32", "float64")
#: Rules that run on graph networks only (the trainer builds the chain's graph for them).
GRAPH_RULES = ("holomorphic",)


def parse_architecture(spec: str | Sequence[int]) -> tuple[int, ...]:
    """Layer sizes from ``"784-500-10"`` (input first) or a sequence of ints.

    Raises
    ------
    ValueError
        Fewer than two layers, or a size that is not a positive integer.
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.replace(",", "-").split("-")]
        try:
            sizes = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"architecture {spec!r}: write layer sizes joined by '-', input first, "
                "e.g. '784-500-10'"
            ) from None
    else:
        sizes = tuple(int(s) for s in spec)
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(
            f"architecture {spec!r}: need at least an input and an output layer, all sizes "
            ">= 1, e.g. '784-500-10'"
        )
    return sizes


# ------------------------------------------------------------------------------------
# the parts


@dataclass(frozen=True)
class NetworkConfig:
    """The network of a run (:meth:`make`).

    Parameters
    ----------
    architecture : str
        Layer sizes input first, ``"784-500-10"``; the input size must match the data.
        Or a conv architecture, ``"1x28x28-c32k5-p2-c64k5-p2-10"`` (input image, conv
        layers with their pooling, dense layers;
        :func:`eqprop.graph.build.parse_conv_architecture`), which builds a graph
        network (:func:`eqprop.graph.build.conv_network`; ``init`` does not apply, skip
        couplings are refused; ``free`` / ``random`` feedback give each coupling between
        state layers a kernel ``B`` of its ``W``'s shape).
    kind, activation, cost, init, dtype : str
        Passed to :func:`eqprop.network.init_network` (``init``: ``"glorot"`` or
        ``"fan-in"``; ``dtype``: ``"float32"`` or ``"float64"``).
    output_activation : str or None
        The output layer's activation (one of :data:`eqprop.graph.model.ACTIVATIONS`,
        ``"identity"`` a linear output). None: the chain's.
    feedback : {"tied", "scaled", "free", "random"}
        What each coupling between state layers sends back, ``W^T``, ``gamma W^T``, a
        learned ``B`` or a fixed random ``B`` (feedback alignment, Lillicrap et al. 2016);
        see :func:`eqprop.graph.build.chain`.
    feedback_scale : float
        ``gamma`` of ``feedback="scaled"`` (1 for the other modes).
    skip : str or None
        Skip couplings ``"i-j"`` (layer indices, 0 the input), comma-separated
        (:func:`eqprop.graph.build.parse_skip`).

    When any of the last four differs from its default (:attr:`uses_graph`), :meth:`make`
    builds a :class:`eqprop.graph.GraphNetwork` from the chain with
    :func:`eqprop.graph.build.extend_chain`; otherwise an :class:`eqprop.network.Network`.
    """

    architecture: str = "64-64-10"
    kind: str = "hopfield"
    activation: str = "hardsigmoid"
    cost: str = "squared"
    init: str = "glorot"
    dtype: str = "float32"
    output_activation: str | None = None
    feedback: str = "tied"
    feedback_scale: float = 1.0
    skip: str | None = None

    @property
    def is_conv(self) -> bool:
        """Whether :attr:`architecture` is a conv architecture (``1x28x28-c32k5-p2-...``,
        :func:`eqprop.graph.build.parse_conv_architecture`)."""
        from eqprop.graph.build import is_conv_architecture

        return is_conv_architecture(self.architecture)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer sizes parsed from :attr:`architecture` (a conv architecture: units per
        layer, conv layers flattened; one learning rate per layer after the input)."""
        if self.is_conv:
            from eqprop.graph.build import parse_conv_architecture

            return parse_conv_architecture(self.architecture).sizes
        return parse_architecture(self.architecture)

    @property
    def uses_graph(self) -> bool:
        """Whether ``output_activation``, ``feedback``, ``feedback_scale`` or ``skip`` ask
        for a graph network instead of the chain, or the architecture is a conv one."""
        return (
            self.output_activation is not None
            or self.feedback != "tied"
            or self.feedback_scale != 1.0
            or bool(self.skip)
            or self.is_conv
        )

    def make(self, seed: int, graph: bool = False) -> Any:
        """The network: :func:`eqprop.network.init_network`'s chain (weights drawn from
        ``seed``), or, when :attr:`uses_graph` or ``graph`` (a rule that runs on graph
        networks only), that chain (same initial weights) changed by
        :func:`eqprop.graph.build.extend_chain` (output activation, feedback mode with
        ``gamma = feedback_scale``, skip couplings drawn from ``seed``). A conv
        :attr:`architecture` builds :func:`eqprop.graph.build.conv_network` (weights
        uniform in PyTorch's default bound from ``seed``; ``init`` does not apply)."""
        from eqprop import network as _network

        if self.is_conv:
            from eqprop.graph.build import conv_network, parse_conv_architecture

            return conv_network(
                parse_conv_architecture(self.architecture),
                kind=self.kind,
                activation=self.activation,
                output_activation=self.output_activation,
                cost=self.cost,
                feedback=self.feedback,
                gamma=float(self.feedback_scale),
                dtype=self.dtype,
                seed=seed,
            )

        net = _network.init_network(
            self.sizes,
            kind=self.kind,
            activation=self.activation,
            cost=self.cost,
            dtype=self.dtype,
            seed=seed,
            init=self.init,
        )
        if not (self.uses_graph or graph):
            return net
        from eqprop.graph.build import extend_chain, from_network, parse_skip

        return extend_chain(
            from_network(net),
            output_activation=self.output_activation,
            feedback=self.feedback,
            gamma=float(self.feedback_scale),
            skip=parse_skip(self.skip, len(self.sizes)),
            seed=seed,
        )


def train_dynamics(**settings: Any) -> Dynamics:
    """An :class:`eqprop.phases.Dynamics` with the trainer's defaults: those of Dynamics
    except ``atol = 1e-4`` (the tolerance the trainer has always used, and reported
    convergence against for fixed-step phases)."""
    return Dynamics(**{"atol": 1e-4, **settings})


@dataclass(frozen=True)
class DynamicsConfig:
    """How the phases of a run are solved.

    Parameters
    ----------
    phases : Dynamics
        Every phase's settings (:class:`eqprop.phases.Dynamics`: ``T``, ``K``, ``eps``,
        ``method``, ``damping``, ``nudge``, ``atol``, ``rtol``, ``max_iter``, ...);
        ``method`` must be a name (JSON). ``"fixed"`` runs exactly ``T`` / ``K`` steps
        (the papers' setting). Default :func:`train_dynamics` ``()`` (``atol = 1e-4``).
    free : mapping
        Dynamics fields the free phases (training and evaluation) change, e.g.
        ``{"method": "gauss-seidel-parity", "eps": 1.0, "damping": 1.5}`` (the fastest
        method of ``benchmarks/bench_deep_phases.py`` on the deep nets, to ``atol``);
        the nudged phases keep ``phases``. Flat names ``free_method``, ``free_eps``, ...
    free_from_epoch : int
        First epoch (1-based) whose free phases use ``free``; the epochs before run
        ``phases`` changed by ``early_free`` for ``T`` (evaluation: ``eval_T``) steps.
        Default 1 (from the start). The fast setting of the deep presets (``--fast``)
        uses 2: the first epoch relaxes from zero along the paper's path and the fast
        phase starts from the persistent particles it leaves.
    free_from_sample : int
        Where in epoch ``free_from_epoch`` the switch happens: its first
        ``free_from_sample`` training samples (in the epoch's visiting order; a multiple
        of ``batch_size``, fewer than the training samples) still run the earlier
        epochs' free phases, the rest and the evaluation after that epoch ``free``.
        Default 0 (the whole epoch). E.g. ``free_from_epoch = 1, free_from_sample =
        10000``: the paper's path for the first 10,000 samples only (measured in
        docs/solvers.rst, "Switching inside the first epoch"; not adopted by ``--fast``).
    early_free : mapping
        Dynamics fields the free phases (training and evaluation) of the epochs before
        ``free_from_epoch`` change; the nudged phases keep ``phases``. Default empty
        (``phases`` itself). E.g. ``{"fixed_steps": False}`` with ``method="fused"``
        stops the paper's own iteration once the whole minibatch meets ``atol`` (at most
        ``T`` steps, and ``max_iter``; :class:`eqprop.phases.Dynamics`). Flat names
        ``early_free_<field>``; on the command line ``--early-free-fixed-steps`` only.
    eval_T : int or None
        Free-phase steps of evaluation; None means the free phases' ``T``.
    """

    phases: Dynamics = field(default_factory=train_dynamics)
    free: Mapping[str, Any] = field(default_factory=dict)
    free_from_epoch: int = 1
    eval_T: int | None = None
    early_free: Mapping[str, Any] = field(default_factory=dict)
    free_from_sample: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.phases, Dynamics):
            raise TypeError(f"DynamicsConfig.phases must be a Dynamics, got {self.phases!r}")
        names = {f.name for f in dataclasses.fields(Dynamics)}
        for what in ("free", "early_free"):
            unknown = sorted(set(getattr(self, what)) - names)
            if unknown:
                raise ValueError(
                    f"DynamicsConfig.{what}: unknown Dynamics field(s) {', '.join(unknown)}; "
                    f"choose from {', '.join(sorted(names))}"
                )
            object.__setattr__(self, what, dict(getattr(self, what)))

    def early_free_dynamics(self, T: int | None = None) -> Dynamics:
        """The free phases' Dynamics of the epochs before ``free_from_epoch``
        (``phases`` changed by ``early_free``), ``T`` steps if given."""
        changes = dict(self.early_free)
        if T is not None:
            changes["T"] = T
        return dataclasses.replace(self.phases, **changes) if changes else self.phases

    def free_dynamics(self, T: int | None = None) -> Dynamics:
        """The free phases' Dynamics (``phases`` changed by ``free``), ``T`` steps if given."""
        changes = dict(self.free)
        if T is not None:
            changes["T"] = T
        return dataclasses.replace(self.phases, **changes) if changes else self.phases


@dataclass(frozen=True)
class RuleConfig:
    """The learning rule: a name of :data:`eqprop.rules.RULE_CLASSES` and its parameters.

    Parameters
    ----------
    name : str
        ``"ep"``, ``"chl"``, ``"chl-scaled"``, ``"generec"``, ``"coupled"``, ``"rbp"``,
        ``"bptt"``, ``"vf-ep"`` (:data:`eqprop.rules.RULES`; ``"vf-ep"`` needs
        ``feedback="free"``, and a nonzero ``homeostasis`` of ``"ep"``/``"vf-ep"`` untied
        feedback and the hopfield kind).
    params : mapping
        Keyword arguments of the rule's class (e.g. EP's ``beta`` and ``estimator``,
        GeneRec's ``form``, coupled learning's ``eta`` and ``variant``); those not given
        take the class's defaults, and the record stores all of them (the JSON names every
        setting). A name the class does not take raises ValueError.
    """

    name: str = "ep"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from eqprop.rules import rule_parameters

        takes = rule_parameters(self.name)  # ValueError for an unknown name
        unknown = sorted(set(self.params) - set(takes))
        if unknown:
            listed = ", ".join(takes) if takes else "no parameters"
            raise ValueError(
                f"rule {self.name!r} takes no parameter {', '.join(map(repr, unknown))} "
                f"(it takes {listed})"
            )
        object.__setattr__(self, "params", {**takes, **self.params})

    def make(self) -> Any:
        """The :class:`eqprop.rules.LearningRule` (ValueError: a parameter out of range)."""
        from eqprop.rules import RULE_CLASSES

        return RULE_CLASSES[self.name](**self.params)


@dataclass(frozen=True)
class OptimizerConfig:
    """The arguments of :class:`eqprop.optim.SGD` (see there).

    Parameters
    ----------
    lrs : tuple of float
        One learning rate per weight layer, input side first.
    momentum, weight_decay : float
    """

    lrs: tuple[float, ...] = (0.1, 0.05)
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        lrs = self.lrs
        if isinstance(lrs, (int, float)):
            lrs = (float(lrs),)
        object.__setattr__(self, "lrs", tuple(float(v) for v in lrs))

    def make(self) -> Any:
        """The :class:`eqprop.optim.SGD` (ValueError: a rate, momentum or decay out of range)."""
        from eqprop.optim import SGD

        return SGD(self.lrs, self.momentum, self.weight_decay)


@dataclass(frozen=True)
class DataConfig:
    """The data of a run.

    Parameters
    ----------
    dataset : str
        ``"mnist"``, ``"fashion-mnist"`` or ``"digits"`` (:func:`eqprop.data.load_dataset`).
    data_dir : str or None
        Folder with the dataset files (default ``$EQPROP_DATA_DIR``).
    limit : int or None
        Use only the first ``limit`` samples of each split (quick runs).
    train_on_valid : bool
        Train on the training and the validation split together (all 60,000 MNIST
        training images), as the code of Ernoult et al. (2019) and Laborieux et al.
        (2021) does; the validation split is then empty and ``valid_error`` NaN. Default
        False (Scellier & Bengio's 50,000 / 10,000).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    limit: int | None = None
    train_on_valid: bool = False


@dataclass(frozen=True)
class RunConfig:
    """The trainer's loop.

    Parameters
    ----------
    epochs, batch_size, seed : int
        ``seed`` initialises the weights and the training random generator (shuffling,
        random signs).
    shuffle : bool
        Visit the training set in a new random order every epoch (default); False keeps
        the data order, as the released script of Scellier & Bengio (2017) does.
    persistent : bool
        Start each training free phase from the sample's stored free state (persistent
        particles, Scellier & Bengio 2017) instead of zero.
    eval_persistent : bool
        Start each validation/test free phase from the state that sample reached at the
        previous evaluation (zero at the first), as the released script of Scellier &
        Bengio (2017) does for its validation set; default False (from zero).
    eval_batch_size : int
        Batch size of the free phases that evaluate validation and test error.
    output : str or None
        Folder for ``config.json``, ``history.nc`` and ``checkpoint.npz``; None writes
        nothing.
    threads : int or None
        BLAS threads during the run; None chooses (:func:`eqprop.train.choose_threads`).
    device : {"cpu", "cuda"}
        Where the run computes. ``"cuda"`` (issue #17): EP training of a dense tied
        chain or a conv architecture on an NVIDIA GPU (:mod:`eqprop.gpu.train`; states
        and parameters stay on the device for the run); without a usable device and
        CuPy, or for settings the CUDA trainer cannot run (named), one error before any
        data loads, never a silent CPU run.
    products : {"native", "float16", "bfloat16"}
        Operands of the CUDA trainer's matrix products: ``"native"`` (default: the
        network's dtype) or a 16-bit format, the mixed-precision mode of issue #17: each
        operand rounded to float16 or bfloat16, the product accumulated and the state
        kept in float32 (:func:`eqprop.gpu.backend.round_operand`, what a tensor-core
        GEMM computes). Needs ``device="cuda"`` and ``dtype="float32"``; refused
        otherwise (the CPU trainer computes in the network's dtype).
    preset : str or None
        Name of the preset the run started from (informational).
    """

    epochs: int = 30
    batch_size: int = 20
    seed: int = 0
    shuffle: bool = True
    persistent: bool = True
    eval_persistent: bool = False
    eval_batch_size: int = 1000
    output: str | None = None
    threads: int | None = None
    device: str = "cpu"
    products: str = "native"
    preset: str | None = None


#: Values of ``RunConfig.device``.
DEVICES = ("cpu", "cuda")

#: Values of ``RunConfig.products``: :data:`eqprop.gpu.backend.PRODUCTS` (that module
#: imports NumPy only; CuPy when a backend is made).
PRODUCTS = BACKEND_PRODUCTS

#: The parts of a :class:`TrainConfig`, in order, with their record classes.
PARTS: dict[str, type] = {
    "network": NetworkConfig,
    "dynamics": DynamicsConfig,
    "rule": RuleConfig,
    "optimizer": OptimizerConfig,
    "data": DataConfig,
    "run": RunConfig,
}


# ------------------------------------------------------------------------------------
# flat names


def flat_names() -> dict[str, tuple[str, ...]]:
    """Flat name -> path of the setting in :meth:`TrainConfig.to_dict`: (part, field) or
    (part, field, key); see the module docstring. Generated from the records and
    :data:`eqprop.rules.RULE_OPTIONS` at each call (a rule option registered later is in)."""
    from eqprop.rules import RULE_OPTIONS

    paths: dict[str, tuple[str, ...]] = {}

    def add(name: str, path: tuple[str, ...]) -> None:
        if name in paths:  # pragma: no cover - a record's field shadows another's
            raise RuntimeError(f"flat name {name!r} is both {paths[name]} and {path}")
        paths[name] = path

    for part in ("network", "optimizer", "data", "run"):
        for f in dataclasses.fields(PARTS[part]):
            add(f.name, (part, f.name))
    for f in dataclasses.fields(Dynamics):
        add(f.name, ("dynamics", "phases", f.name))
        add(f"free_{f.name}", ("dynamics", "free", f.name))
        add(f"early_free_{f.name}", ("dynamics", "early_free", f.name))
    add("free_from_epoch", ("dynamics", "free_from_epoch"))
    add("free_from_sample", ("dynamics", "free_from_sample"))
    add("eval_T", ("dynamics", "eval_T"))
    add("rule", ("rule", "name"))
    for name, option in RULE_OPTIONS.items():
        add(name, ("rule", "params", option.param))
    return paths


def _rules_taking(param: str) -> list[str]:
    from eqprop.rules import RULE_CLASSES, rule_parameters

    return [r for r in RULE_CLASSES if param in rule_parameters(r)]


def flat_defaults() -> dict[str, Any]:
    """The default of every flat name: :class:`TrainConfig` ``()``'s value, and for a rule
    option the default rule does not take, the default of the first rule class taking it
    (what ``eqprop train --help`` shows)."""
    from eqprop.rules import RULE_OPTIONS, rule_parameters

    values = TrainConfig().to_flat()
    for name, option in RULE_OPTIONS.items():
        if name not in values:
            owners = _rules_taking(option.param)
            values[name] = rule_parameters(owners[0])[option.param] if owners else None
    return values


# checks of the phase settings, with the messages of the flat names (before Dynamics
# raises its own on construction)
def _check_phase_value(name: str, value: Any, free: bool) -> None:
    from eqprop.phases import METHOD_NAMES

    field_name = name.partition("free_")[2] if free else name
    if field_name in ("T", "K", "max_iter", "record_every"):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} is {value!r}; give an integer >= 1")
    elif field_name == "eps":
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} is {value!r}; give a step size > 0")
    elif field_name == "damping":
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value < 2):
            raise ValueError(f"{name} is {value!r}; give a damping in (0, 2)")
    elif field_name in ("atol", "rtol"):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} is {value!r}; give a finite value >= 0")
    elif field_name == "method":
        if not isinstance(value, str) or value not in METHOD_NAMES:
            setting = f" ({name})" if free else ""
            raise ValueError(
                f"unknown method {value!r}{setting}; choose one of {', '.join(METHOD_NAMES)}"
            )
    elif field_name == "nudge":
        if value not in ("inside", "outside"):
            raise ValueError(f"unknown nudge {value!r}; choose one of inside, outside")


def _dynamics(base: Dynamics, changes: Mapping[str, Any]) -> Dynamics:
    """``base`` with ``changes`` (Dynamics field -> value), checked with flat messages."""
    names = {f.name for f in dataclasses.fields(Dynamics)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown dynamics setting(s): {', '.join(unknown)}")
    for key, value in changes.items():
        _check_phase_value(key, value, free=False)
    return dataclasses.replace(base, **changes)


def _part(record: Any, changes: Any, part: str) -> Any:
    """``record`` (a part) changed by ``changes``: a record of its class (taken as it
    is) or a mapping of its fields (nested mappings for the dynamics' ``phases``)."""
    cls = PARTS[part]
    if isinstance(changes, cls):
        return changes
    if not isinstance(changes, Mapping):
        raise TypeError(
            f"{part}: give a {cls.__name__} or a mapping of its fields, got {changes!r}"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown {part} setting(s): {', '.join(unknown)}")
    kw = dict(changes)
    if part == "dynamics" and "phases" in kw and not isinstance(kw["phases"], Dynamics):
        kw["phases"] = _dynamics(record.phases, kw["phases"])
    if part == "rule" and "name" in kw and kw["name"] != record.name and "params" not in kw:
        kw["params"] = {}  # another rule: its class's defaults
    if part == "rule" and "params" in kw and kw.get("name", record.name) == record.name:
        kw["params"] = {**record.params, **kw["params"]}
    return dataclasses.replace(record, **kw)  # the record's __post_init__ normalises


# ------------------------------------------------------------------------------------
# the composed record


def _default_rule() -> RuleConfig:
    return RuleConfig("ep", {"beta": 1.0, "estimator": "random-sign"})


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, one record per part; ``to_json``/``from_json``
    round-trip exactly.

    Parameters
    ----------
    network : NetworkConfig
    dynamics : DynamicsConfig
    rule : RuleConfig
        Default: EP, ``beta = 1``, random-sign estimator.
    optimizer : OptimizerConfig
    data : DataConfig
    run : RunConfig

    Examples
    --------
    >>> cfg = TrainConfig().replace(epochs=3, T=30, rule="coupled", eta=0.3)
    >>> cfg.run.epochs, cfg.dynamics.phases.T, cfg.rule.params["eta"]
    (3, 30, 0.3)
    >>> TrainConfig.from_json(cfg.to_json()) == cfg
    True
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    rule: RuleConfig = field(default_factory=_default_rule)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        for part, cls in PARTS.items():
            if not isinstance(getattr(self, part), cls):
                raise TypeError(
                    f"TrainConfig.{part} must be a {cls.__name__}, got {getattr(self, part)!r}"
                )

    # ------------------------------------------------------------------ derived
    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer sizes of the network (:attr:`NetworkConfig.sizes`)."""
        return self.network.sizes

    @property
    def uses_graph(self) -> bool:
        """Whether the network is a graph network (:attr:`NetworkConfig.uses_graph`, or a
        rule of :data:`GRAPH_RULES`: holomorphic EP runs its complex phases on the graph
        kernels)."""
        return self.network.uses_graph or self.rule.name in GRAPH_RULES

    def make_network(self) -> Any:
        """The network (:meth:`NetworkConfig.make` with the run's seed; a graph network
        for a rule of :data:`GRAPH_RULES`)."""
        return self.network.make(self.run.seed, graph=self.rule.name in GRAPH_RULES)

    def make_rule(self) -> Any:
        """The :class:`eqprop.rules.LearningRule` (:meth:`RuleConfig.make`)."""
        return self.rule.make()

    def make_optimizer(self) -> Any:
        """The :class:`eqprop.optim.SGD` (:meth:`OptimizerConfig.make`)."""
        return self.optimizer.make()

    # ------------------------------------------------------------------ checks
    def validate(self) -> TrainConfig:
        """Raise ValueError with a message saying what to change; return self if fine."""
        net, dyn, run, rule = self.network, self.dynamics, self.run, self.rule
        sizes = self.sizes
        n_layers = len(sizes) - 1
        lrs = self.optimizer.lrs
        if len(lrs) != n_layers:
            raise ValueError(
                f"{len(lrs)} learning rate(s) given for architecture "
                f"{net.architecture!r}, which has {n_layers} weight layer(s); give "
                f"exactly {n_layers} (--lrs {' '.join(['0.1'] * n_layers)})"
            )
        if "beta" in rule.params:
            beta = rule.params["beta"]
            if not (isinstance(beta, (int, float)) and math.isfinite(beta)):
                raise ValueError(f"beta is {beta!r}; give a finite nonzero number")
            if rule.name == "holomorphic" and beta <= 0:
                raise ValueError(
                    f"beta is {beta!r}; rule 'holomorphic' reads it as the radius |beta| of "
                    "the circle of nudges: give beta > 0, e.g. --beta 0.5"
                )
            if beta == 0:
                raise ValueError(
                    "beta = 0 gives no learning signal (the nudged phase equals the free "
                    "phase); use a nonzero beta, e.g. --beta 1.0"
                )
        if "estimator" in rule.params:
            from eqprop.rules import ESTIMATORS

            if rule.params["estimator"] not in ESTIMATORS:
                raise ValueError(
                    f"unknown estimator {rule.params['estimator']!r}; choose one of "
                    f"{', '.join(ESTIMATORS)}"
                )
        for key in ("T", "K", "max_iter"):
            _check_phase_value(key, getattr(dyn.phases, key), free=False)
        for key, value in dyn.free.items():
            _check_phase_value(f"free_{key}", value, free=True)
        for key, value in dyn.early_free.items():
            _check_phase_value(f"early_free_{key}", value, free=True)
        for name, value in (
            ("batch_size", run.batch_size),
            ("eval_batch_size", run.eval_batch_size),
            ("free_from_epoch", dyn.free_from_epoch),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} is {value!r}; give an integer >= 1")
        fs = dyn.free_from_sample
        if isinstance(fs, bool) or not isinstance(fs, (int, np.integer)) or fs < 0:
            raise ValueError(f"free_from_sample is {fs!r}; give an integer >= 0")
        if fs % run.batch_size:
            raise ValueError(
                f"free_from_sample={fs} is not a multiple of batch_size={run.batch_size}: "
                "the free phase changes between minibatches; give a multiple, e.g. "
                f"{fs - fs % run.batch_size} or {fs - fs % run.batch_size + run.batch_size}"
            )
        if not isinstance(run.epochs, (int, np.integer)) or run.epochs < 0:
            raise ValueError(f"epochs is {run.epochs!r}; give an integer >= 0")
        if run.threads is not None and (
            isinstance(run.threads, bool)
            or not isinstance(run.threads, (int, np.integer))
            or run.threads < 1
        ):
            raise ValueError(f"threads is {run.threads!r}; give an integer >= 1 or None (auto)")
        if run.device not in DEVICES:
            raise ValueError(f"device is {run.device!r}; choose one of {', '.join(DEVICES)}")
        if run.products not in PRODUCTS:
            raise ValueError(f"products is {run.products!r}; choose one of {', '.join(PRODUCTS)}")
        if run.products != "native" and run.device != "cuda":
            raise ValueError(
                f"products={run.products!r} is the CUDA trainer's mixed-precision mode: "
                f"give device='cuda' (the {run.device} trainer computes in the network's "
                "dtype)"
            )
        if run.products != "native" and self.network.dtype != "float32":
            raise ValueError(
                f"products={run.products!r} rounds float32 operands: give dtype='float32', "
                f"not {self.network.dtype!r}"
            )
        if dyn.eval_T is not None and dyn.eval_T < 1:
            raise ValueError(f"eval_T is {dyn.eval_T!r}; give an integer >= 1 or None")
        if self.data.limit is not None and self.data.limit < 1:
            raise ValueError(f"limit is {self.data.limit!r}; give an integer >= 1")
        if not isinstance(dyn.phases.method, str):
            raise ValueError(
                f"method {dyn.phases.method!r}: a TrainConfig names its solver method (it is "
                "written as JSON); choose one of eqprop.phases.METHOD_NAMES"
            )
        dyn.free_dynamics()  # the free phases' Dynamics checks their combination
        dyn.early_free_dynamics()
        self._validate_names()
        if self.uses_graph:
            self._validate_graph_options(sizes)
        if net.dtype not in _DTYPES:
            raise ValueError(f"dtype {net.dtype!r}; choose float32 or float64")
        made = self.make_rule()
        made.check_cost(net.cost)
        made.check_config(self)  # the rule's own limits (eqprop/rules: its check_config)
        self.make_optimizer()  # checks rates, momentum, decay
        if not isinstance(run.seed, (int, np.integer)) or run.seed < 0:
            raise ValueError(f"seed is {run.seed!r}; give an integer >= 0")
        return self

    def _validate_names(self) -> None:
        """The string settings must be names eqprop knows (the message lists them)."""
        from eqprop.data import DATASETS
        from eqprop.network import ACTIVATIONS, COSTS, INITS, KINDS

        net = self.network
        choices: list[tuple[str, Any, Sequence[str]]] = [
            ("kind", net.kind, KINDS),
            ("activation", net.activation, ACTIVATIONS),
            ("cost", net.cost, COSTS),
            ("init", net.init, INITS),
        ]
        dataset = self.data.dataset
        canon = dataset.lower().replace("_", "-") if isinstance(dataset, str) else None
        if canon not in DATASETS:
            choices.append(("dataset", dataset, DATASETS))
        for what, value, known in choices:
            if not isinstance(value, str) or value not in known:
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(known)}")

    def _validate_graph_options(self, sizes: tuple[int, ...]) -> None:
        """The network options must name a feedback mode, an activation, a finite
        feedback scale (``feedback='scaled'`` only) and skips :func:`parse_skip` reads."""
        from eqprop.graph.build import parse_skip
        from eqprop.graph.model import ACTIVATIONS, FEEDBACK_MODES

        net = self.network
        if net.feedback not in FEEDBACK_MODES:
            raise ValueError(
                f"unknown feedback {net.feedback!r}; choose one of {', '.join(FEEDBACK_MODES)}"
            )
        scale = net.feedback_scale
        if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
            raise ValueError(f"feedback_scale is {scale!r}; give a finite number")
        if scale != 1.0 and net.feedback != "scaled":
            raise ValueError(
                f"feedback_scale {scale!r} applies to feedback 'scaled' only (feedback is "
                f"{net.feedback!r}); add --feedback scaled or drop --feedback-scale"
            )
        if net.output_activation is not None and net.output_activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown output activation {net.output_activation!r}; choose one of "
                f"{', '.join(ACTIVATIONS)}"
            )
        if net.is_conv:
            if net.skip:
                raise ValueError(
                    f"skip {net.skip!r}: skip couplings are not available on conv "
                    f"architectures ({net.architecture!r}); drop --skip"
                )
        parse_skip(net.skip, len(sizes))
        try:  # what only the built network can check (e.g. a skip from the input to a readout)
            self.make_network()
        except ValueError as exc:
            raise ValueError(
                f"the network options (output_activation={net.output_activation!r}, "
                f"feedback={net.feedback!r}, skip={net.skip!r}) do not fit the "
                f"{net.architecture!r} {net.kind} network with cost {net.cost!r}: {exc}"
            ) from None

    # ------------------------------------------------------------------ changes
    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed.

        Each keyword is a part (``network=``, ``dynamics=``, ...: a record of its class,
        or a mapping of the fields to change) or a flat name (:func:`flat_names`:
        ``epochs=3``, ``T=30``, ``free_method="picard"``, ``beta=0.5``, ``lrs=(0.1,
        0.05)``...). A flat ``None`` for ``free_<field>`` (``early_free_<field>``) drops
        that change of the free phases. Changing ``rule`` to another name resets its
        parameters to the class's defaults (then the given ones apply); a rule option the
        rule does not take raises ValueError naming the rules that take it.
        """
        return self._apply(changes, strict=True)

    @classmethod
    def from_flat(cls, settings: Mapping[str, Any] | None = None, **kw: Any) -> TrainConfig:
        """``TrainConfig().replace(**settings, **kw)``: a configuration from flat names."""
        return cls().replace(**{**(settings or {}), **kw})

    def _apply(self, changes: Mapping[str, Any], strict: bool) -> TrainConfig:
        """Parts first, then the flat names grouped by part (rule name before its
        parameters). ``strict=False``: rule options the rule does not take are dropped
        (the flat format stored every rule's options whatever the rule)."""
        names = flat_names()
        unknown = sorted(k for k in changes if k not in PARTS and k not in names)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        parts = {p: getattr(self, p) for p in PARTS}
        for part in PARTS:
            if part in changes and not (part == "rule" and isinstance(changes[part], str)):
                parts[part] = _part(parts[part], changes[part], part)
        nested: dict[str, dict[str, Any]] = {p: {} for p in PARTS}
        phases: dict[str, Any] = {}
        free = dict(parts["dynamics"].free)
        early_free = dict(parts["dynamics"].early_free)
        free_changed = False
        for name, value in changes.items():
            if name in PARTS and not (name == "rule" and isinstance(value, str)):
                continue
            path = names[name]
            if path[:2] == ("dynamics", "phases"):
                phases[path[2]] = value
            elif path[:2] in (("dynamics", "free"), ("dynamics", "early_free")):
                free_changed = True
                which = free if path[1] == "free" else early_free
                if value is None:
                    which.pop(path[2], None)
                else:
                    _check_phase_value(name, value, free=True)
                    which[path[2]] = value
            elif path[:2] == ("rule", "params"):
                nested["rule"].setdefault("params", {})[path[2]] = (name, value)
            else:
                nested[path[0]][path[1]] = value
        if phases or free_changed:
            nested["dynamics"]["phases"] = _dynamics(parts["dynamics"].phases, phases)
            nested["dynamics"]["free"] = free
            nested["dynamics"]["early_free"] = early_free
        rule_changes = nested.pop("rule")
        for part, kw in nested.items():
            if kw:
                parts[part] = _part(parts[part], kw, part)
        if rule_changes:
            rule = parts["rule"]
            if "name" in rule_changes:
                rule = _part(rule, {"name": rule_changes["name"]}, "rule")
            given = rule_changes.get("params", {})
            params = {}
            for param, (name, value) in given.items():
                if param in rule.params:
                    params[param] = value
                elif strict:
                    owners = _rules_taking(param)
                    raise ValueError(
                        f"{name} applies to rule {', '.join(owners)}, not to rule "
                        f"{rule.name!r}; drop {name} or choose rule={owners[0]!r}"
                    )
            parts["rule"] = _part(rule, {"params": params}, "rule") if params else rule
        return TrainConfig(**parts)

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict, JSON-serialisable: ``format`` and one mapping per part."""
        d: dict[str, Any] = {"format": CONFIG_FORMAT}
        for part in PARTS:
            d[part] = dataclasses.asdict(getattr(self, part))
        d["optimizer"]["lrs"] = list(self.optimizer.lrs)
        d["rule"]["params"] = dict(self.rule.params)
        d["dynamics"]["free"] = dict(self.dynamics.free)
        d["dynamics"]["early_free"] = dict(self.dynamics.early_free)
        return d

    def to_json(self) -> str:
        """JSON text with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_flat(self) -> dict[str, Any]:
        """Flat name -> value of every setting (``free_<field>``,
        ``early_free_<field>``: None where those free phases keep ``phases``; rule
        options: only those the rule takes)."""
        d = self.to_dict()
        out: dict[str, Any] = {}
        for name, path in flat_names().items():
            node: Any = d
            for key in path:
                if not isinstance(node, Mapping) or key not in node:
                    node = _MISSING
                    break
                node = node[key]
            if node is _MISSING:
                if path[:2] == ("rule", "params"):
                    continue
                node = None
            out[name] = tuple(node) if name == "lrs" else node
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; parts or fields left out take the defaults.

        Also reads a mapping of flat names, the ``config.json`` / checkpoint format of
        eqprop before the parts (no ``format`` key): each flat name goes to its part, and
        the rule options the stored rule does not take are dropped (that format stored
        them all; the trainer never read them). Unknown keys raise ValueError naming them.
        """
        d = dict(d)
        fmt = d.pop("format", None)
        if fmt is not None and fmt != CONFIG_FORMAT:
            raise ValueError(
                f"training configuration of format {fmt!r}; this eqprop reads {CONFIG_FORMAT!r} "
                "and the flat format before it"
            )
        flat = fmt is None and not any(k in PARTS and not isinstance(v, str) for k, v in d.items())
        return cls()._apply(d, strict=not flat)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of :meth:`to_json` (also reads the ``config`` attribute of a history,
        and the flat JSON of earlier versions)."""
        return cls.from_dict(json.loads(text))


_MISSING = object()
