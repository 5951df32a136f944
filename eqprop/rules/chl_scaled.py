"""Contrastive Hebbian learning with gamma-scaled feedback (Xie & Seung 2003)."""

from __future__ import annotations

from eqprop.graph.gradient import GraphGradient
from eqprop.graph.model import GraphNetwork
from eqprop.rules.chl import ContrastiveHebbian

__all__ = ["ScaledFeedbackCHL", "feedback_depths"]


def feedback_depths(net: GraphNetwork) -> tuple[dict[str, int], float]:
    """Depth of every state layer below the output (output 0, the layer feeding it 1, ...)
    and the feedback gain :math:`\\gamma` of a scaled-feedback chain.

    Raises
    ------
    ValueError
        ``net`` is not a :class:`~eqprop.graph.GraphNetwork`, a coupling between state
        layers is not ``feedback="scaled"`` or has another ``gamma``, or the network is
        not a chain (a coupling that skips a layer).
    """
    if not isinstance(net, GraphNetwork):
        raise ValueError(
            "rule 'chl-scaled' needs a GraphNetwork with gamma-scaled feedback, e.g. "
            f"eqprop.graph.chain(sizes, feedback='scaled', gamma=0.01); got {type(net).__name__}"
        )
    out = net.output_layer
    if out.role != "output":
        raise ValueError(
            f"rule 'chl-scaled' clamps the output layer, which a readout layer {out.name!r} "
            "keeps outside the state; use cost='squared'"
        )
    state = {layer.name for layer in net.layers if layer.role != "input"}
    gammas = set()
    for c in net.couplings:
        if c.source in state:
            if c.feedback != "scaled":
                raise ValueError(
                    f"rule 'chl-scaled': coupling {c.name!r} has feedback={c.feedback!r}; every "
                    "coupling between state layers needs feedback='scaled'"
                )
            gammas.add(float(c.gamma))
    if len(gammas) != 1:
        raise ValueError(
            f"rule 'chl-scaled' needs one feedback gain gamma on every coupling between state "
            f"layers, got {sorted(gammas) or 'none (no hidden layer)'}"
        )
    depth = {out.name: 0}
    frontier = [out.name]
    while frontier:
        below = []
        for name in frontier:
            for c in net.couplings:
                if c.target == name and c.source in state and c.source not in depth:
                    depth[c.source] = depth[name] + 1
                    below.append(c.source)
        frontier = below
    for c in net.couplings:
        if c.source in state and depth.get(c.source) != depth.get(c.target, -9) + 1:
            raise ValueError(f"rule 'chl-scaled' needs a chain: coupling {c.name!r} skips a layer")
    return depth, gammas.pop()


class ScaledFeedbackCHL(ContrastiveHebbian):
    r"""Contrastive Hebbian learning in a layered network with feedback :math:`\gamma
    W^\top` (Xie & Seung 2003, Neural Computation 15:441), rescaled layer by layer.

    The network (a :class:`~eqprop.graph.GraphNetwork` chain built with
    ``feedback="scaled", gamma=...``) runs the free phase and the output-clamped phase of
    :class:`ContrastiveHebbian`; the Hebbian contrast :math:`\widehat\nabla_{W_l} =
    -\langle a_{l-1}^c a_l^{c\top} - a_{l-1}^0 a_l^{0\top}\rangle` (and the biases') of a
    layer at depth :math:`k` below the output (the output layer 0) is multiplied by
    :math:`\gamma^{-k}`. Why: clamping moves the output by :math:`d - y^0`, and each layer
    down receives that displacement through one more feedback factor :math:`\gamma`, so the
    contrast of a layer at depth :math:`k` is :math:`\gamma^k` times the backpropagated
    error term, up to corrections :math:`O(\gamma)` relative (the feedback also shifts the
    free state). As :math:`\gamma \to 0` the rescaled update tends to the backprop gradient
    of the feedforward network (exactly at the output layer when it is linear: the delta
    rule). This is the rescaling of the paper as eqprop derives it; the paper's own text
    was not available here.

    Tested (``tests/test_rules_chl_scaled.py``): prototypical kind, sigmoid hidden layers,
    linear output, phases to tolerance: the relative error to the exact gradient of the
    same network (:func:`eqprop.graph.backprop.recurrent_backprop`) decreases
    monotonically over :math:`\gamma \in [10^{-3}, 10^{-2}]` and is below :math:`10^{-2}`
    at :math:`10^{-3}`.

    Parameters
    ----------
    steps : {"K", "T"}
        Step budget of the clamped phase in fixed-steps mode.

    Raises
    ------
    ValueError
        From :func:`feedback_depths`, when the network is not a scaled-feedback chain
        (checked at each :meth:`estimate`, before any phase runs).
    """

    name = "chl-scaled"

    def check_config(self, config) -> None:
        """The network must have gamma-scaled feedback (its gamma is the rule's)."""
        if config.network.feedback != "scaled":
            raise ValueError(
                "rule 'chl-scaled' runs on gamma-scaled feedback; give feedback='scaled' "
                "and feedback_scale=GAMMA (--feedback scaled --feedback-scale GAMMA)"
            )

    def __repr__(self) -> str:
        return f"ScaledFeedbackCHL(steps={self.spec.steps!r})"

    def estimate(self, net, x, d, dyn, rng=None, s0=None, free_dyn=None):
        feedback_depths(net)  # one clear error before the phases
        return super().estimate(net, x, d, dyn, rng=rng, s0=s0, free_dyn=free_dyn)

    def combine(self, net, cx, d, phases):
        depth, gamma = feedback_depths(net)
        grad = super().combine(net, cx, d, phases)
        scale = {f"{c.name}.W": gamma ** -depth[c.target] for c in net.couplings}
        scale.update({f"{name}.b": gamma**-k for name, k in depth.items()})
        return GraphGradient(
            {name: g * g.dtype.type(scale.get(name, 1.0)) for name, g in grad.items()}
        )
