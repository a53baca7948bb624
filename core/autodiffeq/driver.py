"""The integration driver: the time loop shared by every solver family.

It owns the semantics users see, identical for every family: the error norm and the step-size
controller (objects, :mod:`autodiffeq.controller`), fixed-step mode, a stop schedule that can
grow during the solve (``tstops``, delay discontinuities, events), ``saveat`` (interpolated
from each step's dense output; the saved times are exactly the requested ones), the dense
history of accepted steps (readable during the solve, :mod:`autodiffeq.history`), events and
callbacks (:mod:`autodiffeq.callbacks`), step observers, ``maxiters``, ``dtmin``/``dtmax``,
retcodes, statistics and the progress bar. Steppers (:mod:`autodiffeq.stepper`) only attempt
steps.

Retcodes: ``"Success"``; ``"MaxIters"`` when ``maxiters`` step attempts did not reach the end;
``"DtLessThanMin"`` when the controller asks for ``|dt|`` below ``dtmin`` (or below what the
floating-point time can resolve); ``"Unstable"`` when the state becomes non-finite;
``"Terminated"`` when a terminal callback ended the solve; ``"EventLoop"`` when events kept
firing without the time moving on. On failure everything computed up to the failure is kept.

**Step observers** (public): objects with ``on_step(t, t_new, u, u_new, stepper, component)``,
called after every accepted step (``component``: which component of a composite stepper made
it, else ``None``), and optionally ``on_jump(t, u_minus, u_plus, event)`` at every event
(``event`` the :class:`~autodiffeq.callbacks.EventRecord`; ``u_plus is u_minus`` when the event
left the state as it was: no jump then, and the time is saved once). Sensitivity methods keep
their checkpoints through them.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .callbacks import EventHandler
from .controller import ErrorNorm, default_norm, initial_step, resolve_controller
from .errors import InvalidArgument, SolverWarning
from .history import DenseHistory
from .stepper import Stepper

_EPS = float(np.finfo(np.float64).eps)


@dataclass
class DriverOptions:
    """Validated options of one integration (times are Python floats, arrays on the backend)."""

    rtol: Any
    atol: Any
    adaptive: bool
    dt: float | None
    dtmin: float
    dtmax: float
    maxiters: int
    saveat: np.ndarray | None  # host times, monotone in the direction of integration
    tstops: np.ndarray  # host times strictly inside (t0, t1], sorted in the direction
    save_everystep: bool
    dense: bool
    progress: bool = False
    #: ``None`` (the stepper's ``controller_class`` or PI), ``"PI"``, ``"predictive"``, a
    #: controller class or instance (see :func:`autodiffeq.controller.resolve_controller`)
    controller: Any = None
    #: the error norm (``None``: the weighted RMS norm over ``error_components`` entries)
    norm: ErrorNorm | None = None
    #: the error norm and the initial-step estimate use only the first ``error_components``
    #: entries of the flat state (``None``: all of them)
    error_components: int | None = None
    #: maps values of ``f`` to ``u'`` for the starting-step estimate (mass-matrix problems:
    #: ``M^+ f``, see :mod:`autodiffeq.dae`; ``None``: ``u' = f``)
    derivative: Callable[[Any], Any] | None = None
    #: step observers (see the module docstring)
    observers: Sequence[Any] = ()
    #: the callbacks of the solve (``None``: none)
    events: EventHandler | None = None
    #: callables given the live :class:`~autodiffeq.history.DenseHistory` before the first
    #: step (a delay equation's right-hand side looks up its past there); the history is
    #: then kept even without ``dense``
    history_consumers: Sequence[Callable[[DenseHistory], None]] = ()
    #: callables given the live :class:`StopSchedule` before the first step (a delay
    #: equation adds the discontinuities ``t + tau`` it propagates)
    stop_consumers: Sequence[Callable[[StopSchedule], None]] = ()


@dataclass
class IntegrationResult:
    """What the driver returns: saved points, the dense history, retcode and counters."""

    t: list[float]
    u: list[Any]
    retcode: str
    naccept: int
    nreject: int
    nf: int
    history: DenseHistory | None = None
    stiffness: str | None = None
    t_final: float = 0.0
    events: EventHandler | None = None


class StopSchedule:
    """Times the integration must step onto exactly, in the direction of integration. New
    ones can be added during the solve (delay discontinuities, events): the driver hands its
    schedule to ``DriverOptions.stop_consumers`` before the first step, and a stop added
    while a step is in progress takes effect from the next step on."""

    def __init__(self, tdir: float, times: Sequence[float], t_end: float) -> None:
        self.tdir = tdir
        self.t_end = float(t_end)
        self._keys = sorted({tdir * float(s) for s in times} | {tdir * self.t_end})
        #: set when a stop was added; the driver clears it once it has taken the new stop
        self.added = False

    @property
    def next(self) -> float:
        return self.tdir * self._keys[0]

    def pop(self) -> float:
        return self.tdir * self._keys.pop(0)

    def add(self, t: float, t_now: float) -> None:
        """Step onto ``t`` too (ignored unless strictly between ``t_now`` and the end)."""
        key = self.tdir * float(t)
        if self.tdir * t_now < key < self.tdir * self.t_end:
            i = bisect.bisect_left(self._keys, key)
            if i == len(self._keys) or self._keys[i] != key:
                self._keys.insert(i, key)
                self.added = True


class _Saver:
    """``saveat`` / every-step saving."""

    def __init__(self, saveat: np.ndarray | None, save_everystep: bool, tdir: float,
                 t0: float, u0: Any) -> None:
        self.saveat = saveat
        self.every = save_everystep
        self.tdir = tdir
        self.t: list[float] = []
        self.u: list[Any] = []
        self.i = 0
        self.nsave = 0 if saveat is None else len(saveat)
        if saveat is not None:
            while self.i < self.nsave and saveat[self.i] == t0:
                self.t.append(t0)
                self.u.append(u0)
                self.i += 1
        elif save_everystep:
            self.t.append(t0)
            self.u.append(u0)
        self.next = self._next()

    def _next(self) -> float:
        # the next requested time as a Python float (no NumPy scalar arithmetic per step)
        if self.saveat is not None and self.i < self.nsave:
            return float(self.saveat[self.i])
        return self.tdir * math.inf

    def jump(self, t: float, u_plus: Any) -> None:
        """The state jumped at ``t``: right-continuous saving."""
        if self.saveat is not None:
            if self.t and self.t[-1] == t:
                self.u[-1] = u_plus
        elif self.every:
            self.t.append(t)
            self.u.append(u_plus)


def integrate(
    stepper: Stepper,
    t0: float,
    t1: float,
    u0: Any,
    f0: Any,
    opts: DriverOptions,
    on_stiffness: Callable[[str, float], None] | None = None,
) -> IntegrationResult:
    """Integrate from ``(t0, u0)`` to ``t1`` with ``stepper``; ``f0 = f(u0, t0)``.

    ``u0`` is the flat backend state. ``on_stiffness(message, t)`` is called once if the
    stepper reports stiffness.
    """
    xp = stepper.xp
    n = u0.shape[0]
    n_err = n if opts.error_components is None else min(int(opts.error_components), n)
    tdir = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)
    adaptive = opts.adaptive
    dtmax = min(opts.dtmax, span)
    stepper.init(t0, u0, f0)
    composite = bool(getattr(stepper, "components", ()))

    if opts.dt is not None:
        dt = tdir * min(max(abs(opts.dt), opts.dtmin if adaptive else 0.0), dtmax)
    else:
        dt = tdir * max(opts.dtmin, _starting_step(stepper, t0, u0, f0, tdir, opts, span,
                                                    dtmax, n_err))

    if adaptive:
        # the estimate is O(dt**k) with k one above the lower of the two orders (for
        # Rosenbrock23, whose embedded method is the higher-order one, k = 3, not 2)
        k_err = min(stepper.order, stepper.error_order or stepper.order - 1) + 1
        controller = resolve_controller(opts.controller, stepper, k_err)
        adapt = controller.adapt
        controller_jumped = getattr(controller, "jumped", None)
        norm = opts.norm if opts.norm is not None else default_norm(
            xp, u0, opts.rtol, opts.atol, opts.error_components, stepper.backend.dot)
        norm.start(u0)
        norm_accept = norm.accept

    stops = StopSchedule(tdir, [float(s) for s in opts.tstops], t1)
    for consumer in opts.stop_consumers:
        consumer(stops)
    next_stop = stops.next
    saver = _Saver(opts.saveat, opts.save_everystep, tdir, t0, u0)
    saveat = opts.saveat
    next_save = saver.next  # a Python float (no attribute lookup per step)
    save_everystep = opts.save_everystep
    events = opts.events
    history = (DenseHistory(stepper, t0, u0, tdir)
               if opts.dense or opts.history_consumers else None)
    for consumer in opts.history_consumers:
        consumer(history)
    observers = tuple(opts.observers)
    if events is not None:
        events.start(t0, u0, f0, dt)

    bar = _progress_bar(t0, t1) if opts.progress else None
    maxiters = opts.maxiters
    dtmin = opts.dtmin
    stiffness_reported = False

    t = t0
    u = u0
    naccept = 0
    nreject = 0
    retcode = "Success"
    trial_error: tuple[ArithmeticError, float, float] | None = None  # the first one, reported
    # |dt| below which a step is hopeless: what t can resolve where it is (4 eps |t|), and
    # never below a tiny fraction of the span (so a failing start at t = 0 cannot spin)
    dt_floor = 1e-12 * _EPS * span
    # fixed steps land on anchor + k * dt (no drift from repeated addition)
    anchor = t0
    k_fixed = 0
    try:
        while True:
            remaining = next_stop - t
            dt_try = dt
            if tdir * (dt_try - remaining) >= -(1e-9 * abs(dt_try) + 8 * _EPS * abs(t)):
                t_new = next_stop
                hit_stop = True
            else:
                t_new = t + dt_try if adaptive else anchor + (k_fixed + 1) * dt
                hit_stop = False
            dt_try = t_new - t  # the step actually taken, after rounding of t_new

            try:
                u_new, err = stepper.step(t, u, dt_try)
            except ArithmeticError as exc:
                # f raised (math.exp overflow, a division by zero, np.errstate "raise") at a
                # trial point of this step: a rejected step, as a non-finite result would be
                if not adaptive:
                    raise
                if trial_error is None:
                    trial_error = (exc, t, dt_try)
                u_new = None

            if adaptive:
                eest = math.inf if u_new is None else norm(u_new, err)
                accept, dt_next = adapt(eest, dt_try)
                if not 0.0 < dt_next * tdir < math.inf:
                    raise InvalidArgument(
                        f"the step-size controller {controller!r} returned dt_next={dt_next!r} "
                        f"for a step of {dt_try!r}: it must be a finite number with the sign of "
                        "the direction of integration"
                    )
                if not accept:
                    nreject += 1
                    dt = dt_next
                    if stops.added:  # a stop found during the attempt: the retry takes it
                        stops.added = False
                        while tdir * (stops.next - t) <= 0.0:
                            stops.pop()
                        next_stop = stops.next
                    if abs(dt) < max(dtmin, dt_floor, 4 * _EPS * abs(t)):
                        retcode = "DtLessThanMin" if eest == eest and eest < math.inf \
                            else "Unstable"
                        break
                    if naccept + nreject >= maxiters:
                        retcode = "MaxIters"
                        break
                    continue
                if hit_stop and abs(dt_next) < abs(dt):
                    dt_next = dt
                norm_accept()
            else:
                if not bool(xp.all(xp.isfinite(u_new))):
                    nreject += 1
                    retcode = "Unstable"
                    break
                dt_next = dt

            naccept += 1
            stepper.accept(t_new, u_new)

            event = None
            if events is not None:
                event, interp = _locate_event(events, stepper, composite, t, dt_try, u, u_new,
                                              t_new)
                if event is not None and event[0] != t_new:
                    # retake the step to end exactly at the event
                    t_new, u_new = _step_to_event(events, stepper, event, interp, t, u, dt_try)
                    event = (t_new, event[1])
                    dt_try = t_new - t
                    hit_stop = False
            component = stepper.last_component if composite else None
            if observers:
                for obs in observers:
                    obs.on_step(t, t_new, u, u_new, stepper, component)

            if saveat is not None:
                if tdir * (next_save - t_new) <= 0.0:
                    _save_in_step(stepper, component, xp, saver, tdir, t, dt_try, t_new, u, u_new)
                    next_save = saver.next
            elif save_everystep:
                saver.t.append(t_new)
                saver.u.append(u_new)
            if history is not None:
                history.append_step(t_new, u_new, stepper.dense_data(), component)

            t = t_new
            u = u_new
            if events is not None:
                jumped, stop_code, fired = _handle_events(events, event, t, u, history,
                                                          saver, observers)
                if stop_code is not None:
                    if jumped is not None:
                        u = jumped
                    retcode = stop_code
                    break
                if fired:
                    if jumped is not None:
                        u = jumped
                    f_now = stepper.rhs.f(u, t)
                    stepper.nf += 1
                    if jumped is not None:
                        stepper.init(t, u, f_now)
                        if adaptive:
                            norm.start(u)
                            if controller_jumped is not None:
                                controller_jumped()
                    events.restart(t, u, None if event is None else event[1], f_now, dt_try)
            if stepper.stiffness is not None and not stiffness_reported:
                stiffness_reported = True
                if on_stiffness is not None:
                    on_stiffness(stepper.stiffness, t)
            if bar is not None and (naccept & 63) == 0:
                bar.update(abs(t - t0) - bar.n)
            if t == next_stop or hit_stop:
                if t == t1:
                    break
                while tdir * (stops.next - t) <= 0.0:
                    stops.pop()
                next_stop = stops.next
                anchor = t
                k_fixed = 0
            elif event is not None:
                # fixed steps go on from the event
                anchor = t
                k_fixed = 0
            else:
                k_fixed += 1
            if stops.added:
                # a stop was added during the step (a delay discontinuity, ...)
                stops.added = False
                while tdir * (stops.next - t) <= 0.0:
                    stops.pop()
                next_stop = stops.next
            dt = dt_next if abs(dt_next) <= dtmax else tdir * dtmax
            if adaptive and abs(dt) < max(dtmin, dt_floor, 4 * _EPS * abs(t)):
                retcode = "DtLessThanMin"
                break
            if naccept + nreject >= maxiters:
                retcode = "MaxIters"
                break
    finally:
        if bar is not None:
            bar.update(abs(t - t0) - bar.n)
            bar.close()

    if retcode == "Success" and not bool(xp.all(xp.isfinite(u))):
        retcode = "Unstable"
    if trial_error is not None:
        exc, t_err, dt_err = trial_error
        warnings.warn(
            f"f raised {type(exc).__name__}: {exc} in a step attempted from t={t_err:.10g} "
            f"with dt={dt_err:.3g}; the step was rejected and retried with a smaller one (at "
            "trial points a solver can leave the region where f is defined: returning inf or "
            "nan there, e.g. np.exp instead of math.exp, avoids the exception)",
            SolverWarning,
            stacklevel=3,
        )
    if retcode != "Success" and saveat is not None and (not saver.t or saver.t[-1] != t):
        # keep where the solve got to, even between requested times
        saver.t.append(t)
        saver.u.append(u)
    return IntegrationResult(
        t=saver.t,
        u=saver.u,
        retcode=retcode,
        naccept=naccept,
        nreject=nreject,
        nf=stepper.nf,
        history=history,
        stiffness=stepper.stiffness,
        t_final=t,
        events=events,
    )


def _starting_step(stepper: Stepper, t0: float, u0: Any, f0: Any, tdir: float,
                   opts: DriverOptions, span: float, dtmax: float, n_err: int) -> float:
    """Hairer's starting step for this stepper (one extra evaluation of ``f``)."""
    order = stepper.order if stepper.error_order is None else min(
        stepper.order, stepper.error_order + 1
    )
    rtol, atol = opts.rtol, opts.atol
    if n_err < u0.shape[0]:
        rtol = rtol[:n_err] if getattr(rtol, "ndim", 0) else rtol
        atol = atol[:n_err] if getattr(atol, "ndim", 0) else atol
    f_init, f0_init = stepper.rhs.f, f0
    derivative = opts.derivative
    if derivative is not None:
        def f_init(u: Any, t: float) -> Any:
            return derivative(stepper.rhs.f(u, t))

        f0_init = derivative(f0)
    with np.errstate(over="ignore"):  # huge scaled norms are handled as non-finite
        h = initial_step(f_init, stepper.xp, t0, u0, f0_init, tdir, order, rtol, atol, span,
                         dtmax, n_err)
    stepper.nf += 1
    return h


