"""eqprop.gpu.compat: the np.row_stack alias that numba-cuda <= 0.30 needs under NumPy 2.5.

The device image of 2026-12-04 (NumPy 2.5.2) failed every Numba kernel launch on the
missing alias; these tests check the mend on stand-ins of the NumPy module, so they run
on any NumPy, and that importing the kernels leaves numpy with the alias.
"""

from __future__ import annotations

import types

import numpy as np

from eqprop.gpu.compat import restore_row_stack


def _numpy_without_row_stack():
    return types.SimpleNamespace(vstack=np.vstack)


def test_restores_the_alias_where_numpy_removed_it():
    fake = _numpy_without_row_stack()
    assert restore_row_stack(fake) is True
    assert fake.row_stack is np.vstack
    got = fake.row_stack(([1, 2], [3, 4]))
    np.testing.assert_array_equal(got, np.array([[1, 2], [3, 4]]))


def test_leaves_an_existing_row_stack_alone():
    def own(tup):
        return "numpy's own"

    fake = types.SimpleNamespace(vstack=np.vstack, row_stack=own)
    assert restore_row_stack(fake) is False
    assert fake.row_stack is own


def test_importing_the_kernels_gives_numpy_the_alias(monkeypatch):
    """With the name gone from numpy (as in NumPy 2.5), importing eqprop.gpu.kernels
    afresh puts it back before any kernel compiles."""
    import importlib

    monkeypatch.delattr(np, "row_stack", raising=False)
    import eqprop.gpu.kernels as GK

    importlib.reload(GK)
    assert getattr(np, "row_stack") is np.vstack  # noqa: B009 (NumPy 2.5 removed the name)
