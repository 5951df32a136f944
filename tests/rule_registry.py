"""The "``--X`` applies to ``--rule ...``" messages, derived from ``eqprop.rules``' registry.

Tests of the refusal of a rule option given for a rule that does not take it build the
expected text here, so that a rule added to :data:`eqprop.rules.RULE_CLASSES` (or a rule
option added to :data:`eqprop.rules.RULE_OPTIONS`) edits no test. The owners of a
parameter are read from each rule class's own ``__init__`` signature, not through
:func:`eqprop.rules.rule_parameters`, which the code under test uses.
"""

from __future__ import annotations

import inspect

from eqprop.rules import RULE_CLASSES, RULE_OPTIONS


def rules_taking(param: str) -> list[str]:
    """Names of the registry's rules whose class takes keyword ``param``, in registry order."""
    return [
        name
        for name, cls in RULE_CLASSES.items()
        if param in list(inspect.signature(cls.__init__).parameters)[1:]
    ]


def cli_applies_to(option: str, rule: str) -> str:
    """``eqprop train``'s refusal of rule option ``option`` (a flat name) for ``--rule rule``.

    ``"--beta applies to --rule ep, --rule continual, ..., not to --rule chl"``.
    """
    flag = "--" + option.replace("_", "-")
    owners = ", ".join(f"--rule {r}" for r in rules_taking(RULE_OPTIONS[option].param))
    return f"{flag} applies to {owners}, not to --rule {rule}"


def config_applies_to(option: str, rule: str) -> str:
    """``TrainConfig.replace``'s refusal of rule option ``option`` for rule ``rule``.

    ``"beta applies to rule ep, continual, ..., not to rule 'chl'"``.
    """
    owners = ", ".join(rules_taking(RULE_OPTIONS[option].param))
    return f"{option} applies to rule {owners}, not to rule {rule!r}"
