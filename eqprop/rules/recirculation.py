"""Recirculation's entry in the rule registry (``eqprop train --rule recirculation``).

The rule itself, its loop (as layers and couplings: :func:`eqprop.recirculation.loop_network`)
and its training on a dataset live in :mod:`eqprop.recirculation` (Hinton & McClelland
1988); this module gives :meth:`RecirculationRule.gradient` (the update of a loop network
by parameter name) and the trainer's configuration a class
whose keyword arguments are the rule's parameters (:class:`RecirculationRule`), and the
checks of the combinations that make no sense for an unsupervised loop.
"""

from __future__ import annotations

from typing import Any

from eqprop.rules.base import LearningRule

__all__ = ["RecirculationRule"]


class RecirculationRule(LearningRule):
    """Recirculation (Hinton & McClelland 1988) as a trainer rule: an unsupervised
    autoencoder loop on the images, trained by :class:`eqprop.recirculation.LoopTrainer`
    (not by phases of a network: :meth:`estimate` refuses).

    Parameters
    ----------
    regression : float
        :math:`\\lambda \\in [0, 1)` of the visible group's second pass (the paper's 0.75).
    hidden_regression : float or None
        The hidden groups' regression; None: ``regression``.
    visible_activation, hidden_activation : {"sigmoid", "linear"}
        The groups' activations (logistic in the paper).

    The values are checked by :class:`eqprop.recirculation.RecirculationSettings`
    (:attr:`settings`, learning rate 1: the trainer scales the update per coupling by
    ``lrs``).
    """

    name = "recirculation"
    #: Trained without labels (reconstruction error, no classification error).
    unsupervised = True

    def __init__(
        self,
        regression: float = 0.75,
        hidden_regression: float | None = None,
        visible_activation: str = "sigmoid",
        hidden_activation: str = "sigmoid",
    ):
        from eqprop.recirculation import RecirculationSettings

        self.settings = RecirculationSettings(
            learning_rate=1.0,
            regression=regression,
            hidden_regression=hidden_regression,
            visible_activation=visible_activation,
            hidden_activation=hidden_activation,
        )

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"RecirculationRule(regression={s.regression}, hidden_regression="
            f"{s.hidden_regression}, visible_activation={s.visible_activation!r}, "
            f"hidden_activation={s.hidden_activation!r})"
        )

    def check_cost(self, cost: str) -> None:
        if cost != "squared":
            raise ValueError(
                f"rule 'recirculation' is unsupervised (no labels, no readout): cost {cost!r} "
                "does not apply; its error is the squared reconstruction error (drop --cost)"
            )

    def check_config(self, config: Any) -> None:
        """The architecture must be a loop ``n-k-...-n``; no network options, momentum or
        weight decay (the paper's plain update)."""
        sizes = config.sizes
        if len(sizes) < 3 or sizes[-1] != sizes[0]:
            raise ValueError(
                "rule 'recirculation' trains an autoencoder loop visible -> hidden -> visible "
                "on the images: the architecture must start and end with the image size, e.g. "
                f"'64-16-64' (digits) or '784-64-784' (MNIST); "
                f"{config.network.architecture!r} is not a loop"
            )
        if config.uses_graph:
            raise ValueError(
                "rule 'recirculation' runs on its own loop of groups (the chain v -> hidden "
                "-> r of dense couplings, feedback unused), not a layered network: drop "
                "--output-activation, --feedback, --feedback-scale and --skip"
            )
        if config.optimizer.momentum != 0.0 or config.optimizer.weight_decay != 0.0:
            raise ValueError(
                "rule 'recirculation' applies the paper's plain update; momentum and "
                "weight_decay must be 0"
            )

    def gradient(self, net, v):
        """The rule's update of a loop network (:func:`eqprop.recirculation.loop_network`)
        on a visible batch ``v``: a :class:`~eqprop.graph.gradient.GraphGradient` by
        parameter name (:func:`eqprop.recirculation.recirculation_gradient` of
        :func:`eqprop.recirculation.graph_recirculate`), for :class:`eqprop.optim.SGD` and
        the rule studies. ValueError if ``net`` is not a loop."""
        from eqprop.recirculation import graph_recirculate, recirculation_gradient

        return recirculation_gradient(net, graph_recirculate(net, v, self.settings))

    def plan(self, rng):
        raise ValueError(self._not_phases())

    def combine(self, net, cx, d, phases):
        raise ValueError(self._not_phases())

    def estimate(self, net, x, d, dyn, rng=None, s0=None, free_dyn=None):
        raise ValueError(self._not_phases())

    @staticmethod
    def _not_phases() -> str:
        return (
            "rule 'recirculation' trains an unsupervised loop, not a network of phases: use "
            "eqprop.recirculation.LoopTrainer (eqprop train --rule recirculation does), or "
            "RecirculationRule.gradient(loop_network(...), v) for one update"
        )
