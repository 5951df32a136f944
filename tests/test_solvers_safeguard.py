"""The progress safeguard Anderson and Broyden share (``solvers._fp_driver.progress_safeguard``).

Hand-worked residual sequences, each verdict derived by hand from the rule of
:class:`solvers.Anderson`'s docstring: no decrease by ``progress`` within ``window``
iterations, or a residual above ``regress`` times the best, is a fallback; the first
``restarts`` clear the history, the next switches the sample to damped Picard for good,
from the stored state (the last whose residual halved that of the one stored before) when
that one is better. The helper is called directly (it is compiled for the driver, inlined
there); the whole drivers are covered by ``test_solvers*.py``.
"""

import numpy as np

from solvers._fp_driver import (
    DAMPED,
    FALLBACK_ITER,
    FALLEN,
    N_FALLBACK,
    PROCEED,
    RESTART,
    RESTORED,
    new_guard,
    progress_safeguard,
)


def _run(residuals, limits, n=2):
    """Verdicts of one sample (b = 0 of a batch of 2) whose state at iteration k is k."""
    guard = new_guard(2)
    x_saved = np.zeros((2, n))
    verdicts, states = [], []
    for k, r in enumerate(residuals):
        xb = np.full(n, float(k))
        verdicts.append(progress_safeguard(guard, x_saved, xb, 0, k, r, limits))
        states.append(xb[0])
    np.testing.assert_array_equal(guard[1], new_guard(1)[0])  # b = 1 untouched
    n_fallback, fallback_iter = guard[0, N_FALLBACK], guard[0, FALLBACK_ITER]
    assert guard[0, FALLEN] == float(fallback_iter >= 0)
    return verdicts, states, int(n_fallback), int(fallback_iter)


def test_stagnation_restarts_then_falls_back_for_good():
    # progress 0.5 within window 2, no regression test, one restart allowed
    verdicts, states, n_fb, fb_iter = _run([1.0, 0.9, 0.9, 0.9, 0.9, 0.9], (0.5, 2, np.inf, 1))
    # k0 sets the reference; k2: two iterations without halving -> restart (reference
    # reset to the best, 0.9, at k2); k4: again -> the second fallback switches for good;
    # the stored state (k0, residual 1.0) is worse than the current one: no restore
    assert verdicts == [PROCEED, PROCEED, RESTART, PROCEED, DAMPED, DAMPED]
    assert (n_fb, fb_iter) == (2, 4)
    assert states == [0, 1, 2, 3, 4, 5]


def test_a_regression_falls_back_to_the_better_stored_state():
    # regress 2 over the best, huge window, no restarts: the first fallback switches
    verdicts, states, n_fb, fb_iter = _run([1.0, 0.4, 3.0, 0.1], (0.5, 100, 2.0, 0))
    # k1 halves the stored residual (1.0 -> 0.4): state 1 is stored; k2: 3.0 > 2 * 0.4 ->
    # switch, and 3.0 > 0.4: the sample goes back to state 1 (RESTORED, no step);
    # k3 is damped Picard whatever its residual
    assert verdicts == [PROCEED, PROCEED, RESTORED, DAMPED]
    assert states == [0, 1, 1, 3]
    assert (n_fb, fb_iter) == (1, 2)


def test_steady_progress_never_intervenes():
    verdicts, _, n_fb, fb_iter = _run([0.5**k for k in range(12)], (0.5, 1, 1.5, 0))
    assert verdicts == [PROCEED] * 12
    assert (n_fb, fb_iter) == (0, -1)
