"""Named training configurations (``eqprop train --preset NAME``), with their sources.

A preset is a :class:`~eqprop.config.TrainConfig` built from the parts' records (the
settings it does not name keep their defaults); options given explicitly on the command
line (or ``preset.config.replace(...)`` from Python) replace the preset's values.

Sources
-------
Where a paper's table and the authors' released code differ, the published numbers came
from the code: each preset follows the code, and its ``notes`` give the paper's value.

``scellier2017-*``
    B. Scellier and Y. Bengio, "Equilibrium Propagation: Bridging the Gap between
    Energy-Based Models and Backpropagation", *Front. Comput. Neurosci.* 11:24 (2017),
    doi:10.3389/fncom.2017.00024, and the authors' released script
    (github.com/bscellier/Towards-a-Biologically-Plausible-Backprop, ``train_model.py``
    and ``model.py``, commit 36ad1f6): dictionaries ``net1`` / ``net2`` / ``net3`` give
    ``n_it_neg`` (free steps ``T``), ``n_it_pos`` (nudged steps ``K``), ``epsilon``,
    ``beta``, ``alphas``, minibatch 20 and the epochs (25 / 60 / 500). The script's cost
    has no 1/2, ``C = ((y - d)**2).sum(1)``, so its nudged dynamics at ``beta`` are
    eqprop's at ``2 beta``, and its update ``W -= alpha * d[(E(s^beta) - E(s^0)) / beta]/dW``
    is eqprop's at ``2 beta`` with rate ``2 alpha``: the presets hold eqprop's values
    (beta and rates doubled). The script draws the sign of beta at random for every
    minibatch (``estimator="random-sign"``), starts every free phase from the sample's
    persistent particle (zeros at first) and also relaxes the validation samples from
    theirs (``eval_persistent=True``), visits the 50,000 training images in their order
    (``shuffle=False``; validation: the next 10,000), initialises the weights
    Glorot-uniform with zero biases (``init="glorot"``) and uses ``rho = clip(s, 0, 1)``
    (``"hardsigmoid"``) in float32.
``ernoult2019-p1h``
    M. Ernoult, J. Grollier, D. Querlioz, Y. Bengio and B. Scellier, "Updates of
    Equilibrium Prop Match Gradients of Backprop Through Time in an RNN with Static
    Input", NeurIPS 2019, Table 1, row "P-1h" (prototypical, discrete-time setting), and
    the command the authors' README gives for it
    (github.com/ernoult/updatesEPgradientsBPTT, commit 5606eab): ``main.py --action
    'train' --discrete --size_tab 10 512 784 --lr_tab 0.04 0.08 --epochs 30 --T 40
    --Kmax 15 --beta 0.1``, with ``main.py``'s defaults for the rest: minibatch 20,
    activation ``'sigm'`` = ``1 / (1 + exp(-4 (x - 1/2)))`` (``"shifted-sigmoid"``), all
    60,000 training images shuffled each epoch (``train_on_valid=True``), PyTorch's
    ``nn.Linear`` initialisation (``init="fan-in"``). ``--lr_tab`` lists the layers output
    first (0.04 for hidden-output, 0.08 for input-hidden). In ``netClasses.py``
    (``EPdisc``) the nudge is added outside the activation, ``y <- sigma(W h + b) +
    beta (d - y)`` (``nudge="outside"``), with a fixed positive beta
    (``estimator="one-sided"``), every phase starts from zero (``persistent=False``) and
    the update is ``W += lr (s^beta s^beta - s^0 s^0) / (beta B)``, eqprop's convention
    (no factor to convert).
``ernoult2019-pconv``
    The same paper, Table 1, row "P-conv" (about 1 % test error: the abstract's "~1%
    test error on MNIST"), and the
    README's command for it: ``main.py --action 'train' --activation-function
    'hardsigm' --C_tab 64 32 1 --size_tab 10 --lr_tab 0.015 0.035 0.15 --epochs 40 --T
    200 --Kmax 10 --beta 0.4 --benchmark``, with ``main.py``'s defaults ``--Fconv 5``,
    ``--Fpool 2``, ``--padding 0``, minibatch 20: the conv architecture
    ``1x28x28-c32k5-p2-c64k5-p2-10`` (``--C_tab`` lists the channels output first), the
    rates input first 0.15 / 0.035 / 0.015, hard sigmoid ``clamp(x, 0, 1)``, 60,000
    training images shuffled. As for P-1h: the prototypical map with the nudge outside
    the activation, one-sided EP, phases from zero. Weights uniform in PyTorch's default
    bound (:func:`eqprop.graph.build.conv_network`).
``--fast`` (``scellier2017-2h`` and ``-3h``)
    Not from the papers: the preset's :attr:`Preset.fast` settings replace the free
    phase from the second epoch on by block Gauss-Seidel over the layers of each parity
    (exact block minimisation, over-relaxed) to ``atol = 1e-3``, from
    the persistent particles, and evaluates in batches of 100 (same results, less work);
    the first epoch and every nudged phase follow the paper. Measured in docs/solvers.rst
    and docs/reproductions/scellier2017.rst (free-phase iterations, test error and wall
    time against the fixed ``T`` steps).
``digits``
    Not from a paper: a small Hopfield network for the 8x8 digits set shipped with
    scikit-learn (64-64-10), chosen so that training takes well under a minute on two
    cores and reaches a low test error. It is the README's first command.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from eqprop.config import (
    DataConfig,
    DynamicsConfig,
    NetworkConfig,
    OptimizerConfig,
    RuleConfig,
    RunConfig,
    TrainConfig,
    train_dynamics,
)

__all__ = ["PRESETS", "PRESET_NOTES", "Preset", "fast_settings", "get_preset", "preset_names"]


@dataclass(frozen=True)
class Preset:
    """A named training configuration.

    Parameters
    ----------
    name : str
    config : TrainConfig
        The configuration (its ``run.preset`` is None; ``eqprop train --preset NAME``
        sets it). Settings given explicitly on the command line replace its values.
    citation : str
        Where the values come from (empty for presets of our own).
    description : str
        One line for ``eqprop train --help``.
    notes : tuple of str
        Where the preset departs from the paper's text (the paper's value) or had to choose.
    fast : dict or None
        What ``eqprop train --preset NAME --fast`` changes: keyword arguments of
        :meth:`TrainConfig.replace <eqprop.config.TrainConfig.replace>` (a ``dynamics``
        part with a faster free phase, an evaluation batch size; None: the preset has no
        fast setting). See :func:`fast_settings`.
    """

    name: str
    config: TrainConfig
    citation: str = ""
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    fast: dict[str, Any] | None = None


_SCELLIER = (
    "Scellier & Bengio (2017), Front. Comput. Neurosci. 11:24, doi:10.3389/fncom.2017.00024; "
    "released script github.com/bscellier/Towards-a-Biologically-Plausible-Backprop "
    "train_model.py (commit 36ad1f6)"
)
_ERNOULT = (
    "Ernoult, Grollier, Querlioz, Bengio & Scellier (2019), NeurIPS, "
    "'Updates of Equilibrium Prop Match Gradients of Backprop Through Time...', Table 1 P-1h; "
    "README command of github.com/ernoult/updatesEPgradientsBPTT (commit 5606eab)"
)

_SCELLIER_NOTES: dict[str, tuple[str, ...]] = {
    "scellier2017-1h": (
        "Script net1: n_it_neg 20, n_it_pos 4, epsilon 0.5, beta 0.5, alphas 0.1 / 0.05, "
        "which is eqprop's beta = 1 and rates 0.2 / 0.1 (cost without the 1/2).",
        "The paper's table: beta = 1 and rates 0.1 / 0.05 (the rates of the script, without "
        "the doubling its cost convention needs).",
    ),
    "scellier2017-2h": (
        "Script net2: n_it_neg 150, n_it_pos 6, epsilon 0.5, beta 1, alphas 0.4 / 0.1 / "
        "0.01, which is eqprop's T = 150, beta = 2 and rates 0.8 / 0.2 / 0.02.",
        "The paper's table: T = 100, beta = 1 and rates 0.4 / 0.1 / 0.01.",
        "Not yet trained here with these settings; the paper's rates (0.4 / 0.1 / 0.01 at "
        "beta = 1, T = 100) stalled, --lrs 0.2 0.05 0.005 learnt for some seeds (see "
        "docs/training.rst).",
    ),
    "scellier2017-3h": (
        "Script net3: n_it_neg 500, n_it_pos 8, epsilon 0.5, beta 1, alphas 0.128 / 0.032 "
        "/ 0.008 / 0.002, which is eqprop's beta = 2 and rates 0.256 / 0.064 / 0.016 / "
        "0.004.",
        "The paper's table: beta = 1 and rates 0.128 / 0.032 / 0.008 / 0.002.",
    ),
}

_ERNOULT_NOTES: tuple[str, ...] = (
    "Damping (their dt): the README command passes no --dt. At commit ec9c1b1 main.py "
    "builds EPdisc without dt, whose default is dt = 1 (the paper's map, damping 1, the "
    "preset); from commit cf35e63 on it passes the parsed arguments, whose --dt default "
    "0.2 then applies to the discrete dynamics too (--damping 0.2, which trained worse "
    "here).",
    "Activation: main.py's default 'sigm' is sigma(x) = 1/(1+exp(-4(x-1/2))) "
    "('shifted-sigmoid', the preset). The earlier preset used 'hardsigmoid' = clip(x, 0, "
    "1), with the same centre and slope, which trained better here (docs/training.rst, "
    "--activation hardsigmoid).",
    "Data: torchvision's 60,000 training images, shuffled each epoch (--train-on-valid), "
    "test on the 10,000 test images. eps is unused by the prototypical (discrete-time) "
    "dynamics.",
)


def _fast_free_phase(dynamics: DynamicsConfig, atol: float) -> dict[str, Any]:
    """The settings ``--fast`` changes in a deep ``scellier2017-*`` preset whose paper path
    (``dynamics``) has ``T`` steps: keyword arguments of :meth:`TrainConfig.replace`, the
    new ``dynamics`` part and the evaluation batch size.

    Block coordinate descent over the layers of each parity, over-relaxed:
    ``Dynamics(method="gauss-seidel-parity", eps=1, damping=1.5)``. With the hard sigmoid
    the ``eps = 1`` map sets a layer to the exact minimiser of the energy given its
    neighbours, ``clip(d_l, 0, 1)``; layers of one parity do not interact, so the two
    block updates of a sweep are exact block minimisations (Scellier, Ernoult, Kendall and
    Kumar 2023, arXiv:2312.15103, "asynchronous updates"), and damping 1.5 over-relaxes
    them. The phase stops at the max-norm residual ``atol`` of its own map (2h: 1e-3,
    about the residual the paper's ``T`` steps reach on that map, trained against 1e-4
    and the fixed path in docs/solvers.rst, "Training the --fast free phase at atol =
    1e-3": on 3-epoch runs of 10,000 images no worse than 1e-4 on both seeds, weak
    evidence since those seeds differ by 3-18 points; 25 % fewer sweeps; 3h: 1e-3 too,
    section "3h at atol = 1e-3": it meets the residual of the paper's 500 steps from zero
    and from the particles with 28-30 % fewer sweeps per minibatch, and two epochs on
    3,000 images trained no worse than 1e-4, one seed), which bounds the residual of the
    paper's ``eps = 0.5`` map from above (a fixed point of the ``eps = 1`` map is one of
    every ``eps``-map, and the projected displacement ``|clip(s - e g) - s|`` does not
    shrink as ``e`` grows); ``max_iter = T`` caps it at the paper's
    step count. It starts in the second epoch (``free_from_epoch = 2``), from the
    persistent particles: the first epoch relaxes from zero with the paper's ``T``
    steps, where the block updates would settle in other equilibria than the paper's
    path (from zero at the initial weights ``T`` steps are far from any equilibrium) and
    the fast phase from epoch 1 trained worse (docs/reproductions/scellier2017.rst).
    ``benchmarks/bench_deep_phases.py`` measured it (docs/solvers.rst). The nudged
    phases keep the paper's ``K`` steps at ``eps = 0.5``. Evaluation runs in batches of
    100 instead of 1000: a batch solved to a tolerance costs its size times its slowest
    sample's sweeps, and the results do not depend on the batch (1.5x less CPU time for
    a resumed 2h epoch with evaluation, docs/solvers.rst, "Evaluation batches").
    """
    return {
        "dynamics": DynamicsConfig(
            dataclasses.replace(dynamics.phases, atol=atol, max_iter=dynamics.phases.T),
            free={"method": "gauss-seidel-parity", "eps": 1.0, "damping": 1.5},
            free_from_epoch=2,
        ),
        "eval_batch_size": 100,
    }


def _scellier(
    architecture: str, T: int, K: int, beta: float, lrs: tuple[float, ...], epochs: int
) -> TrainConfig:
    """The released script's settings (module docstring), eqprop's conventions."""
    return TrainConfig(
        network=NetworkConfig(
            architecture,
            kind="hopfield",
            activation="hardsigmoid",
            cost="squared",
            init="glorot",
            dtype="float32",
        ),
        dynamics=DynamicsConfig(train_dynamics(T=T, K=K, eps=0.5, method="fused")),
        rule=RuleConfig("ep", {"beta": beta, "estimator": "random-sign"}),
        optimizer=OptimizerConfig(lrs),
        data=DataConfig("mnist"),
        run=RunConfig(
            epochs=epochs, batch_size=20, persistent=True, shuffle=False, eval_persistent=True
        ),
    )


_SCELLIER_2H = _scellier("784-500-500-10", 150, 6, 2.0, (0.8, 0.2, 0.02), 60)
_SCELLIER_3H = _scellier("784-500-500-500-10", 500, 8, 2.0, (0.256, 0.064, 0.016, 0.004), 500)

PRESETS: dict[str, Preset] = {
    "digits": Preset(
        "digits",
        TrainConfig(
            network=NetworkConfig(
                "64-64-10", kind="hopfield", activation="hardsigmoid", cost="squared"
            ),
            dynamics=DynamicsConfig(train_dynamics(T=20, K=4, eps=0.5, method="fused")),
            rule=RuleConfig("ep", {"beta": 1.0, "estimator": "random-sign"}),
            optimizer=OptimizerConfig((0.1, 0.05)),
            data=DataConfig("digits"),
            run=RunConfig(epochs=30, batch_size=20, persistent=True),
        ),
        "",
        "8x8 digits (scikit-learn), hopfield 64-64-10; trains in seconds",
    ),
    "scellier2017-1h": Preset(
        "scellier2017-1h",
        _scellier("784-500-10", 20, 4, 1.0, (0.2, 0.1), 25),
        _SCELLIER,
        "MNIST hopfield 784-500-10, T=20 K=4 eps=0.5 beta=1 random sign, rates 0.2 0.1 "
        "(Scellier 2017's released script net1)",
        _SCELLIER_NOTES["scellier2017-1h"],
    ),
    "scellier2017-2h": Preset(
        "scellier2017-2h",
        _SCELLIER_2H,
        _SCELLIER,
        "MNIST hopfield 784-500-500-10, T=150 K=6 beta=2, rates 0.8 0.2 0.02 (Scellier "
        "2017's released script net2; --fast: block Gauss-Seidel free phase to atol)",
        _SCELLIER_NOTES["scellier2017-2h"],
        _fast_free_phase(_SCELLIER_2H.dynamics, atol=1e-3),
    ),
    "scellier2017-3h": Preset(
        "scellier2017-3h",
        _SCELLIER_3H,
        _SCELLIER,
        "MNIST hopfield 784-500-500-500-10, T=500 K=8 beta=2 (Scellier 2017's released "
        "script net3; --fast: block Gauss-Seidel free phase to atol)",
        _SCELLIER_NOTES["scellier2017-3h"],
        _fast_free_phase(_SCELLIER_3H.dynamics, atol=1e-3),
    ),
    "ernoult2019-p1h": Preset(
        "ernoult2019-p1h",
        TrainConfig(
            network=NetworkConfig(
                "784-512-10",
                kind="prototypical",
                activation="shifted-sigmoid",
                cost="squared",
                init="fan-in",
            ),
            dynamics=DynamicsConfig(
                train_dynamics(T=40, K=15, eps=0.5, damping=1.0, method="fused", nudge="outside")
            ),
            rule=RuleConfig("ep", {"beta": 0.1, "estimator": "one-sided"}),
            optimizer=OptimizerConfig((0.08, 0.04)),
            data=DataConfig("mnist", train_on_valid=True),
            run=RunConfig(epochs=30, batch_size=20, persistent=False, shuffle=True),
        ),
        _ERNOULT,
        "MNIST prototypical 784-512-10, T=40 K=15 beta=0.1 one-sided, shifted sigmoid "
        "(Ernoult 2019's README command for P-1h)",
        _ERNOULT_NOTES,
    ),
}

PRESETS["ernoult2019-pconv"] = Preset(
    "ernoult2019-pconv",
    TrainConfig(
        network=NetworkConfig(
            "1x28x28-c32k5-p2-c64k5-p2-10",
            kind="prototypical",
            activation="hardsigmoid",
            cost="squared",
        ),
        dynamics=DynamicsConfig(
            train_dynamics(T=200, K=10, eps=0.5, damping=1.0, method="fixed", nudge="outside")
        ),
        rule=RuleConfig("ep", {"beta": 0.4, "estimator": "one-sided"}),
        optimizer=OptimizerConfig((0.15, 0.035, 0.015)),
        data=DataConfig("mnist", train_on_valid=True),
        run=RunConfig(epochs=40, batch_size=20, eval_batch_size=20, persistent=False, shuffle=True),
    ),
    "Ernoult, Grollier, Querlioz, Bengio & Scellier (2019), NeurIPS, Table 1 P-conv; "
    "README command of github.com/ernoult/updatesEPgradientsBPTT (commit 5606eab)",
    "MNIST P-conv 1x28x28-c32k5-p2-c64k5-p2-10, T=200 K=10 beta=0.4 one-sided, hard "
    "sigmoid (Ernoult 2019's README command for P-conv)",
    (
        "The paper's text gives the architecture and T, K, beta; the rates, kernel and "
        "pooling sizes come from the README command and main.py's defaults.",
        "The nudge outside the activation and the phases from zero follow the code's "
        "fully connected prototypical class (EPdisc); its conv class was not checked.",
        "The code runs float32 on a GPU; eqprop's default float32 on the CPU.",
        "Evaluation in batches of 20 (the code: 1000): the free phase of a sample does "
        "not depend on its batch, and on the CPU a batch of 500 took about twice as long "
        "per image as one of 20 (the conv buffers outgrow the caches).",
    ),
)

#: Free-text remarks on choices made where a source is ambiguous, shown in the docs
#: (each preset's ``notes``, joined).
PRESET_NOTES: dict[str, str] = {name: " ".join(p.notes) for name, p in PRESETS.items() if p.notes}


def preset_names() -> tuple[str, ...]:
    """Names of the presets, sorted."""
    return tuple(sorted(PRESETS))


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}"
        ) from None


def fast_settings(name: str) -> dict[str, Any]:
    """What ``--fast`` changes in preset ``name`` (its :attr:`Preset.fast`): keyword
    arguments of :meth:`TrainConfig.replace <eqprop.config.TrainConfig.replace>`.

    Raises
    ------
    ValueError
        Unknown preset, or a preset without a fast setting (the message lists those with
        one).
    """
    preset = get_preset(name)
    if preset.fast is None:
        having = ", ".join(n for n in preset_names() if PRESETS[n].fast)
        raise ValueError(
            f"preset {name!r} has no fast setting; --fast applies to the presets {having}"
        )
    return preset.fast