def _step_solver(stepper: Stepper, component: int | None) -> Any:
    return stepper if component is None else stepper.components[component]


def _step_interpolant(stepper: Stepper, component: int | None, xp: Any, t: float, dt: float,
                      u: Any, u_new: Any) -> Callable[[Sequence[float]], Any]:
    """``thetas -> states`` on the dense output of the step just accepted."""
    solver = _step_solver(stepper, component)
    data = solver.complete_dense_data(t, dt, u, solver.dense_data())
    n = u.shape[0]

    def interpolate(thetas: Sequence[float]) -> Any:
        m = len(thetas)
        theta = xp.asarray(list(thetas), dtype=u.dtype)
        dts = xp.full((m,), dt, dtype=u.dtype)
        u0s = xp.broadcast_to(u[None, :], (m, n))
        u1s = xp.broadcast_to(u_new[None, :], (m, n))
        datas = None if data is None else xp.broadcast_to(data[None, ...], (m, *data.shape))
        return solver.interpolate(theta, dts, u0s, u1s, datas)

    return interpolate


def _locate_event(events: EventHandler, stepper: Stepper, composite: bool, t: float,
                  dt: float, u: Any, u_new: Any, t_new: float) -> tuple[Any, Any]:
    """The earliest continuous event in the accepted step (``(t*, callback)`` or ``None``)
    and the step's interpolant."""
    if not events.continuous:
        return None, None
    component = stepper.last_component if composite else None
    interp = _step_interpolant(stepper, component, stepper.xp, t, dt, u, u_new)
    return events.find_root(t, dt, u_new, t_new, interp), interp


