"""Errors inside the user's callbacks reach the caller; no garbage looks converged (#10).

Before, an exception raised in a map was printed by Numba ("Exception ignored in:
'<numba.core.cpu.CPUContext>'") and the driver carried on with whatever ``out`` held:
``np.dot`` of a width-7 state against a 5x5 matrix came back CONVERGED with
``n_iter = [0, 0, 0]``, Dopri5 on a raising field CONVERGED, Anderson with residuals near
1e266.
"""

import sys
import threading

import numba
import numpy as np
import pytest
from test_solvers_maps import affine, contraction

from solvers import (
    RK4,
    Anderson,
    CallbackError,
    Dopri5,
    Euler,
    GaussSeidel,
    Picard,
    Status,
    solve_fixed_point,
    solve_steady_state,
)

FP_METHODS = [
    Picard(),
    Picard(damping=0.5),
    Anderson(m=3),
    GaussSeidel(groups=(((0, 3),), ((3, 7),))),
]
SS_METHODS = [Euler(dt=0.5), RK4(dt=0.5), Dopri5()]
ids = lambda m: m.describe()  # noqa: E731


@numba.njit(cache=True)
def dot_map(x, out, args):
    """out = x @ M; raises in np.dot when the width of x does not match M."""
    out[:] = np.dot(x, args[0])


@numba.njit(cache=True)
def dot_field(x, out, args):
    out[:] = np.dot(x, args[0]) - x


@numba.njit(cache=True)
def count_up(x, out, args):
    """out = x + 1 (so x_k = k from x_0 = 0); raises once x reaches args[0][0]."""
    if x[0, 0] >= args[0][0]:
        raise ZeroDivisionError("reached the threshold")
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = x[b, i] + 1.0


@numba.njit(cache=True)
def count_up_field(x, out, args):
    if x[0, 0] >= args[0][0]:
        raise ZeroDivisionError("reached the threshold")
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = 1.0


@numba.njit(cache=True)
def rebinds_out(x, out, args):
    """The classic slip: rebinds the name instead of writing into the buffer."""
    out = 0.5 * x  # noqa: F841


@numba.njit(cache=True)
def writes_first_column(x, out, args):
    for b in range(x.shape[0]):
        out[b, 0] = 0.5 * x[b, 0]


@numba.njit(cache=True)
def half(x, out, args):
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = 0.5 * x[b, i]


@numba.njit(cache=True)
def half_field(x, out, args):
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[b, i] = -0.5 * x[b, i]


@numba.njit(cache=True)
def raising_block(x, out, args, start, stop):
    raise IndexError("block failed")


@numba.njit(cache=True)
def raising_observe(x, args):
    if x[0, 0] < 0.2:
        raise ValueError("observe failed")
    return np.zeros(x.shape[0])


@numba.njit(cache=True)
def short_observe(x, args):
    return np.zeros(x.shape[0] - 1)


def _note(exc_info) -> str:
    return " ".join(getattr(exc_info.value, "__notes__", []))


@pytest.mark.parametrize("method", FP_METHODS, ids=ids)
def test_mismatched_args_raise_numbas_error_before_any_update(method, capfd):
    x0 = np.ones((3, 7))
    M = 0.5 * np.eye(5)
    for _ in range(3):  # was random: CONVERGED in 2 of 3 runs
        with pytest.raises(ValueError, match="incompatible array sizes") as ei:
            solve_fixed_point(dot_map, x0, (M,), method=method)
        note = _note(ei)
        assert "g(x, out, args) ('dot_map') at iteration 0" in note
        assert "before any update" in note
        assert "(3, 7)" in note and "(5, 5)" in note
        assert method.describe() in note
    assert "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize("method", SS_METHODS, ids=ids)
def test_mismatched_args_raise_for_every_ode_method(method, capfd):
    with pytest.raises(ValueError, match="incompatible array sizes") as ei:
        solve_steady_state(dot_field, np.ones((3, 7)), (0.5 * np.eye(5),), method=method)
    assert "f(x, out, args) ('dot_field') at iteration 0" in _note(ei)
    assert "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize("method", FP_METHODS, ids=ids)
