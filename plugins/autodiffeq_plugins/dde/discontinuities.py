"""Where a delay equation's solution is less smooth, and making the solver step there.

At ``t0`` the solution generally has a discontinuity in its first derivative (the history's
slope is not ``f``'s), or in the solution itself when ``u0 != h(p, t0)``. A lag ``tau``
carries a discontinuity at ``xi`` to ``xi + tau`` one derivative higher (for equations that are
not neutral), so a method of order ``q`` needs to step onto those of derivative order up to
``q``: for constant lags, the sums ``t0 + k_1 tau_1 + ... + k_m tau_m`` with ``k_1 + ... + k_m <=
q`` (Bellen & Zennaro, *Numerical Methods for Delay Differential Equations*, 2003, sec. 4.1;
DelayDiffEq.jl tracks them the same way). They are known before the solve and become stops of
the driver, so ``sol.t`` contains them.

For a state-dependent lag ``tau(u, p, t)`` a discontinuity ``xi`` reappears where
``t - tau(u(t), p, t) = xi``; those times depend on the solution. For each attempted step,
:class:`DependentLagTracker` looks for a sign change of ``t - tau(u(t), p, t) - xi`` across it
and locates the root by bisection on the attempt's dense output; a root strictly inside the
step becomes a stop and the attempt is rejected, so the retry ends on it. Found times join the
list (carried further by the constant lags as new stops, and by the dependent lags in later
steps).
"""

from __future__ import annotations

from typing import Any

#: at most this many propagated discontinuities are kept
MAX_DISCONTINUITIES = 10_000


def constant_lag_discontinuities(t0: float, t1: float, lags: tuple[float, ...], levels: int,
                                 start: tuple[tuple[float, int], ...] = ()
                                 ) -> list[tuple[float, int]]:
    """``(time, level)`` of the discontinuities ``xi + k_1 tau_1 + ...`` in ``(t0, t1]`` carried
    from ``t0`` (level 0) and from ``start`` through the constant lags, up to ``levels``
    (sorted by time; each time once, at its lowest level)."""
    found: dict[float, int] = {}
    frontier = [(float(t0), 0), *start]
    while frontier and len(found) < MAX_DISCONTINUITIES:
        nxt = []
        for xi, level in frontier:
            if level >= levels:
                continue
            for tau in lags:
                t = xi + tau
                if t <= t1 and (t not in found or found[t] > level + 1):
                    found[t] = level + 1
                    nxt.append((t, level + 1))
        frontier = nxt
    return sorted(found.items())


class DependentLagTracker:
    """Locates the discontinuities of state-dependent lags (module docstring); a step observer
    of the driver."""

    def __init__(self, lags: tuple[Any, ...], const_lags: tuple[float, ...], p: Any,
                 t0: float, t1: float, levels: int, shape: tuple[int, ...], lookup: Any,
                 stops: list[Any]) -> None:
        self.lags = lags
        self.const_lags = const_lags
        self.p = p
        self.t1 = float(t1)
        self.levels = levels
        self.shape = tuple(shape)
        self.lookup = lookup
        self._stops = stops  # the driver's stop schedule, once it is handed over
        #: the discontinuities known so far, ``(time, level)``
        self.points: list[tuple[float, int]] = [(float(t0), 0)]
        #: (discontinuity, lag) pairs already carried over (``t - tau(u(t)) = xi`` is taken
        #: to have one root per pair, as for lags with ``d tau / dt < 1``)
        self._done: set[tuple[int, int]] = set()

    def add_stop(self, s: float, t_now: float) -> bool:
        """Make ``s`` a stop of the driver (``False`` when there is no schedule)."""
        schedule = self._stops[0] if self._stops else None
        if schedule is None:
            return False
        schedule.add(s, t_now)
        return True

    def _g(self, j: int, xi: float, t: float, u: Any) -> float:
        xp = self.lookup.xp
        uu = u if len(self.shape) == 1 else xp.reshape(u, self.shape)
        return t - float(self.lags[j](uu, self.p, t)) - xi

    def _candidates(self, t: float, t_new: float, u: Any, u_new: Any) -> Any:
        """``(i, j, xi, level, g(t), g(t_new))`` for each known discontinuity ``i`` below the
        last level and each lag ``j`` not yet carried over from it."""
        for i, (xi, level) in enumerate(self.points):
            if level >= self.levels:
                continue
            for j in range(len(self.lags)):
                if (i, j) not in self._done:
                    yield i, j, xi, level, self._g(j, xi, t, u), self._g(j, xi, t_new, u_new)

    def crossing(self, t: float, t_new: float, u: Any, u_new: Any,
                 make_interpolant: Any) -> float | None:
        """A discontinuity strictly inside the attempted step ``[t, t_new]`` not yet known, or
        ``None``: the method of steps then rejects the attempt and the retry steps onto it (it
        becomes a stop). ``make_interpolant()`` gives the attempt's interpolant; it is made
        only when a sign change is found."""
        margin = 1e-9 * max(1.0, abs(t_new)) + 1e-6 * abs(t_new - t)
        at = None
        for _, j, xi, _, a, b in self._candidates(t, t_new, u, u_new):
            if a < 0.0 < b or b < 0.0 < a:
                at = make_interpolant() if at is None else at
                s = self._locate(j, xi, t, t_new, a, lambda s, at=at: self._flat(at(s)))
                if t + margin < s < t_new - margin:
                    return s
        return None

    def on_step(self, t: float, t_new: float, u: Any, u_new: Any, stepper: Any,
                component: Any) -> None:
        new: list[tuple[float, int]] = []
        step: Any = None
        scale = 1e-10 * max(1.0, abs(t_new))
        for i, j, xi, level, a, b in list(self._candidates(t, t_new, u, u_new)):
            if abs(b) <= scale:  # the step ended on it (a stop found by crossing())
                self._done.add((i, j))
                new.append((t_new, level + 1))
                continue
            if not (a < 0.0 < b or b < 0.0 < a):
                continue
            if step is None:
                step = self._interpolant(t, t_new, u, u_new, stepper)
            self._done.add((i, j))
            new.append((self._locate(j, xi, t, t_new, a, step), level + 1))
        for point in new:
            if len(self.points) >= MAX_DISCONTINUITIES:
                break
            self.points.append(point)
            schedule = self._stops[0] if self._stops else None
            if schedule is not None:
                for s, _ in constant_lag_discontinuities(point[0], self.t1, self.const_lags,
                                                         self.levels - point[1]):
                    schedule.add(s, t_new)

    def _flat(self, value: Any) -> Any:
        return value if len(self.shape) == 1 else self.lookup.xp.reshape(value, (-1,))

    def _interpolant(self, t: float, t_new: float, u: Any, u_new: Any, stepper: Any) -> Any:
        """``s -> u(s)`` on the step just accepted (its own continuous extension)."""
        lookup = self.lookup
        solver = stepper._solver() if hasattr(stepper, "_solver") else stepper
        data = stepper.dense_data()
        if data is not None:
            with lookup.within(t, t_new):
                data = solver.complete_dense_data(t, t_new - t, u, data)
        at = solver.interpolant(t, t_new - t, u, u_new, data)
        return lambda s: self._flat(at(s))

    def _locate(self, j: int, xi: float, lo: float, hi: float, g_lo: float,
                step: Any) -> float:
        """Bisection on the step's dense output (to rounding)."""
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            g_mid = self._g(j, xi, mid, step(mid))
            if (g_mid < 0.0) == (g_lo < 0.0):
                lo, g_lo = mid, g_mid
            else:
                hi = mid
        return 0.5 * (lo + hi)
