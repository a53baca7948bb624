"""Events and callbacks: :class:`ContinuousCallback`, :class:`DiscreteCallback` and
:class:`CallbackSet`, passed as ``solve(..., callback=...)``.

A :class:`ContinuousCallback` fires where ``condition(u, t)`` changes sign. The root is located on
the dense output of each accepted step: the condition is sampled at ``interp_points`` points of
the step (so a double crossing inside one step is seen), the first bracket with a sign change
is narrowed by a bracketing root finder (Illinois' modified regula falsi with bisection
safeguards) to the time resolution, and the step is retaken from its start to end exactly at
the root ``t*`` (so the state there is a step of the method, not an interpolated value: the
discrete sensitivity methods differentiate it as any other step). The event is recorded
(``sol.t_events``, ``sol.u_events``: the state before the affect), ``affect`` gives the new
state and the integration restarts at ``t*`` (first-same-as-last caches reset, the controller
forgets its history). This follows the callbacks of DifferentialEquations.jl
(Rackauckas & Nie, *J. Open Res. Softw.* 5, 2017; DiffEqCallbacks / the ``ContinuousCallback``
root finding with ``interp_points``) and SciPy's ``solve_ivp`` events.

A :class:`DiscreteCallback` is checked at the end of every accepted step; when its condition
holds, its affect is applied there.

``condition`` and ``affect`` take ``(u, t)`` or, with three positional parameters,
``(u, p, t)`` (SciML's argument order); ``u`` has the user's shape. Gradients through solves
with events (``ForwardSensitivity``, ``DiscreteAdjoint``) differentiate ``condition`` and
``affect`` with autograd, so write them with ``autograd.numpy`` when they use ``p``.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .errors import InvalidArgument, InvalidType, ShapeMismatch, SolverWarning

#: consecutive events without the time moving on after which a solve ends with ``"EventLoop"``
MAX_EVENTS_AT_ONE_TIME = 100

_EPS = float(np.finfo(np.float64).eps)


def time_first(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s parameters read like SciPy's ``(t, y, ...)``: the first is named ``t``
    or ``time`` and no later one is named ``t`` (``f(s, p, t)`` is fine)."""
    code = getattr(fn, "__code__", None)
    if code is not None:  # a plain function: its parameter names without inspect's cost
        params = list(code.co_varnames[:code.co_argcount])
    else:
        try:
            params = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            return False
    return bool(params) and params[0] in ("t", "time") and "t" not in params[1:]


