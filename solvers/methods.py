"""Method descriptions: small immutable parameter records, validated on creation.

Fixed-point methods (for :func:`solvers.solve_fixed_point`): :class:`Picard`,
:class:`Anderson`, :class:`Broyden`, :class:`GaussSeidel`. ODE methods (for
:func:`solvers.solve_steady_state`): :class:`Euler`, :class:`RK4`, :class:`Dopri5`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["RK4", "Anderson", "Broyden", "Dopri5", "Euler", "GaussSeidel", "Picard"]


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


@dataclass(frozen=True)
class Picard:
    """Damped Picard (fixed-point) iteration.

    ``x_{k+1} = P((1 - damping) x_k + damping P(g(x_k)))`` where ``P`` projects onto the
    bounds. ``damping`` in (0, 2): 1 is the plain iteration ``x <- g(x)``, < 1
    under-relaxation (helps oscillating maps), > 1 over-relaxation.
    """

    #: Defined for complex states (holomorphic maps): see docs/solvers.rst.
    complex_states: ClassVar[bool] = True

    damping: float = 1.0

    def __post_init__(self) -> None:
        d = _positive("Picard damping", self.damping)
        if d >= 2:
            raise ValueError(f"Picard damping must be in (0, 2), got {self.damping!r}")
        object.__setattr__(self, "damping", d)

    def describe(self) -> str:
        return f"Picard(damping={self.damping:g})"


@dataclass(frozen=True)
class Anderson:
    """Anderson acceleration (type II, per sample) of the damped Picard iteration.

    With ``f_k = P(g(x_k)) - x_k`` and the last ``m`` differences
    ``dF_j = f_{j+1} - f_j``, ``dG_j = P(g(x_{j+1})) - P(g(x_j))``, each sample solves the
    ridge-regularised least-squares problem

    ``gamma = argmin ||f_k - dF gamma||^2 + reg * max(diag(dF dF^T)) ||gamma||^2``

    and steps to ``x_{k+1} = P(x_k + damping f_k - (dG - (1 - damping) dF) gamma)``.

    Safeguards: when the Cholesky factorisation of the regularised normal equations has a
    pivot below ``restart_tol`` times its largest diagonal (ill-conditioned history), the
    sample's history is cleared and a plain damped step is taken; when the residual of a
    sample grew by more than a factor ``growth`` since its previous iteration, the sample
    takes a plain damped step (its history is kept). With ``bounds``, the history of a
    sample is also cleared (and a plain damped step taken) whenever the set of components
    of ``P(g(x_k))`` at a bound differs from that of the previous iteration: the projected
    map is only piecewise smooth (piecewise affine for a clipped affine map), and a secant
    model mixing differences from two pieces is wrong. While the active set keeps
    changing, Anderson runs as damped Picard; once it is fixed, the history builds up.

    Progress safeguard (per sample; Anderson is not globally convergent and can cycle or
    stall where the plain iteration converges): when the residual has not decreased by
    the factor ``progress`` within ``window`` iterations, or exceeds ``regress`` times the
    best residual the sample reached, its history is cleared; the ``restarts + 1``-th time,
    the sample switches for good to damped Picard (``x <- x + damping f``), from the
    best state stored (the last one whose residual halved that of the one stored before)
    when that is better than the current one. ``SolveResult.n_fallback`` counts these
    interventions per sample and ``SolveResult.fallback_iter`` gives the iteration of the
    switch. With Picard converging (a contraction near the fixed point), the sample then
    converges too; the safeguard costs at most ``(restarts + 1) * window`` iterations
    before the switch.

    Parameters
    ----------
    m : int
        History length (>= 1).
    reg : float
        Relative Tikhonov regularisation (>= 0).
    damping : float
        Mixing parameter in (0, 1].
    restart_tol : float
        Relative pivot threshold of the restart safeguard (in [0, 1)).
    growth : float
        Residual growth factor (>= 1) above which a plain step is taken; ``inf``
        disables the safeguard.
    window : int
        Iterations (>= 1) within which the residual must decrease by ``progress``.
    progress : float
        Required decrease factor, in (0, 1]; 1 with a huge ``window`` and ``regress = inf``
        disables the progress safeguard.
    regress : float
        Factor (> 1, or inf) over the best residual seen that counts as a regression.
    restarts : int
        History restarts (>= 0) before the switch to damped Picard.
    delay : int
        Plain damped steps (>= 0) before the first extrapolation (the history builds up
        meanwhile). A map that the plain iteration solves in a few steps (saturating
        units that land exactly on their bounds) gains nothing from extrapolation, and
        extrapolating early there costs iterations.
    """

    #: Defined for complex states (holomorphic maps): see docs/solvers.rst.
    complex_states: ClassVar[bool] = True

    m: int = 5
    reg: float = 1e-10
    damping: float = 1.0
    restart_tol: float = 1e-12
    growth: float = 1.0
    window: int = 20
    progress: float = 0.9
    regress: float = 100.0
    restarts: int = 3
    delay: int = 20

    def __post_init__(self) -> None:
        _check_history("Anderson", self)
        object.__setattr__(self, "reg", _positive("Anderson reg", self.reg, allow_zero=True))
        rt = _positive("Anderson restart_tol", self.restart_tol, allow_zero=True)
        if rt >= 1:
            raise ValueError(f"Anderson restart_tol must be in [0, 1), got {self.restart_tol!r}")
        object.__setattr__(self, "restart_tol", rt)
        _check_safeguards("Anderson", self)

    def describe(self) -> str:
        return (
            f"Anderson(m={self.m}, reg={self.reg:g}, damping={self.damping:g}, "
            f"restart_tol={self.restart_tol:g}, growth={self.growth:g}, "
            f"window={self.window}, progress={self.progress:g}, regress={self.regress:g}, "
            f"restarts={self.restarts}, delay={self.delay})"
        )


def _check_history(name: str, method: Any) -> None:
    """The history length ``m`` (an int >= 1) and ``damping`` in (0, 1] of a quasi-Newton
    method (Anderson, Broyden); one ValueError naming the method and field."""
    m = method.m
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"{name} m (history length) must be an int >= 1, got {m!r}")
    d = _positive(f"{name} damping", method.damping)
    if d > 1:
        raise ValueError(f"{name} damping must be in (0, 1], got {method.damping!r}")
    object.__setattr__(method, "damping", d)


def _check_safeguards(name: str, method: object) -> None:
    """Validate the progress-safeguard fields shared by Anderson and Broyden (in place)."""
    gr = float(method.growth)  # type: ignore[attr-defined]
    if not gr >= 1:
        raise ValueError(f"{name} growth must be >= 1 (or inf), got {method.growth!r}")  # type: ignore[attr-defined]
    object.__setattr__(method, "growth", gr)
    for field, lowest in (("window", 1), ("restarts", 0), ("delay", 0)):
        v = getattr(method, field)
        if isinstance(v, bool) or not isinstance(v, int) or v < lowest:
            raise ValueError(f"{name} {field} must be an int >= {lowest}, got {v!r}")
    pr = _positive(f"{name} progress", method.progress)  # type: ignore[attr-defined]
    if pr > 1:
        raise ValueError(f"{name} progress must be in (0, 1], got {method.progress!r}")  # type: ignore[attr-defined]
    object.__setattr__(method, "progress", pr)
    rg = float(method.regress)  # type: ignore[attr-defined]
    if not rg > 1:
        raise ValueError(f"{name} regress must be > 1 (or inf), got {method.regress!r}")  # type: ignore[attr-defined]
    object.__setattr__(method, "regress", rg)


@dataclass(frozen=True)
class Broyden:
    """Limited-memory "good" Broyden method (per sample) for ``F(x) = P(g(x)) - x = 0``.

    With ``H_k`` an approximation of the inverse Jacobian of ``F``, each sample steps
    ``x_{k+1} = P(x_k - H_k F_k)`` from ``H_0 = -damping I`` (without history the step
    is damped Picard, ``x + damping F``) and, with ``s = x_k - x_{k-1}`` and
    ``y = F_k - F_{k-1}``, updates by Broyden's "good" rule in inverse form
    (Sherman-Morrison; Broyden 1965)

    ``H_k = H_{k-1} + (s - H_{k-1} y) (s^H H_{k-1}) / (s^H H_{k-1} y)``,

    stored as ``-damping I + sum_j u_j v_j^H`` with ``u = (s - H y) / (s^H H y)`` and
    ``v = H^H s`` (``^H``: conjugate transpose, the transpose for real states).
    Limited memory: the history is cleared when it holds ``m`` pairs (restarted
    Broyden; dropping the oldest pair instead cost more iterations in
    ``benchmarks/bench_deep_phases.py``). A pair with
    ``|s^H H y| <= denom_tol ||s|| ||H y||`` is not added.

    Safeguards, as :class:`Anderson`'s (same names and defaults): with ``bounds``, the
    history is cleared whenever the set of components of ``P(g(x_k))`` at a bound
    changes (the projected map is only piecewise smooth); a plain damped step is taken
    for the first ``delay`` iterations and when the residual grew by more than
    ``growth`` since the previous iteration; the progress safeguard clears the history
    when the residual has not decreased by ``progress`` within ``window`` iterations or
    exceeds ``regress`` times the best seen, and the ``restarts + 1``-th time switches
    the sample to damped Picard for good (from the best stored state), reported in
    ``SolveResult.n_fallback`` and ``SolveResult.fallback_iter``.

    Cost per iteration and sample: about ``3 c`` dot products and ``3 c`` vector updates
    of length ``n`` for ``c <= m`` stored pairs (history in float64, or complex128 for
    complex states), besides the map.

    Parameters
    ----------
    m : int
        History length (>= 1), pairs ``(u, v)`` kept before the history restarts.
    damping : float
        In (0, 1]: ``H_0 = -damping I`` and the damped Picard step of the safeguards.
    denom_tol : float
        Relative threshold (in [0, 1)) below which an update is skipped.
    growth, window, progress, regress, restarts, delay
        As in :class:`Anderson`.
    """

    #: Defined for complex states (holomorphic maps): see docs/solvers.rst.
    complex_states: ClassVar[bool] = True

    m: int = 5
    damping: float = 1.0
    denom_tol: float = 1e-10
    growth: float = 1.0
    window: int = 20
    progress: float = 0.9
    regress: float = 100.0
    restarts: int = 3
    delay: int = 20

    def __post_init__(self) -> None:
        _check_history("Broyden", self)
        dt = _positive("Broyden denom_tol", self.denom_tol, allow_zero=True)
        if dt >= 1:
            raise ValueError(f"Broyden denom_tol must be in [0, 1), got {self.denom_tol!r}")
        object.__setattr__(self, "denom_tol", dt)
        _check_safeguards("Broyden", self)

    def describe(self) -> str:
        return (
            f"Broyden(m={self.m}, damping={self.damping:g}, denom_tol={self.denom_tol:g}, "
            f"growth={self.growth:g}, window={self.window}, progress={self.progress:g}, "
            f"regress={self.regress:g}, restarts={self.restarts}, delay={self.delay})"
        )


@dataclass(frozen=True)
class GaussSeidel:
    """Block Gauss-Seidel (block-nonlinear) iteration over groups of column ranges.

    ``groups`` is a sequence of groups, each a sequence of ``(start, stop)`` column
    ranges; the ranges of one group are updated together from the same state, the groups
    one after the other, each reading the columns the previous groups just wrote. The
    ranges of all groups must partition ``[0, n)``. Example for a 500-10 layered state
    updated hidden first, then output: ``GaussSeidel(groups=(((0, 500),), ((500, 510),)))``.
    Each update is damped, ``x_S <- P((1 - damping) x_S + damping g(x)_S)``.

    Cost per iteration: the full map ``g(x_k)`` (its residual decides convergence, and its
    values on the first group update that group), then one ``g_block`` call per range of
    each later group, at the state the previous groups just wrote.

    ``last_group_independent=True`` declares that, with exactly two groups
    :math:`S_0, S_1` (red-black), the map's values on the last group do not depend on
    that group's entries, :math:`g(x)_{S_1} = g(x_{S_0})_{S_1}` (a layered map whose
    layers of one parity do not interact, e.g. eqprop's ``eps = 1`` hard-sigmoid
    Hopfield map, :math:`s_l \\leftarrow \\mathrm{clip}(W_l^\\top \\rho(s_{l-1}) + b_l +
    W_{l+1}\\rho(s_{l+1}), 0, 1)`, whose block coordinate updates are Scellier et al.'s
    asynchronous updates, arXiv:2312.15103). Then the block values of :math:`S_1` that
    sweep ``k - 1`` computed at :math:`x_{k, S_0}` are :math:`g(x_k)_{S_1}`, and
    iteration ``k >= 1`` evaluates only the block of :math:`S_0` at :math:`x_k` instead
    of the full map: the residual is :math:`\\max(|P(g(x_k))_{S_0} - x_{k,S_0}|,
    |P(g(x_k))_{S_1} - x_{k,S_1}|)` as before. The iterates are the plain sweep's in any
    case (each group is updated from a block evaluated at the current state); the
    residuals, hence the stopping, are the same to the rounding of a map whose
    independence holds in exact arithmetic only (bitwise for an exactly independent
    one), and a sweep costs one map instead of 1.5 for two equal halves. ``SolveResult.nfev`` then
    counts one full map (iteration 0) and ``nfev_block`` every block call. With damping
    (``damping != 1``) the last group's residual is not zero, which is why its stored
    values are reused, not assumed equal to the state. Needs ``g_block``; with more than
    two groups only the last group's values would stay valid and the saving is one block
    in ``2 G - 1``, so it is refused. The solver cannot check the property: a map that
    does depend on its last group's entries gets stale residuals on that group (a stop
    too early or too late).
    """

    #: Defined for complex states (holomorphic maps): see docs/solvers.rst.
    complex_states: ClassVar[bool] = True

    groups: tuple = ()
    damping: float = 1.0
    last_group_independent: bool = False

    def __post_init__(self) -> None:
        d = _positive("GaussSeidel damping", self.damping)
        if d >= 2:
            raise ValueError(f"GaussSeidel damping must be in (0, 2), got {self.damping!r}")
        object.__setattr__(self, "damping", d)
        try:
            groups = tuple(tuple((int(a), int(b)) for a, b in grp) for grp in self.groups)
        except (TypeError, ValueError):
            raise ValueError(
                "GaussSeidel groups must be a sequence of groups of (start, stop) column "
                f"ranges, e.g. (((0, 500),), ((500, 510),)); got {self.groups!r}"
            ) from None
        if len(groups) == 0 or any(len(grp) == 0 for grp in groups):
            raise ValueError("GaussSeidel needs at least one group, and no group may be empty")
        for grp in groups:
            for a, b in grp:
                if a < 0 or b <= a:
                    raise ValueError(f"GaussSeidel range ({a}, {b}) must satisfy 0 <= start < stop")
        object.__setattr__(self, "groups", groups)
        if not isinstance(self.last_group_independent, bool):
            raise ValueError(
                "GaussSeidel last_group_independent must be True or False, got "
                f"{self.last_group_independent!r}"
            )
        if self.last_group_independent and len(groups) != 2:
            raise ValueError(
                "GaussSeidel(last_group_independent=True) needs exactly two groups "
                f"(red-black), got {len(groups)}: with more, only the last group's stored "
                "values stay valid from one iteration to the next"
            )

    def check_partition(self, n: int) -> None:
        """Raise ValueError unless the ranges partition ``[0, n)``."""
        ranges = sorted(r for grp in self.groups for r in grp)
        pos = 0
        for a, b in ranges:
            if a != pos:
                what = "overlap" if a < pos else f"leave columns [{pos}, {a}) out"
                raise ValueError(
                    f"GaussSeidel ranges must partition the {n} state columns; they {what}"
                )
            pos = b
        if pos != n:
            raise ValueError(
                f"GaussSeidel ranges must partition the {n} state columns; they end at {pos}"
            )

    def describe(self) -> str:
        extra = ", last_group_independent=True" if self.last_group_independent else ""
        return f"GaussSeidel(groups={self.groups}, damping={self.damping:g}{extra})"


@dataclass(frozen=True)
class Euler:
    """Projected explicit Euler: ``x_{k+1} = P(x_k + dt f(x_k))``."""

    #: Defined for complex states (holomorphic maps): see docs/solvers.rst.
    complex_states: ClassVar[bool] = True

    dt: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "dt", _positive("Euler dt", self.dt))

    def describe(self) -> str:
        return f"Euler(dt={self.dt:g})"


@dataclass(frozen=True)
class RK4:
    """Projected classical Runge-Kutta 4 with a fixed step ``dt``.

    The stage points ``x + c dt k`` are projected onto the bounds before ``f`` is
    evaluated there, and the new state is projected.
    """

    #: Defined for complex states (holomorphic maps): see docs/solvers.rst.
    complex_states: ClassVar[bool] = True

    dt: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "dt", _positive("RK4 dt", self.dt))

    def describe(self) -> str:
        return f"RK4(dt={self.dt:g})"


@dataclass(frozen=True)
class Dopri5:
    """Adaptive Dormand-Prince 5(4) with per-sample step-size control.

    The local error estimate ``e`` of a step (difference of the 5th and embedded 4th
    order solutions) is accepted when
    ``max_i |e_i| / (step_atol + step_rtol * max(|x_i|, |x_new,i|)) <= 1``; the step size
    then changes by ``clip(safety * err**(-1/5), min_factor, max_factor)``. These step
    tolerances control the accuracy of the trajectory and are distinct from the
    steady-state tolerance (``atol``/``rtol`` of the solve), which decides when to stop.
    Rejected attempts are counted per sample in ``SolveResult.n_rejected``.
    """

    #: Defined for complex states (holomorphic maps): see docs/solvers.rst.
    complex_states: ClassVar[bool] = True

    dt0: float = 0.1
    step_atol: float = 1e-6
    step_rtol: float = 1e-3
    dt_max: float = math.inf
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dt0", _positive("Dopri5 dt0", self.dt0))
        sa = _positive("Dopri5 step_atol", self.step_atol, allow_zero=True)
        sr = _positive("Dopri5 step_rtol", self.step_rtol, allow_zero=True)
        if sa == 0 and sr == 0:
            raise ValueError("Dopri5 needs step_atol > 0 or step_rtol > 0")
        object.__setattr__(self, "step_atol", sa)
        object.__setattr__(self, "step_rtol", sr)
        dm = float(self.dt_max)
        if not dm > 0:
            raise ValueError(f"Dopri5 dt_max must be > 0, got {self.dt_max!r}")
        object.__setattr__(self, "dt_max", dm)
        s = _positive("Dopri5 safety", self.safety)
        if s >= 1:
            raise ValueError(f"Dopri5 safety must be in (0, 1), got {self.safety!r}")
        lo = _positive("Dopri5 min_factor", self.min_factor)
        hi = _positive("Dopri5 max_factor", self.max_factor)
        if not lo < 1 < hi:
            raise ValueError("Dopri5 needs min_factor < 1 < max_factor")

    def describe(self) -> str:
        return (
            f"Dopri5(dt0={self.dt0:g}, step_atol={self.step_atol:g}, "
            f"step_rtol={self.step_rtol:g}, dt_max={self.dt_max:g})"
        )