#: retakes of the step allowed to land on the event's root of the step map
_EVENT_RETAKES = 8


def _step_to_event(events: EventHandler, stepper: Stepper, event: tuple[float, int],
                   interp: Any, t: float, u: Any, dt: float) -> tuple[float, Any]:
    """Retake the step from ``(t, u)`` so that it ends at the event: at ``t*`` from the dense
    output first; if the condition has not crossed at the end of that step (the step map and
    the interpolant differ by the local error), Newton steps on ``h -> condition(Phi(h))``
    with the slope of the condition along the interpolant, each moving the end forward, until
    it has. The state at the event is then a step of the method on whose end the condition
    has crossed, so the callback does not fire again on the same crossing."""
    t_star, i = event
    target = events.crossing_sign
    f_t = stepper.rhs.f(u, t)
    stepper.nf += 1
    h = t_star - t
    slope = None
    resolution = 4 * _EPS * max(abs(t), abs(t + dt))
    for _ in range(_EVENT_RETAKES):
        stepper.init(t, u, f_t)
        u_h, _ = stepper.step(t, u, h)
        g = events.condition_value(i, u_h, t + h)
        if g == 0.0 or (g > 0.0) == (target > 0.0):
            break
        if slope is None:
            theta = h / dt
            eps = min(1e-6, 0.5 * (1.0 - theta)) if theta < 1.0 else 1e-6
            pts = [max(theta - eps, 0.0), min(theta + eps, 1.0)]
            rows = interp(pts)
            g_pts = [events.condition_value(i, rows[j, ...], t + th * dt)
                     for j, th in enumerate(pts)]
            slope = (g_pts[1] - g_pts[0]) / ((pts[1] - pts[0]) * dt)
        move = -g / slope if slope not in (0.0,) and math.isfinite(slope) else 0.0
        # forward (in the direction of integration) by at least a resolution, within the step
        move = math.copysign(max(abs(move) * 1.5, resolution), dt)
        h_next = h + move
        if abs(h_next) > abs(dt):
            h_next = dt
        if h_next == h:
            break
        h = h_next
    stepper.accept(t + h, u_h)
    return t + h, u_h


