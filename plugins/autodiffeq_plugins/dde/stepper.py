"""The method of steps around any ODE stepper with dense output.

A step of ``u' = f(u, h, p, t)`` is a step of the ODE ``u' = f(u, H, p, t)`` whose history
``H`` is known: the given history and the accepted steps (:mod:`.history`). While every lag
is at least the step, that is all there is to it. A step longer than a lag looks up points
inside itself; it is then solved by fixed-point iteration on its own interpolant (Bellen &
Zennaro, *Numerical Methods for Delay Differential Equations*, 2003, sec. 3.5; DelayDiffEq.jl's
``MethodOfSteps``): the first attempt reads those points from the last accepted step's
interpolant continued past its end, each further attempt from the interpolant of the
previous one, until two successive end states agree to ``fixedpoint_tol`` in the solve's
error norm. A step that does not converge in ``max_fixedpoint_iters`` attempts is rejected
(an infinite error estimate): the driver retries it smaller, so a solve is never inaccurate
silently.

:class:`MethodOfSteps` is itself a stepper: everything but ``step`` (``init``, ``accept``,
``dense_data``, ``interpolate``, the components of a composite, counters) is the wrapped
stepper's.
"""

from __future__ import annotations

import math
from typing import Any

from .history import HistoryLookup

#: attempts of a step longer than a lag before it is rejected
MAX_FIXEDPOINT_ITERS = 10
#: two successive end states must agree to this, in units of the solve's error norm
FIXEDPOINT_TOL = 1e-2


