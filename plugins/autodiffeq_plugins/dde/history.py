"""``h(p, s)`` as a delay equation's ``f`` sees it: the given history before ``t0``, the solve's
own dense output after it.

A lookup at ``s`` is answered from

- the user's history ``h(p, s)`` for ``s < t0``; at ``t0`` itself, where ``u0 != h(p, t0)``
  makes the state jump, the side the step being taken sees: ``h(p, t0)`` for a stage at its
  end, ``u0`` otherwise;
- the accepted steps (the driver's live :class:`~autodiffeq.history.DenseHistory`): the step
  holding ``s`` is found by bisection on the step times (``O(log N)``, no scan of the step
  list) and evaluated with the continuous extension of the solver that made it, made once
  per step (:meth:`Stepper.interpolant`) and kept in a list indexed like the steps;
- inside the step being attempted (a step longer than a lag): that step's own interpolant
  from the previous fixed-point iterate, or, on the first iterate, the last accepted step's
  interpolant continued past its end (constant on the very first step). The lookup notes that
  it happened, so the method of steps iterates (:mod:`.stepper`).

Asking for ``s`` later than the time of the evaluation in progress (the future) raises
:class:`~autodiffeq.InvalidArgument`: a delay equation cannot see ahead, and extrapolating
silently would hide a wrong lag.

Cost. ``h`` is called once per lag in every evaluation of ``f`` (16 evaluations per step of
Vern7 with its interpolation stages), so the common case, ``t0 < s <= t`` strictly inside the
accepted steps, is answered first with the fewest Python operations
(:meth:`HistoryLookup.__call__`): one bisection and the step's interpolant. The bisection
runs in C (about 0.2 us of a 2 us lookup); a cursor on the last step found would hit about
80% of the time on a solve's lookups and saved nothing measurable, so there is none.
Lookups before ``t0`` go straight to the history function. Everything else (the jump at
``t0``, the step being taken, the step accepted last, errors) takes the general path
(:meth:`HistoryLookup._lookup`), which answers the same way as the fast one where both
apply.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any

import numpy as np

from autodiffeq.errors import InvalidArgument, InvalidType, ShapeMismatch
from autodiffeq.validation import is_traced

_EPS = float(np.finfo(np.float64).eps)


class TrialFutureLookup(InvalidArgument, ArithmeticError):
    """A trial stage of a step looked into the future: the driver rejects the step (an
    ``ArithmeticError`` at a trial point) and, in a fixed-step solve, raises it."""


class HistoryLookup:
    """The callable ``h(p, s)`` handed to ``f`` (see the module docstring).

    Attributes:
        t_now: the time of the evaluation of ``f`` in progress (lookups after it are the
            future).
        inside_step: set when a lookup fell inside the step being attempted.
    """

    def __init__(self, user_h: Any, t0: float, shape: tuple[int, ...], backend: Any,
                 dtype: Any, u0: Any = None) -> None:
        self.user_h = user_h
        self.u0 = u0
        self.t0 = float(t0)
        self.shape = tuple(shape)
        self.n = math.prod(self.shape)
        self.backend = backend
        self.xp = backend.xp
        self.dtype = dtype
        self.history: Any = None
        self.t_now = self.t0
        self.inside_step = False
        #: a step is being attempted, ending at ``step_end``
        self.in_step = False
        self.step_end = self.t0
        #: the step the evaluation of ``f`` in progress belongs to (its stages, its
        #: ``k_end``, its lazily completed interpolation stages): at its end, a jump at t0
        #: is read from the side before it
        self.span = (self.t0, self.t0)
        #: ``s -> u(s)`` of the step being attempted (its previous fixed-point iterate)
        self._trial: Any = None
        #: the step accepted last, until the driver adds it to the history: ``[t, dt, u,
        #: u_new, solver, interpolant or None, data()]``, the interpolant made on first use
        self._latest: list[Any] | None = None
        #: step ``i``'s ``s -> u(s)`` (made on first use; ``None`` before)
        self._steps: list[Any] = []
        #: the history's step times (the live list once attached; until then one time, so
        #: that no lookup takes the fast path)
        self._ts: list[float] = [self.t0]
        #: whether the state is 1-D (``f`` sees the interpolated row as it is)
        self._flat = len(self.shape) == 1
        self._checked = False
        #: the type of a history value returned as it was (native, of u0's dtype and shape):
        #: values of that type, shape and dtype skip the checks
        self._native_type: type | None = None
        self._slack = 64 * _EPS

    # ------------------------------------------------------------------ wiring
    def attach(self, history: Any) -> None:
        """The driver's live dense history (a ``history_consumer``); its step times are read
        in place (the driver only appends to them)."""
        self.history = history
        self._ts = history.ts
        self._steps = []

    def begin_step(self) -> None:
        """A new step attempt: no trial interpolant yet."""
        self._trial = None
        self.inside_step = False

    def set_trial(self, t: float, dt: float, u: Any, u_new: Any, data: Any,
                  solver: Any) -> None:
        """The attempted step's own interpolant (the previous fixed-point iterate)."""
        self._trial = solver.interpolant(float(t), float(dt), u, u_new, data)

    def set_latest(self, t: float, dt: float, u: Any, u_new: Any, solver: Any,
                   data: Any) -> None:
        """The step just accepted (``data()`` gives its interpolation data), readable until
        the driver has added it to the history (a stiffness check or a step observer may
        look into it first)."""
        self._latest = [float(t), float(dt), u, u_new, solver, None, data]

    # ------------------------------------------------------------------ lookup
    def __call__(self, p: Any, s: Any) -> Any:
        if type(s) is not float:
            if is_traced(s):
                raise InvalidType(
                    "h(p, s): s is traced by autograd; lookups at times that depend on the "
                    "parameters are not differentiated (write the lag as a constant_lags "
                    "entry or make it independent of p)")
            s = float(s)
        ts = self._ts
        if self.t0 < s < ts[-1] and s <= self.t_now:
            # the common case (module docstring): strictly inside the accepted steps and not
            # after the evaluation in progress. With ts[0] = t0 < s < ts[-1], the bisection
            # gives the step with ts[i] <= s < ts[i + 1], of nonzero length (never a jump)
            i = bisect_right(ts, s) - 1
            steps = self._steps
            at = steps[i] if i < len(steps) else None
            if at is None:
                at = self._step_interpolant(i)
            return at(s) if self._flat else self.xp.reshape(at(s), self.shape)
        if s < self.t0:  # before t0 <= t_now (a forward solve): never the future
            return self._user_history(p, s)
        return self._lookup(p, s)

    def _lookup(self, p: Any, s: float) -> Any:
        """Every lookup (:meth:`__call__` answers the common case before coming here)."""
        t_now = self.t_now
        if s > t_now + self._slack * (abs(t_now) if abs(t_now) > 1.0 else 1.0):
            message = (f"h(p, s) was asked for the future: s={s!r} is after the current time "
                       f"t={t_now!r}; a delay equation's f may only look back (s = t - tau "
                       "with tau >= 0)")
            if self.in_step and t_now != self.span[0]:
                # a trial stage of a step (a state-dependent lag at a state the step would
                # not keep): the step is rejected and retried smaller, as for any failure
                # of f at a trial point
                raise TrialFutureLookup(message)
            raise InvalidArgument(message)
        if s < self.t0:
            return self._user_history(p, s)
        hist = self.history
        if s == self.t0:
            # where u0 != h(p, t0) the state jumps at t0: a stage at the end of the step
            # being taken reads the side before it (the step's interior looks at s < t0),
            # anything else the side after it (u0)
            a, b = self.span
            if t_now == b and a != b:
                return self._user_history(p, s)
            return self._shaped(self.u0 if hist is None else hist.us[0])
        if hist is not None and len(hist.data) and s <= hist.ts[-1]:
            return self._accepted(s)
        if self.in_step:
            if s > self.step_end + self._slack * max(1.0, abs(self.step_end)):
                raise InvalidArgument(
                    f"h(p, s) was asked for s={s!r}, after the end {self.step_end!r} of the "
                    "step being taken")
            return self._inside_step(s)
        latest = self._latest
        if latest is not None and s <= latest[0] + latest[1]:
            at = latest[5]
            if at is None:
                t, dt, u, u_new, solver, data = latest[:5] + [latest[6]]
                with self.within(t, t + dt):
                    filled = data()
                at = latest[5] = solver.interpolant(t, dt, u, u_new, filled)
            return self._shaped(at(s))
        raise InvalidArgument(
            f"h(p, s) was asked for s={s!r}, after the solution computed so far"
            + (f" (up to t={hist.ts[-1]!r})" if hist is not None else ""))

    def _user_history(self, p: Any, s: float) -> Any:
        try:
            out = self.user_h(p, s)
        except Exception as exc:
            exc.add_note(f"autodiffeq: raised by the history h(p, s) at s={s!r}")
            raise
        if type(out) is self._native_type and out.shape == self.shape and out.dtype == self.dtype:
            # what the checks below pass unchanged (a history is called in every evaluation
            # of f until t0 + the largest lag)
            return out
        self._check(out, s)
        be = self.backend
        if be.is_native(out) and out.dtype == self.dtype and tuple(out.shape) == self.shape:
            self._native_type = type(out)
            return out
        return self.xp.reshape(be.asarray(np.asarray(out, dtype=np.float64) if not
                                          be.is_native(out) else out, dtype=self.dtype),
                               self.shape)

    def _check(self, out: Any, s: float) -> None:
        if out is None:
            raise InvalidType(f"the history h(p, s) returned None at s={s!r}; it must return "
                              "the state (an array of u0's shape)")
        shape = getattr(out, "shape", None)
        shape = tuple(np.shape(out) if shape is None else shape)
        if shape != self.shape:
            raise ShapeMismatch(f"the history h(p, s) returned shape {shape} at s={s!r}; the "
                                f"state u0 has shape {self.shape}")
        dtype = getattr(out, "dtype", None)
        if not self._checked:
            kind = np.dtype(dtype).kind if isinstance(dtype, np.dtype) else None
            if kind is not None and kind not in "fiub":
                raise InvalidType(f"the history h(p, s) returned dtype {dtype} at s={s!r}; "
                                  "it must return real numbers")
            self._checked = True

    def _shaped(self, flat: Any) -> Any:
        return flat if len(self.shape) == 1 else self.xp.reshape(flat, self.shape)

    def _step_interpolant(self, i: int) -> Any:
        """Step ``i``'s ``s -> u(s)`` (:meth:`Stepper.interpolant`), made once per step."""
        steps = self._steps
        if i >= len(steps):
            steps.extend([None] * (i + 1 - len(steps)))
        at = steps[i]
        if at is None:
            hist = self.history
            ts = hist.ts
            a, b = float(ts[i]), float(ts[i + 1])
            # its lazy stages are its own evaluations (as in :meth:`within`, inlined: this
            # runs once per step)
            saved, saved_now = self.span, self.t_now
            self.span = (a, b)
            try:
                data = hist._step_data(i)
            finally:
                self.span, self.t_now = saved, saved_now
            at = steps[i] = hist.solver_of(i).interpolant(
                ts[i], ts[i + 1] - ts[i], hist.us[i], hist.us[i + 1], data)
        return at

    def within(self, a: float, b: float) -> _Within:
        """Evaluations of ``f`` in the ``with`` block belong to the step ``[a, b]``."""
        return _Within(self, float(a), float(b))

    def _accepted(self, s: float) -> Any:
        hist = self.history
        ts = hist.ts
        i = min(max(bisect_right(ts, s) - 1, 0), len(hist.data) - 1)
        while i > 0 and ts[i + 1] == ts[i]:  # a zero-length (jump) step: the one before
            i -= 1
        return self._shaped(self._step_interpolant(i)(s))

    def _inside_step(self, s: float) -> Any:
        self.inside_step = True
        trial = self._trial
        if trial is not None:
            return self._shaped(trial(s))
        hist = self.history
        if hist is None or not len(hist.data):  # the first step: the state at t0
            return self._shaped(hist.us[-1] if hist is not None else self._first_state())
        # the last accepted step's interpolant, continued past its end
        i = len(hist.data) - 1
        if hist.ts[i + 1] == hist.ts[i]:  # it ended on a jump: constant from the state after
            return self._shaped(hist.us[-1])
        return self._shaped(self._step_interpolant(i)(s))

    def _first_state(self) -> Any:
        raise InvalidArgument("h(p, s): the solve has not started (no state after t0 yet)")


class _Within:
    """The context manager of :meth:`HistoryLookup.within` (a class rather than a generator
    function: it is entered once per accepted step)."""

    __slots__ = ("lookup", "span", "saved")

    def __init__(self, lookup: HistoryLookup, a: float, b: float) -> None:
        self.lookup = lookup
        self.span = (a, b)
        self.saved: tuple[Any, float] | None = None

    def __enter__(self) -> None:
        lookup = self.lookup
        self.saved = (lookup.span, lookup.t_now)
        lookup.span = self.span

    def __exit__(self, *exc: object) -> None:
        lookup = self.lookup
        lookup.span, lookup.t_now = self.saved