def test_exception_at_a_later_iteration_keeps_its_type_and_names_the_iteration(method):
    # x_k = k for every method on x -> x + 1 (Anderson's differences are all equal, so
    # its least-squares system is singular and it takes plain steps)
    with pytest.raises(ZeroDivisionError, match="reached the threshold") as ei:
        solve_fixed_point(count_up, np.zeros((2, 7)), (np.array([3.0]),), method=method)
    # damping 0.5 halves the steps; Gauss-Seidel re-evaluates g for its second group after
    # the first one moved x[:, :3] on, so it meets the threshold there one iteration early
    if isinstance(method, GaussSeidel):
        where = "at iteration 2 (group 1)"
    else:
        where = f"at iteration {3 if method.damping == 1 else 6} of"
    assert where in _note(ei)


@pytest.mark.parametrize("method", SS_METHODS, ids=ids)
def test_exception_in_an_ode_stage_is_raised(method):
    with pytest.raises(ZeroDivisionError, match="reached the threshold") as ei:
        solve_steady_state(count_up_field, np.zeros((2, 4)), (np.array([1.0]),), method=method)
    note = _note(ei)
    assert "('count_up_field') at iteration" in note
    if not isinstance(method, Euler):
        assert "(stage " in note


def test_exception_in_g_block_and_observe():
    A, c = contraction(7, 0.5, seed=0)
    gs = GaussSeidel(groups=(((0, 3),), ((3, 7),)))
    with pytest.raises(IndexError, match="block failed") as ei:
        solve_fixed_point(affine, np.zeros((2, 7)), (A, c), method=gs, g_block=raising_block)
    where = "g_block(x, out, args, start, stop) ('raising_block') at iteration 0 (group 1)"
    assert where in _note(ei)
    with pytest.raises(ValueError, match="observe failed") as ei:
        solve_fixed_point(half, np.ones((2, 7)), (), observe=raising_observe)
    assert "observe(x, args)" in _note(ei) and "at iteration 3" in _note(ei)
    with pytest.raises(ValueError, match="observe failed"):
        solve_steady_state(half_field, np.ones((2, 7)), (), observe=raising_observe)


@pytest.mark.parametrize("steady", [False, True])
def test_observe_of_the_wrong_length_is_an_error(steady):
    solve = solve_steady_state if steady else solve_fixed_point
    fn = half_field if steady else half
    with pytest.raises(CallbackError, match=r"length 2 .* batch has 3 samples"):
        solve(fn, np.ones((3, 7)), (), observe=short_observe)


@pytest.mark.parametrize("method", FP_METHODS + SS_METHODS, ids=ids)
def test_a_map_that_writes_nothing_is_an_error(method):
    solve = solve_fixed_point if method in FP_METHODS else solve_steady_state
    with pytest.raises(CallbackError, match=r"'rebinds_out'\) wrote nothing into out"):
        solve(rebinds_out, np.ones((3, 7)), (), method=method)
    assert issubclass(CallbackError, ValueError)


@pytest.mark.parametrize("method", FP_METHODS + SS_METHODS, ids=ids)
def test_a_map_that_writes_part_of_out_fails_never_converges(method):
    solve = solve_fixed_point if method in FP_METHODS else solve_steady_state
    res = solve(writes_first_column, np.ones((3, 7)), (), method=method)
    assert res.status == Status.FAILED and not res.success
    assert res.failed.all() and not res.converged.any()
    np.testing.assert_array_equal(res.failure_iter, 0)
    assert "not finite" in res.message and "does not write" in res.message


def test_a_solve_after_a_failed_one_is_clean_and_the_hook_is_restored():
    before = sys.unraisablehook
    with pytest.raises(ValueError):
        solve_fixed_point(dot_map, np.ones((3, 7)), (0.5 * np.eye(5),))
    assert sys.unraisablehook is before
    res = solve_fixed_point(dot_map, np.ones((3, 5)), (0.5 * np.eye(5),), atol=1e-12)
    assert res.success
    np.testing.assert_allclose(res.x, 0.0, atol=1e-11)


def test_errors_stay_in_their_thread():
    out: dict[str, object] = {}

    def good():
        r = None
        for _ in range(20):
            r = solve_fixed_point(half, np.ones((4, 7)), (), atol=1e-12)
        out["good"] = r

    def bad():
        try:
            for _ in range(20):
                solve_fixed_point(dot_map, np.ones((3, 7)), (0.5 * np.eye(5),))
        except ValueError as exc:
            out["bad"] = exc

    ts = [threading.Thread(target=good), threading.Thread(target=bad)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out["good"].success  # type: ignore[attr-defined]
    assert isinstance(out["bad"], ValueError)