class MethodOfSteps:
    """``stepper`` made a delay-equation stepper (module docstring)."""

    def __init__(self, stepper: Any, lookup: HistoryLookup, rtol: Any, atol: Any,
                 max_iters: int = MAX_FIXEDPOINT_ITERS, tol: float = FIXEDPOINT_TOL) -> None:
        self.__dict__["inner"] = stepper
        self.lookup = lookup
        self.rtol = rtol
        self.atol = atol
        self.max_iters = max_iters
        self.tol = tol
        #: steps that needed the fixed-point iteration, and the attempts they took in all
        self.fixedpoint_steps = 0
        self.fixedpoint_iters = 0
        self._attempt: tuple[float, float, Any] | None = None
        #: the last step was iterated and its interpolation data is completed by accept()
        self._pending = False
        self._completed: Any = None
        #: times where ``f`` jumps (``t0 + tau`` when ``u0 != h(p, t0)``): a step starting
        #: there re-evaluates its first stage
        self.restart_at: set[float] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)

    #: attributes of the wrapper itself; every other one is the wrapped stepper's
    _OWN = frozenset({"lookup", "rtol", "atol", "max_iters", "tol", "fixedpoint_steps",
                      "fixedpoint_iters", "_attempt", "tracker", "restart_at", "_completed",
                      "_pending"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            self.__dict__[name] = value
        else:  # the driver and the pipeline set the wrapped stepper's attributes (rng, ...)
            setattr(self.__dict__["inner"], name, value)

    # read by the driver and the history lookup in every step: delegated explicitly rather
    # than through __getattr__ (which Python reaches only after a failed lookup)
    @property
    def stiffness(self) -> str | None:
        return self.__dict__["inner"].stiffness

    @property
    def components(self) -> Any:
        return self.__dict__["inner"].components  # AttributeError: not a composite

    @property
    def last_component(self) -> Any:
        return self.__dict__["inner"].last_component

    def complete_dense_data(self, t: float, dt: float, u: Any, data: Any) -> Any:
        return self.__dict__["inner"].complete_dense_data(t, dt, u, data)

    def interpolant(self, t: float, dt: float, u0: Any, u1: Any, data: Any) -> Any:
        return self.__dict__["inner"].interpolant(t, dt, u0, u1, data)

    @property
    def stats(self) -> dict[str, int]:
        stats = dict(self.inner.stats)
        stats["fixedpoint_steps"] = self.fixedpoint_steps
        stats["fixedpoint_iters"] = self.fixedpoint_iters
        tracker = self.__dict__.get("tracker")
        if tracker is not None:
            stats["discontinuities_located"] = len(tracker.points) - 1
        return stats

    def _solver(self) -> Any:
        inner = self.inner
        if getattr(inner, "components", ()) and inner.last_component is not None:
            return inner.components[inner.last_component]
        return inner

    def _change(self, u_new: Any, u_prev: Any, u: Any) -> float:
        """The weighted RMS norm of ``u_new - u_prev`` (the driver's error norm's scale)."""
        xp = self.inner.xp
        scale = self.atol + self.rtol * xp.maximum(xp.abs(u), xp.abs(u_new))
        ratio = (u_new - u_prev) / scale
        return float(xp.sqrt(xp.mean(ratio * ratio)))

    def accept(self, t_new: float, u_new: Any) -> None:
        own = self.__dict__
        t, dt, u = own["_attempt"]
        solver = self._solver()
        inner, lookup = own["inner"], own["lookup"]
        if own["_pending"]:
            # an iterated step: its k_end and lazily computed stages look inside it, which
            # its last trial answers (as during the iteration)
            lookup.in_step = True
            lookup.step_end = t_new
            try:
                with lookup.within(t, t_new):
                    inner.accept(t_new, u_new)
                    got = inner.dense_data()
                    self._completed = (None if got is None else
                                       solver.complete_dense_data(t, dt, u, got))
            finally:
                lookup.in_step = False
                lookup.begin_step()
                self._pending = False
            completed = self._completed
            lookup.set_latest(t, dt, u, u_new, solver, lambda: completed)
            return

        def data() -> Any:
            got = inner.dense_data()
            return None if got is None else solver.complete_dense_data(t, dt, u, got)

        lookup.set_latest(t, dt, u, u_new, solver, data)
        with lookup.within(t, t_new):  # k_end, stiffness checks: this step's
            inner.accept(t_new, u_new)

    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        # once per attempt: the wrapper's own attributes are written to its __dict__
        # directly (not through __setattr__)
        own = self.__dict__
        lookup = own["lookup"]
        own["_attempt"] = (t, dt, u)
        t_end = t + dt
        lookup.in_step = True
        lookup.step_end = t_end
        lookup.span = (t, t_end)
        restart_at = own["restart_at"]
        if restart_at and t in restart_at:
            # f jumps here (the state jumped at t0 and a lag carries it): the first stage of
            # this step is f after the jump, not the last stage of the step before
            restart_at.discard(t)
            try:
                inner = self.inner
                f0 = inner.rhs.f(u, t)
                inner.nf += 1
                inner.init(t, u, f0)
            finally:
                lookup.in_step = False
            lookup.in_step = True
        try:
            return self._step(t, u, dt)
        finally:
            lookup.in_step = False

    def dense_data(self) -> Any:
        """The interpolation data of the last step: completed during the step when it was
        iterated (its lazily computed stages look inside the step itself, which only the
        iteration can answer), else the wrapped stepper's."""
        completed = self.__dict__.get("_completed")
        return self.inner.dense_data() if completed is None else completed

    def _step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        own = self.__dict__
        own["_completed"] = None
        own["_pending"] = False
        u_new, err = self._fixed_point(t, u, dt)
        tracker = own.get("tracker")
        if tracker is not None and err is not None:
            def attempt_interpolant() -> Any:  # made only when a sign change is found
                data = self.inner.dense_data()
                solver = self._solver()
                if data is not None:
                    data = solver.complete_dense_data(t, dt, u, data)
                return solver.interpolant(t, dt, u, u_new, data)

            root = tracker.crossing(t, t + dt, u, u_new, attempt_interpolant)
            if root is not None and tracker.add_stop(root, t):
                # a discontinuity of a state-dependent lag inside the step: reject, and the
                # retry ends on it (it is a stop now)
                return u_new, self.inner.xp.full_like(u_new, math.inf)
        return u_new, err

    def _fixed_point(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        inner, lookup = self.inner, self.lookup
        lookup.begin_step()
        u_new, err = inner.step(t, u, dt)
        if not lookup.inside_step:
            return u_new, err
        self.fixedpoint_steps += 1
        for _ in range(self.max_iters):
            self.fixedpoint_iters += 1
            data = inner.dense_data()
            solver = self._solver()
            if data is not None:
                data = solver.complete_dense_data(t, dt, u, data)
            lookup.set_trial(t, dt, u, u_new, data, solver)
            u_prev = u_new
            u_new, err = inner.step(t, u, dt)
            change = self._change(u_new, u_prev, u)
            if change <= self.tol:
                # the last trial stays: accept() completes the step's interpolation data
                # with it (lookups inside the step)
                self._pending = True
                return u_new, err
            if not math.isfinite(change):
                break
        lookup.begin_step()
        xp = inner.xp
        # not converged: an infinite error estimate rejects the step (the driver retries it
        # with a smaller dt; a fixed-step solve keeps the last iterate)
        return u_new, xp.full_like(u_new, math.inf) if err is not None else err
