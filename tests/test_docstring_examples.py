"""Every docstring example of the public modules runs (issue 15).

Examples that cannot run here (they need a network and a batch built elsewhere, or a
download) carry ``# doctest: +SKIP`` and are illustrations; everything else is executed
with the module's own namespace, so a renamed function or a changed shape fails here.
"""

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("eqprop", "solvers", "studies")


def _modules() -> list[str]:
    names = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names.append(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}."):
            names.append(info.name)
    return sorted(names)


def _examples(module) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module) if t.examples]


def test_the_public_modules_have_examples_to_run():
    # The walk itself must find the examples (a broken finder would pass everything).
    found = {name for name in _modules() if _examples(importlib.import_module(name))}
    assert {"eqprop.data", "eqprop.rules.ep"} <= found


@pytest.mark.parametrize("name", [n for n in _modules() if not n.endswith("__main__")])
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