def _takes_p(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` is called as ``fn(u, p, t)`` (three positional parameters) rather than
    ``fn(u, t)``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = [
        q for q in sig.parameters.values()
        if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)
    ]
    if any(q.kind == q.VAR_POSITIONAL for q in sig.parameters.values()):
        return False
    required = [q for q in positional if q.default is q.empty]
    if len(required) > 3 or (len(positional) < 2 and not positional == []):
        raise InvalidType(
            f"{name} must take (u, t) or (u, p, t); its signature is {sig}"
        )
    return len(required) == 3


class Callback:
    """Base class of callbacks."""

    condition: Callable[..., Any]
    affect: Callable[..., Any] | None
    terminal: bool
    continuous: bool = False

    def _setup(self, condition: Any, affect: Any, terminal: Any, affect_required: bool) -> None:
        if not callable(condition):
            raise InvalidType(
                f"condition must be callable, condition(u, t) or condition(u, p, t); got "
                f"{type(condition).__name__}"
            )
        if affect is None and affect_required:
            raise InvalidType("affect must be callable, affect(u, t) -> u; got None")
        if affect is not None and not callable(affect):
            raise InvalidType(
                f"affect must be callable (affect(u, t) -> new u) or None; got "
                f"{type(affect).__name__}"
            )
        if not isinstance(terminal, (bool, np.bool_)):
            raise InvalidType(f"terminal must be True or False, got {terminal!r}")
        self.condition = condition
        self.affect = affect
        self.terminal = bool(terminal)
        self.condition_takes_p = _takes_p(condition, "condition")
        self.affect_takes_p = affect is not None and _takes_p(affect, "affect")
        for name, fn in (("condition", condition), ("affect", affect)):
            if fn is not None and time_first(fn):
                warnings.warn(
                    f"{name}'s first parameter is named like a time: autodiffeq calls "
                    f"{name}(u, t) or {name}(u, p, t) (state first, SciML order), not "
                    f"{name}(t, y) as SciPy does; reorder the parameters if it expects the time "
                    "first",
                    SolverWarning,
                    stacklevel=4,
                )

    def call_condition(self, u: Any, p: Any, t: float) -> Any:
        return self.condition(u, p, t) if self.condition_takes_p else self.condition(u, t)

    def call_affect(self, u: Any, p: Any, t: float) -> Any:
        if self.affect is None:
            return u
        return self.affect(u, p, t) if self.affect_takes_p else self.affect(u, t)

    @property
    def uses_p(self) -> bool:
        return self.condition_takes_p or self.affect_takes_p


class ContinuousCallback(Callback):
    """An event where ``condition(u, t)`` crosses zero (see the module docstring).

    Args:
        condition: ``condition(u, t)`` or ``condition(u, p, t)`` -> a real number.
        affect: ``affect(u, t)`` or ``affect(u, p, t)`` -> the state after the event (u's
            shape); ``None`` records the event and changes nothing.
        direction: ``0`` any crossing, ``+1`` only upward (negative to positive), ``-1`` only
            downward, in the order the integration meets the times.
        terminal: end the solve at the first such event (``retcode="Terminated"``; the affect,
            if any, is applied first).
        interp_points: points per step at which the condition is sampled on the dense output.
    """

    continuous = True

    def __init__(self, condition: Callable[..., Any], affect: Callable[..., Any] | None = None,
                 direction: int = 0, terminal: bool = False, *, interp_points: int = 10) -> None:
        self._setup(condition, affect, terminal, affect_required=False)
        if isinstance(direction, bool) or direction not in (-1, 0, 1):
            raise InvalidArgument(f"direction must be -1, 0 or 1, got {direction!r}")
        if (isinstance(interp_points, bool) or not isinstance(interp_points, (int, np.integer))
                or interp_points < 1):
            raise InvalidArgument(
                f"interp_points must be a positive integer, got {interp_points!r}"
            )
        self.direction = int(direction)
        self.interp_points = int(interp_points)

    def __repr__(self) -> str:
        return (f"ContinuousCallback({_name(self.condition)}, {_name(self.affect)}, "
                f"direction={self.direction}, terminal={self.terminal})")


class DiscreteCallback(Callback):
    """``affect`` applied at the end of every accepted step where ``condition(u, t)`` is true.

    Args:
        condition: ``condition(u, t)`` or ``condition(u, p, t)`` -> bool.
        affect: ``affect(u, t)`` or ``affect(u, p, t)`` -> the new state (u's shape).
        terminal: end the solve after the first time it fires (``retcode="Terminated"``).
    """

    def __init__(self, condition: Callable[..., Any], affect: Callable[..., Any] | None,
                 terminal: bool = False) -> None:
        self._setup(condition, affect, terminal, affect_required=not terminal)

    def __repr__(self) -> str:
        return f"DiscreteCallback({_name(self.condition)}, {_name(self.affect)})"


class CallbackSet:
    """Several callbacks (continuous and discrete) given together; nested sets flatten."""

    def __init__(self, *callbacks: Any) -> None:
        self.callbacks = normalize_callbacks(callbacks)

    def __iter__(self) -> Any:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def __repr__(self) -> str:
        return f"CallbackSet({', '.join(map(repr, self.callbacks))})"


def normalize_callbacks(callback: Any) -> tuple[Callback, ...]:
    """``solve``'s ``callback`` argument as a flat tuple of callbacks."""
    if callback is None:
        return ()
    if isinstance(callback, Callback):
        return (callback,)
    if isinstance(callback, CallbackSet):
        return tuple(callback.callbacks)
    if isinstance(callback, (list, tuple)):
        out: list[Callback] = []
        for item in callback:
            out.extend(normalize_callbacks(item))
        return tuple(out)
    raise InvalidType(
        "callback must be a ContinuousCallback, a DiscreteCallback, a CallbackSet or a list of "
        f"them; got {type(callback).__name__}"
    )


def _name(fn: Any) -> str:
    return "None" if fn is None else getattr(fn, "__name__", type(fn).__name__)


# --------------------------------------------------------------------------- per solve
class EventRecord:
    """One event: which callback, when, the states before and after."""

    __slots__ = ("index", "t", "u_minus", "u_plus", "continuous")

    def __init__(self, index: int, t: float, u_minus: Any, u_plus: Any,
                 continuous: bool) -> None:
        self.index = index
        self.t = t
        self.u_minus = u_minus
        self.u_plus = u_plus
        self.continuous = continuous


class EventHandler:
    """The callbacks of one solve, on flat backend states (used by the integration driver).

    ``interpolate(thetas) -> (m, n)`` states inside the current step is given by the driver
    per step; the handler finds the earliest root among the continuous callbacks, applies
    affects, and records the events.
    """

    def __init__(self, callbacks: Iterable[Callback], shape: tuple[int, ...], p: Any,
                 backend: Any, dtype: Any) -> None:
        self.callbacks = tuple(callbacks)
        self.continuous = [i for i, c in enumerate(self.callbacks) if c.continuous]
        self.discrete = [i for i, c in enumerate(self.callbacks) if not c.continuous]
        self.shape = tuple(shape)
        self.p = p
        self.backend = backend
        self.xp = backend.xp
        self.dtype = dtype
        self.n = int(math.prod(self.shape))
        self.records: list[EventRecord] = []
        #: the sign of each continuous condition at the current step start (0: unknown,
        #: e.g. right after the callback fired there)
        self._sign: dict[int, float] = {}
        #: after an event: the (signed) time after the step start from which ``_sign`` holds
        self._offset: dict[int, float] = {}
        #: after an event: the value the callback that fired had there, from which its sign
        #: is measured during the next step
        self._level: dict[int, float] = {}
        #: the sign of the condition after the crossing :meth:`find_root` found last
        self.crossing_sign = 0.0
        self._same_time = 0
        self._last_t: float | None = None

    # ------------------------------------------------------------------ conditions
    def _shaped(self, u: Any) -> Any:
        return u if len(self.shape) == 1 else self.xp.reshape(u, self.shape)

    def condition_value(self, i: int, u: Any, t: float) -> float:
        cb = self.callbacks[i]
        try:
            value = cb.call_condition(self._shaped(u), self.p, t)
        except Exception as exc:
            exc.add_note(f"autodiffeq: raised by the condition of callback {i} ({cb!r}), "
                         f"called as condition(u, {'p, ' if cb.condition_takes_p else ''}t) "
                         f"at t={t!r}")
            raise
        if isinstance(value, (bool, np.bool_)) or str(getattr(value, "dtype", "")) == "bool":
            raise InvalidType(
                f"condition of callback {i} ({cb!r}) returned a bool: a ContinuousCallback's "
                "condition is a real number whose sign changes at the event (e.g. u[0] - 1.0 "
                "rather than u[0] > 1.0); use a DiscreteCallback for a true/false condition"
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidType(
                f"condition of callback {i} ({cb!r}) must return a real number, got "
                f"{type(value).__name__}: {value!r}"
            ) from None
        if number != number:
            raise InvalidArgument(
                f"condition of callback {i} ({cb!r}) returned NaN at t={t!r}: its sign, which "
                "locates the event, is undefined"
            )
        return number

    def start(self, t: float, u: Any, f: Any, dt: float) -> None:
        """At the start of the solve: the conditions' signs at ``(t, u)`` (``f = f(u, t)``,
        ``dt`` the first step, for conditions that start on their root)."""
        self.restart(t, u, None, f, dt)

    def restart(self, t: float, u: Any, fired: int | None, f: Any, dt: float) -> None:
        """After an event at ``t`` (``u`` the state after it, ``f = f(u, t)``, ``dt`` the
        last step): the conditions' signs. For the callback that fired, and any condition
        that is exactly zero, the sign is the one just after ``t`` along the motion,
        ``condition(u + delta f, t + delta)`` with ``delta = 1e-7 dt`` (at least a few ulps of
        ``t``): a state left on (or within rounding of) the root neither fires again at once
        nor hides the next crossing, however long the next step."""
        xp = self.xp
        delta = math.copysign(max(1e-7 * abs(dt), 256 * _EPS * max(abs(t), 1.0)), dt)
        ahead = None
        for i in self.continuous:
            g0 = self.condition_value(i, u, t)
            if i == fired or g0 == 0.0:
                if ahead is None:
                    ahead = u + xp.asarray(delta, dtype=u.dtype) * f
                # measured from what is left at the event (the step onto it ends within the
                # local error of the root, on the far side): the sign of the motion
                self._sign[i] = _sign(self.condition_value(i, ahead, t + delta) - g0)
                self._offset[i] = delta
                self._level[i] = g0
            else:
                self._sign[i] = _sign(g0)
                self._offset.pop(i, None)
                self._level.pop(i, None)

    # ------------------------------------------------------------------ root finding
    def find_root(
        self, t: float, dt: float, u_new: Any, t_new: float,
        interpolate: Callable[[list[float]], Any],
    ) -> tuple[float, int] | None:
        """The earliest event in the accepted step ``[t, t + dt]``: ``(t*, callback)`` or
        ``None``. ``t*`` is the end of the final bracket (the condition has crossed there)."""
        best: tuple[float, int] | None = None
        if not self.continuous:
            return None
        points = max(self.callbacks[i].interp_points for i in self.continuous)
        thetas = [j / points for j in range(1, points)]
        states = interpolate(thetas) if thetas else None
        resolution = 4 * _EPS * max(abs(t), abs(t_new)) / abs(dt) + 4 * _EPS
        first = thetas[0] if thetas else 1.0
        for i in self.continuous:
            cb = self.callbacks[i]
            level = self._level.get(i, 0.0)
            values = [
                self.condition_value(i, states[j, ...], t + th * dt) - level
                for j, th in enumerate(thetas)
            ]
            values.append(self.condition_value(i, u_new, t_new) - level)
            grid = [*thetas, 1.0]
            # where the start sign holds: the step start, or just after an event there
            start = min(self._offset.get(i, 0.0) / dt, 0.5 * first)
            prev_sign, prev_theta = self._sign.get(i, 0.0), start
            for theta, value in zip(grid, values):
                s = _sign(value)
                if s != 0.0 and prev_sign != 0.0 and s != prev_sign:
                    upward = s > 0
                    if cb.direction == 0 or (cb.direction > 0) == upward:
                        if best is not None and prev_theta >= best[0]:
                            break
                        th = self._bracket(i, t, dt, prev_theta, theta, value, interpolate,
                                           resolution, t_new, u_new)
                        if th is not None:
                            if best is None or th < best[0]:
                                best = (th, i)
                                self.crossing_sign = s
                            break
                if s != 0.0:
                    prev_sign, prev_theta = s, theta
                elif prev_sign == 0.0:
                    prev_theta = theta
        if best is None:
            return None
        th, i = best
        t_event = t_new if th >= 1.0 else t + th * dt
        return t_event, i

    def _bracket(self, i: int, t: float, dt: float, lo: float, hi: float, g_hi: float,
                 interpolate: Callable[[list[float]], Any], resolution: float,
                 t_new: float, u_new: Any) -> float | None:
        """Illinois' modified regula falsi on ``theta`` in ``[lo, hi]``; returns ``hi`` of
        the final bracket (the condition has crossed there), or ``None`` when the condition
        has the same sign at both ends (no crossing after all)."""

        level = self._level.get(i, 0.0)

        def g(theta: float) -> float:
            if theta >= 1.0:
                return self.condition_value(i, u_new, t_new) - level
            return self.condition_value(i, interpolate([theta])[0, ...], t + theta * dt) - level

        g_lo = g(lo)
        if _sign(g_lo) == _sign(g_hi):
            return None
        side = 0
        for _ in range(200):
            if hi - lo <= resolution or g_lo == 0.0:
                break
            x = (lo * g_hi - hi * g_lo) / (g_hi - g_lo)
            if not (lo < x < hi):
                x = 0.5 * (lo + hi)
            # keep the bracket shrinking: never closer than half a resolution to an end
            x = min(max(x, lo + 0.5 * resolution), hi - 0.5 * resolution)
            gx = g(x)
            if _sign(gx) == _sign(g_hi) or gx == 0.0:
                hi, g_hi = x, gx
                if side == -1:
                    g_lo *= 0.5
                side = -1
                if gx == 0.0:
                    break
            else:
                lo, g_lo = x, gx
                if side == 1:
                    g_hi *= 0.5
                side = 1
        return hi

    # ------------------------------------------------------------------ affects
    def affect(self, i: int, t: float, u: Any) -> Any:
        """The state after callback ``i``'s affect at ``(t, u)`` (flat, on the backend)."""
        cb = self.callbacks[i]
        if cb.affect is None:
            return u
        arg = self._shaped(self.xp.asarray(u, copy=True))  # the affect may change it in place
        out = cb.call_affect(arg, self.p, t)
        if out is arg and bool(self.xp.all(self.xp.reshape(out, (self.n,)) == u)):
            return u  # returned as it was: no jump
        return self._check_state(out, i)

    def _check_state(self, out: Any, i: int) -> Any:
        be, xp = self.backend, self.xp
        if out is None:
            raise InvalidType(f"affect of callback {i} returned None; it must return the new "
                              "state (affects are out-of-place: return u)")
        if not be.is_native(out):
            try:
                host = np.asarray(out, dtype=np.float64)
            except (TypeError, ValueError):
                raise InvalidType(
                    f"affect of callback {i} must return an array of numbers, got "
                    f"{type(out).__name__}"
                ) from None
            if host.shape != self.shape:
                raise ShapeMismatch(f"affect of callback {i} returned shape {host.shape}, but "
                                    f"the state has shape {self.shape}")
            out = be.asarray(host, dtype=self.dtype)
        else:
            if tuple(out.shape) != self.shape:
                raise ShapeMismatch(f"affect of callback {i} returned shape "
                                    f"{tuple(out.shape)}, but the state has shape {self.shape}")
            if out.dtype != self.dtype:
                raise ShapeMismatch(
                    f"affect of callback {i} returned dtype {be.host_dtype(out.dtype)}, but the "
                    f"state has dtype {be.host_dtype(self.dtype)}"
                )
        flat = xp.reshape(out, (self.n,))
        if not bool(xp.all(xp.isfinite(flat))):
            raise InvalidArgument(f"affect of callback {i} returned a non-finite state")
        return flat

    def record(self, i: int, t: float, u_minus: Any, u_plus: Any) -> bool:
        """Record an event; returns whether too many happened at one time (an event loop)."""
        cb = self.callbacks[i]
        self.records.append(EventRecord(i, t, u_minus, u_plus, cb.continuous))
        if self._last_t is not None and abs(t - self._last_t) <= 64 * _EPS * max(abs(t), 1e-300):
            self._same_time += 1
        else:
            self._same_time = 1
        self._last_t = t
        return self._same_time >= MAX_EVENTS_AT_ONE_TIME

    def also_crossed(self, fired: int, t: float, u: Any) -> list[int]:
        """The other continuous callbacks whose condition has crossed (in their direction)
        between the step start and the event at ``(t, u)`` of callback ``fired``: their roots
        coincide with its to the time resolution, so they fire at the same time."""
        out = []
        for i in self.continuous:
            if i == fired:
                continue
            start = self._sign.get(i, 0.0)
            now = _sign(self.condition_value(i, u, t) - self._level.get(i, 0.0))
            direction = self.callbacks[i].direction
            if start != 0.0 and now != 0.0 and now != start and (
                    direction == 0 or (direction > 0) == (now > 0)):
                out.append(i)
        return out

    def discrete_fired(self, t: float, u: Any) -> list[int]:
        """The discrete callbacks whose condition holds at ``(t, u)``."""
        fired = []
        for i in self.discrete:
            cb = self.callbacks[i]
            value = cb.call_condition(self._shaped(u), self.p, t)
            try:
                hit = bool(value)
            except (TypeError, ValueError):
                raise InvalidType(
                    f"condition of callback {i} ({cb!r}) must return True or False, got "
                    f"{type(value).__name__}: {value!r}"
                ) from None
            if hit:
                fired.append(i)
        return fired

    def end_of_step(self, t: float, u: Any) -> None:
        """The step ended at ``(t, u)`` without an event: its conditions' signs there."""
        self._offset.clear()
        self._level.clear()
        for i in self.continuous:
            s = _sign(self.condition_value(i, u, t))
            if s != 0.0 or self._sign.get(i, 0.0) == 0.0:
                self._sign[i] = s

    # ------------------------------------------------------------------ results
    def events_by_callback(self, backend: Any) -> tuple[list[np.ndarray], list[Any]]:
        """``(t_events, u_events)``: per callback, the times (host) and the states before the
        affects (backend, ``(k, *shape)``)."""
        xp = backend.xp
        t_events, u_events = [], []
        for i in range(len(self.callbacks)):
            mine = [r for r in self.records if r.index == i]
            t_events.append(np.asarray([r.t for r in mine], dtype=np.float64))
            if mine:
                u_events.append(xp.reshape(xp.stack([r.u_minus for r in mine]),
                                           (len(mine), *self.shape)))
            else:
                u_events.append(xp.zeros((0, *self.shape), dtype=self.dtype))
        return t_events, u_events


def _sign(x: float) -> float:
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


# --------------------------------------------------------------------------- derivatives
class EventJacobians:
    """Derivatives of one event's condition and affect at ``(u, p, t)`` (host float64).

    ``g_u`` (n,), ``g_p`` (m,), ``g_t``: the gradient of the condition (zeros for a discrete
    callback, whose event time is a step end and does not move); ``A_u`` (n, n), ``A_p``
    (n, m), ``A_t`` (n,): the Jacobian of the affect (identity and zeros without one).
    """

    def __init__(self, g_u: np.ndarray, g_p: np.ndarray, g_t: float, A_u: np.ndarray,
                 A_p: np.ndarray, A_t: np.ndarray) -> None:
        self.g_u, self.g_p, self.g_t = g_u, g_p, g_t
        self.A_u, self.A_p, self.A_t = A_u, A_p, A_t

    def time_sensitivity(self, f_minus: np.ndarray) -> tuple[float, np.ndarray]:
        """``D = g_u . f(u-) + g_t``: the rate at which the condition crosses zero; the
        implicit function theorem gives ``dt*/dx = -(g_u du-/dx + g_p dp/dx) / D``."""
        D = float(self.g_u @ f_minus + self.g_t)
        if not math.isfinite(D) or D == 0.0:
            raise InvalidArgument(
                "an event's condition crosses zero tangentially (d condition/dt = 0 at the "
                "event), so the event time is not differentiable there"
            )
        return D, self.g_u


def event_jacobians(cb: Callback, shape: tuple[int, ...], u: np.ndarray, p: Any,
                    p_flat: np.ndarray | None, t: float) -> EventJacobians:
    """The :class:`EventJacobians` of callback ``cb`` at the flat host state ``u``.

    ``p_flat`` is the differentiated parameter vector (``None``: ``p`` is not differentiated
    and is passed as it is); ``p`` is reshaped from it like the user's parameters. autograd
    differentiates ``condition`` and ``affect`` (write them with ``autograd.numpy``); where it
    cannot, central differences are used.
    """
    n = int(u.shape[0])
    m = 0 if p_flat is None else int(p_flat.size)
    p_shape = np.shape(p)
    layout = None
    if isinstance(p, (dict, list, tuple)):
        from .replay.pytree import layout_of

        layout = layout_of(p)
    x0 = np.concatenate([np.asarray(u, dtype=np.float64).reshape(-1),
                         np.zeros(0) if p_flat is None else np.asarray(p_flat, np.float64),
                         [float(t)]])

    def split(x: Any) -> tuple[Any, Any, Any]:
        import autograd.numpy as anp

        uu = x[:n] if len(shape) == 1 else anp.reshape(x[:n], shape)
        if m == 0:
            pp = p
        elif layout is not None:
            pp = layout.unflatten(x[n:n + m], anp.reshape)
        else:
            pp = anp.reshape(x[n:n + m], p_shape)
        return uu, pp, x[n + m]

    def condition(x: Any) -> Any:
        uu, pp, tt = split(x)
        return cb.call_condition(uu, pp, tt)

    def affect(x: Any) -> Any:
        import autograd.numpy as anp

        uu, pp, tt = split(x)
        out = cb.call_affect(uu, pp, tt)
        return anp.reshape(out, (n,))

    if cb.continuous:
        grad = _derivative(condition, x0, scalar=True)
        g_u, g_p, g_t = grad[:n], grad[n:n + m], float(grad[n + m])
    else:
        g_u, g_p, g_t = np.zeros(n), np.zeros(m), 0.0
    if cb.affect is None:
        A_u, A_p, A_t = np.eye(n), np.zeros((n, m)), np.zeros(n)
    else:
        jac = _derivative(affect, x0, scalar=False)
        A_u, A_p, A_t = jac[:, :n], jac[:, n:n + m], jac[:, n + m]
    return EventJacobians(g_u, g_p, g_t, A_u, A_p, A_t)


def _derivative(fn: Callable[[Any], Any], x0: np.ndarray, scalar: bool) -> np.ndarray:
    """Gradient (scalar ``fn``) or Jacobian of ``fn`` at ``x0``: autograd, else central
    differences (with a step of ``eps**(1/3)`` relative to each entry)."""
    import autograd

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = fn(x0)
            out = (autograd.grad if scalar else autograd.jacobian)(fn)(x0)
        out = np.asarray(out, dtype=np.float64)
        # an output built with plain numpy (np.array of traced entries) is an object array
        # or "independent of the input" to autograd: its derivative would be silently zero
        untraced = np.asarray(value).dtype == object or any(
            "independent" in str(w.message) for w in caught)
        if not untraced and np.all(np.isfinite(out)):
            return out
    except Exception:  # not traceable by autograd: fall back to differences
        pass
    h_rel = _EPS ** (1 / 3)
    cols = []
    for j in range(x0.size):
        h = h_rel * max(1.0, abs(float(x0[j])))
        xp_, xm_ = x0.copy(), x0.copy()
        xp_[j] += h
        xm_[j] -= h
        diff = (np.asarray(fn(xp_), dtype=np.float64) - np.asarray(fn(xm_), dtype=np.float64))
        cols.append(diff / (2 * h))
    return np.asarray(cols) if scalar else np.stack(cols, axis=-1)
