"""The delay-equation problem type: preparing a solve of :class:`autodiffeq.DDEProblem` for the
driver with any registered ODE solver that has dense output.

``prepare`` turns ``f(u, h, p, t)`` into the ODE right-hand side ``f(u, H, p, t)`` with ``H``
the history lookup (:mod:`.history`), wraps the solver's stepper in the method of steps
(:mod:`.stepper`), makes the discontinuities of the constant lags stops of the driver and adds
an observer locating those of the state-dependent lags (:mod:`.discontinuities`). The core
driver is not told it is solving a delay equation: it hands the live dense history and stop
schedule to the consumers this adapter returns (the contracts of
:class:`autodiffeq.request.PreparedSolve`).
"""

from __future__ import annotations

import inspect
import math
import types
import weakref
from typing import Any

from autodiffeq import RHS, ODEProblem, Requirement
from autodiffeq.backend import parameters_on_backend
from autodiffeq.errors import InvalidType
from autodiffeq.ode_adapter import first_call
from autodiffeq.request import PreparedSolve, SolveRequest
from autodiffeq.validation import contains_traced, is_traced

from .discontinuities import DependentLagTracker, constant_lag_discontinuities
from .history import HistoryLookup
from .stepper import MethodOfSteps

_DENSE = Requirement(
    "dense_order", "dense output (the method of steps reads the history from the steps' "
    "continuous extension)")


#: plain functions whose signature was checked, with what the check read (their code and
#: defaults) per number of arguments: ``inspect.signature`` costs about 20 us, a sixth of a
#: delay solve's set-up, and the same function is usually solved many times (fits, sweeps)
_CHECKED: weakref.WeakKeyDictionary[Any, dict[int, tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary())


def _signature_inputs(fn: Any) -> tuple[Any, ...] | None:
    """What ``inspect.signature(fn)`` depends on, for a plain Python function without
    ``__wrapped__`` or ``__signature__`` (``None`` for anything else: checked every time)."""
    if type(fn) is not types.FunctionType:
        return None
    attrs = fn.__dict__
    if "__wrapped__" in attrs or "__signature__" in attrs:
        return None
    return (fn.__code__, fn.__defaults__, fn.__kwdefaults__)


def _check_signature(fn: Any, args: tuple, name: str, expected: str) -> None:
    inputs = _signature_inputs(fn)
    if inputs is not None:
        known = _CHECKED.get(fn, {}).get(len(args))
        # by identity: the same code and the same defaults objects (comparing defaults with
        # == could compare arrays)
        if known is not None and all(a is b for a, b in zip(known, inputs)):
            return
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and C functions: nothing to check
        return
    try:
        sig.bind(*args)
    except TypeError as exc:
        raise InvalidType(
            f"{name} must be callable as {expected} ({exc}); a delay equation's right-hand "
            "side is f(u, h, p, t), with h(p, s) the state at an earlier time s") from None
    if inputs is not None:
        _CHECKED.setdefault(fn, {})[len(args)] = inputs


class DDEAdapter:
    """Prepares solves of :class:`~autodiffeq.DDEProblem` (module docstring)."""

    name = "DDE"

    def requirements(self, prob: Any) -> tuple[Requirement, ...]:
        return (_DENSE,)

    def sensitivity_requirements(self, prob: Any) -> tuple[Requirement, ...]:
        return ()

    def traced(self, prob: Any) -> bool:
        return is_traced(prob.u0) or contains_traced(prob.p)

    def prepare(self, request: SolveRequest) -> PreparedSolve:
        prob, be, dtype, shape = request.prob, request.backend, request.dtype, request.shape
        t0, t1 = request.t0, request.t1
        _check_signature(prob.f, (None, None, None, None), "f", "f(u, h, p, t)")
        _check_signature(prob.h, (None, None), "h", "h(p, s)")
        p = parameters_on_backend(prob.p, be)
        lookup = HistoryLookup(prob.h, t0, shape, be, dtype, request.u0)
        user_f = prob.f

        def f_ode(u: Any, p_: Any, t: Any) -> Any:
            saved = lookup.t_now
            lookup.t_now = float(t)
            try:
                return user_f(u, lookup, p_, t)
            finally:
                lookup.t_now = saved

        f_ode.__name__ = getattr(user_f, "__name__", "f")
        f_ode.__autodiffeq_no_replay__ = (  # type: ignore[attr-defined]
            "a delay equation's right-hand side reads the solution's past through h")
        f_ode.__autodiffeq_time_dependent__ = True  # type: ignore[attr-defined]
        ode_view = ODEProblem(f_ode, prob.u0, prob.tspan, prob.p)
        f0, convert = first_call(ode_view, request.u0, shape, be, dtype, t0, p,
                                 call="f(u0, h, p, t0)")
        rhs = RHS(f_ode, p, shape, dtype, be, ode_view, convert_output=convert,
                  registry=request.registry)
        levels = max(1, math.ceil(request.solver.order))
        stops = constant_lag_discontinuities(t0, t1, prob.constant_lags, levels)
        schedule: list[Any] = []

        def take_schedule(stop_schedule: Any) -> None:
            schedule.append(stop_schedule)
            for t, _ in stops:
                stop_schedule.add(t, t0)

        observers: tuple[Any, ...] = ()
        if prob.dependent_lags:
            observers = (DependentLagTracker(prob.dependent_lags, prob.constant_lags, p, t0, t1,
                                             levels, shape, lookup, schedule),)

        h0 = lookup._user_history(p, t0)
        xp = be.xp
        jump = not bool(xp.all(xp.reshape(h0, (-1,)) == request.u0))
        restart = {t0 + tau for tau in prob.constant_lags if t0 + tau < t1} if jump else set()

        def wrap(stepper: Any) -> MethodOfSteps:
            wrapped = MethodOfSteps(stepper, lookup, request.rtol_b, request.atol_b)
            wrapped.restart_at = set(restart)
            if observers:
                wrapped.tracker = observers[0]
            return wrapped

        return PreparedSolve(rhs=rhs, u0=request.u0, f0=f0,
                             history_consumers=(lookup.attach,),
                             stop_consumers=(take_schedule,), wrap_stepper=wrap,
                             observers=observers)