def _handle_events(events: EventHandler, event: tuple[float, int] | None, t: float, u: Any,
                   history: DenseHistory | None, saver: _Saver, observers: Sequence[Any],
                   ) -> tuple[Any, str | None, bool]:
    """Apply the continuous event found in the step (if any) and the discrete callbacks that
    fire at the step end. Returns the new state (``None`` if none jumped), a retcode that
    ends the solve (or ``None``) and whether any callback fired (the driver then restarts
    the conditions' signs, :meth:`EventHandler.restart`)."""
    fired: list[int] = []
    if event is not None:
        fired.append(event[1])
        # callbacks whose roots coincide with it fire at the same time, in their order
        fired.extend(events.also_crossed(event[1], t, u))
    fired.extend(events.discrete_fired(t, u))
    if not fired:
        events.end_of_step(t, u)
        return None, None, False
    u_cur = u
    stop_code = None
    for i in fired:
        cb = events.callbacks[i]
        u_plus = events.affect(i, t, u_cur)
        loop = events.record(i, t, u_cur, u_plus)
        record = events.records[-1]
        for obs in observers:
            on_jump = getattr(obs, "on_jump", None)
            if on_jump is not None:
                on_jump(t, u_cur, u_plus, record)
        u_cur = u_plus
        if cb.terminal:
            stop_code = "Terminated"
            break
        if loop:
            stop_code = "EventLoop"
            warnings.warn(
                f"callback {i} ({cb!r}) fired {events._same_time} times at t={t:.10g} "
                "without the time moving on; the solve stopped with retcode 'EventLoop'",
                SolverWarning,
                stacklevel=4,
            )
            break
    changed = u_cur is not u
    if changed:
        # saved on both sides of a jump; an event that leaves the state as it is (no
        # affect) is saved once
        if history is not None:
            history.append_jump(t, u_cur)
        saver.jump(t, u_cur)
    return (u_cur if changed else None), stop_code, True


def _save_in_step(stepper: Stepper, component: int | None, xp: Any, saver: _Saver,
                  tdir: float, t: float, dt: float, t_new: float, u: Any, u_new: Any) -> None:
    """Save the requested times inside the accepted step ``[t, t_new]`` (interpolated)."""
    saveat, nsave = saver.saveat, saver.nsave
    start = saver.i
    isave = start
    while isave < nsave and tdir * (saveat[isave] - t_new) <= 0:
        isave += 1
    times = saveat[start:isave]
    inner = [float(s) for s in times if s != t_new]
    if inner:
        values = _step_interpolant(stepper, component, xp, t, dt, u, u_new)(
            [(s - t) / dt for s in inner]
        )
    k = 0
    for s in times:
        s = float(s)
        saver.t.append(s)
        if s == t_new:
            saver.u.append(u_new)
        else:
            saver.u.append(values[k, ...])
            k += 1
    saver.i = isave
    saver.next = saver._next()


def _progress_bar(t0: float, t1: float) -> Any:
    from tqdm.auto import tqdm  # imported only when a progress bar is asked for

    return tqdm(
        total=abs(t1 - t0),
        desc=f"solve t in [{t0:g}, {t1:g}]",
        unit="t",
        bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]",
    )
