"""The integration driver: the time loop shared by every solver family.

It owns the semantics users see, identical for every family: error norm and PI step-size
control (:mod:`autodiffeq.controller`), fixed-step mode, ``tstops`` (hit exactly), ``saveat``
(interpolated from each step's dense output; the saved times are exactly the requested ones),
dense-output storage, ``maxiters``, ``dtmin``/``dtmax``, retcodes, statistics and the progress
bar. Steppers (:mod:`autodiffeq.stepper`) only attempt steps.

Retcodes: ``"Success"``; ``"MaxIters"`` when ``maxiters`` step attempts did not reach the end;
``"DtLessThanMin"`` when the controller asks for ``|dt|`` below ``dtmin`` (or below what the
floating-point time can resolve); ``"Unstable"`` when the state becomes non-finite. On failure
everything computed up to the failure is kept.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .controller import PIController, PredictiveController, initial_step
from .errors import SolverWarning
from .stepper import Stepper

_EPS = float(np.finfo(np.float64).eps)
#: states up to this size (NumPy, scalar tolerances) get the error norm in Python floats
_SCALAR_NORM_MAX = 8


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
    controller: PIController | PredictiveController | None = None
    #: told of every accepted step: ``recorder.record(t_new, u_new, stepper)`` (after
    #: ``stepper.accept``); sensitivity methods use it to keep checkpoints (core-internal)
    recorder: Any = None
    #: the error norm and the initial-step estimate use only the first ``error_components``
    #: entries of the flat state (``None``: all of them)
    error_components: int | None = None
    #: maps values of ``f`` to ``u'`` for the starting-step estimate (mass-matrix problems:
    #: ``M^+ f``, see :mod:`autodiffeq.dae`; ``None``: ``u' = f``)
    derivative: Callable[[Any], Any] | None = None


@dataclass
class IntegrationResult:
    """What the driver returns: saved points, dense-output steps, retcode and counters."""

    t: list[float]
    u: list[Any]
    retcode: str
    naccept: int
    nreject: int
    nf: int
    dense_t: list[float] = field(default_factory=list)
    dense_u: list[Any] = field(default_factory=list)
    dense_data: list[Any] = field(default_factory=list)
    stiffness: str | None = None
    t_final: float = 0.0


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
    dot = stepper.backend.dot
    n = u0.shape[0]
    # the entries that the error norm sees: a prefix of the state, or all of it
    n_err = n if opts.error_components is None else min(int(opts.error_components), n)
    part = n_err < n
    tdir = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)
    adaptive = opts.adaptive
    rtol, atol = opts.rtol, opts.atol
    if part:
        rtol, atol = _prefix(rtol, n_err), _prefix(atol, n_err)
    dtmax = min(opts.dtmax, span)
    stepper.init(t0, u0, f0)

    if opts.dt is not None:
        dt = tdir * min(max(abs(opts.dt), opts.dtmin if adaptive else 0.0), dtmax)
    else:
        order = stepper.order if stepper.error_order is None else min(
            stepper.order, stepper.error_order + 1
        )
        f_init, f0_init = stepper.rhs.f, f0
        derivative = opts.derivative
        if derivative is not None:
            def f_init(u: Any, t: float) -> Any:
                return derivative(stepper.rhs.f(u, t))

            f0_init = derivative(f0)
        with np.errstate(over="ignore"):  # huge scaled norms are handled as non-finite
            h = initial_step(
                f_init, xp, t0, u0, f0_init, tdir, order, rtol, atol, span, dtmax, n_err
            )
        dt = tdir * max(opts.dtmin, h)
        stepper.nf += 1

    if adaptive:
        # the estimate is O(dt**k) with k one above the lower of the two orders (it was
        # min(order, error_order + 1): 2 instead of 3 for Rosenbrock23, whose embedded method
        # is the higher-order one; on OREGO that cost 40-500 rejected steps per solve)
        k_err = min(stepper.order, stepper.error_order or stepper.order - 1) + 1
        ctrl = opts.controller
        if ctrl is None:
            preferred = getattr(stepper, "controller_class", None)
            ctrl = (preferred or PIController).for_order(k_err)
        predictive = isinstance(ctrl, PredictiveController)
        safety, inv_qmin, inv_qmax = ctrl.safety, 1.0 / ctrl.qmin, 1.0 / ctrl.qmax
        qmin = ctrl.qmin
        if predictive:
            expo = 1.0 / ctrl.k
            beta1 = expo
            dt_acc = err_acc = None  # previous accepted step and its error (Gustafsson)
            last_rejected = False
        else:
            beta1, beta2 = ctrl.beta1, ctrl.beta2
            qoldinit = ctrl.qoldinit
            qold = qoldinit

    stops = [float(s) for s in opts.tstops] + [t1]
    istop = 0
    next_stop = stops[0]

    saveat = opts.saveat
    save_t: list[float] = []
    save_u: list[Any] = []
    isave = 0
    nsave = 0 if saveat is None else len(saveat)
    if saveat is not None:
        while isave < nsave and saveat[isave] == t0:
            save_t.append(t0)
            save_u.append(u0)
            isave += 1
    elif opts.save_everystep:
        save_t.append(t0)
        save_u.append(u0)
    # the next requested time as a Python float (no NumPy scalar arithmetic per step)
    next_save = float(saveat[isave]) if saveat is not None and isave < nsave else tdir * math.inf

    dense = opts.dense
    dense_t: list[float] = []
    dense_u: list[Any] = []
    dense_data: list[Any] = []
    if dense:
        dense_t.append(t0)
        dense_u.append(u0)

    bar = _progress_bar(t0, t1) if opts.progress else None
    maxiters = opts.maxiters
    dtmin = opts.dtmin
    save_everystep = opts.save_everystep
    stiffness_reported = False
    recorder = opts.recorder

    t = t0
    u = u0
    au = (xp.abs(u[:n_err]) if part else xp.abs(u)) if adaptive else None
    # tiny NumPy states with scalar tolerances: the error norm in Python floats (one
    # ``tolist`` per array instead of six array operations per step; same formula)
    scalar_norm = (
        adaptive and n_err <= _SCALAR_NORM_MAX and type(u0) is np.ndarray
        and np.ndim(rtol) == 0 and np.ndim(atol) == 0
    )
    if scalar_norm:
        rtol_f, atol_f = float(rtol), float(atol)
        au = list(map(abs, (u0[:n_err] if part else u0).tolist()))
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

            if u_new is None:
                eest = math.inf  # rejected below as a non-finite step
            elif scalar_norm:
                au_new = list(map(abs, (u_new[:n_err] if part else u_new).tolist()))
                acc = 0.0
                for a_old, a_new, e_i in zip(au, au_new, (err[:n_err] if part else err).tolist()):
                    q_i = e_i / ((a_old if a_old > a_new else a_new) * rtol_f + atol_f)
                    acc += q_i * q_i
                eest = math.sqrt(acc / n_err)
            elif adaptive:
                if part:
                    au_new = xp.abs(u_new[:n_err])
                    err = err[:n_err]
                else:
                    au_new = xp.abs(u_new)
                sc = xp.maximum(au, au_new)
                sc = sc * rtol + atol
                e = err / sc
                eest = math.sqrt(float(dot(e, e)) / n_err)
            if adaptive:
                if not eest <= 1.0:
                    nreject += 1
                    if predictive:
                        last_rejected = True
                    if eest != eest or eest == math.inf:
                        dt = dt_try * qmin
                        nonfinite = True
                    else:
                        dt = dt_try / min(inv_qmin, eest**beta1 / safety)
                        nonfinite = False
                    if abs(dt) < max(dtmin, dt_floor, 4 * _EPS * abs(t)):
                        retcode = "Unstable" if nonfinite else "DtLessThanMin"
                        break
                    if naccept + nreject >= maxiters:
                        retcode = "MaxIters"
                        break
                    continue
                if predictive:
                    q = eest**expo / safety if eest > 0.0 else inv_qmax
                    q = inv_qmax if q < inv_qmax else (inv_qmin if q > inv_qmin else q)
                    if dt_acc is not None and eest > 0.0:
                        q_g = (dt_acc / dt_try) * (eest * eest / err_acc) ** expo / safety
                        q_g = inv_qmax if q_g < inv_qmax else (inv_qmin if q_g > inv_qmin else q_g)
                        q = q if q > q_g else q_g
                    if last_rejected and q < 1.0:
                        q = 1.0  # no growth right after a rejection
                    dt_acc = dt_try
                    err_acc = eest if eest > 1e-2 else 1e-2
                    last_rejected = False
                else:
                    if eest == 0.0:
                        q = inv_qmax
                    else:
                        q = eest**beta1 / qold**beta2 / safety
                        q = inv_qmax if q < inv_qmax else (inv_qmin if q > inv_qmin else q)
                    qold = eest if eest > qoldinit else qoldinit
                dt_next = dt_try / q
                if hit_stop and abs(dt_next) < abs(dt):
                    dt_next = dt
                au = au_new
            else:
                if not bool(xp.all(xp.isfinite(u_new))):
                    nreject += 1
                    retcode = "Unstable"
                    break
                dt_next = dt

            naccept += 1
            stepper.accept(t_new, u_new)
            if recorder is not None:
                recorder.record(t_new, u_new, stepper)

            if saveat is not None:
                if tdir * (next_save - t_new) <= 0.0:
                    isave = _save_in_step(
                        stepper, xp, saveat, isave, nsave, tdir, t, dt_try, t_new, u, u_new,
                        save_t, save_u,
                    )
                    next_save = float(saveat[isave]) if isave < nsave else tdir * math.inf
            elif save_everystep:
                save_t.append(t_new)
                save_u.append(u_new)
            if dense:
                dense_t.append(t_new)
                dense_u.append(u_new)
                dense_data.append(stepper.dense_data())

            t = t_new
            u = u_new
            if stepper.stiffness is not None and not stiffness_reported:
                stiffness_reported = True
                if on_stiffness is not None:
                    on_stiffness(stepper.stiffness, t)
            if bar is not None and (naccept & 63) == 0:
                bar.update(abs(t - t0) - bar.n)
            if hit_stop:
                if t == t1:
                    break
                istop += 1
                next_stop = stops[istop]
                anchor = t
                k_fixed = 0
            else:
                k_fixed += 1
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
    if retcode != "Success" and saveat is not None and (not save_t or save_t[-1] != t):
        # keep where the solve got to, even between requested times
        save_t.append(t)
        save_u.append(u)
    return IntegrationResult(
        t=save_t,
        u=save_u,
        retcode=retcode,
        naccept=naccept,
        nreject=nreject,
        nf=stepper.nf,
        dense_t=dense_t,
        dense_u=dense_u,
        dense_data=dense_data,
        stiffness=stepper.stiffness,
        t_final=t,
    )


def _prefix(tol: Any, m: int) -> Any:
    """The first ``m`` entries of a per-component tolerance (a scalar stays as it is)."""
    return tol[:m] if getattr(tol, "ndim", 0) else tol


def _save_in_step(
    stepper: Stepper,
    xp: Any,
    saveat: np.ndarray,
    isave: int,
    nsave: int,
    tdir: float,
    t: float,
    dt: float,
    t_new: float,
    u: Any,
    u_new: Any,
    save_t: list[float],
    save_u: list[Any],
) -> int:
    """Save the requested times inside the accepted step ``[t, t_new]`` (interpolated)."""
    start = isave
    while isave < nsave and tdir * (saveat[isave] - t_new) <= 0:
        isave += 1
    times = saveat[start:isave]
    inner = [float(s) for s in times if s != t_new]
    if inner:
        data = stepper.complete_dense_data(t, dt, u, stepper.dense_data())
        m = len(inner)
        theta = xp.asarray([(s - t) / dt for s in inner], dtype=u.dtype)
        dts = xp.full((m,), dt, dtype=u.dtype)
        u0s = xp.broadcast_to(u[None, :], (m, u.shape[0]))
        u1s = xp.broadcast_to(u_new[None, :], (m, u.shape[0]))
        datas = None if data is None else xp.broadcast_to(data[None, ...], (m, *data.shape))
        values = stepper.interpolate(theta, dts, u0s, u1s, datas)
    k = 0
    for s in times:
        s = float(s)
        save_t.append(s)
        if s == t_new:
            save_u.append(u_new)
        else:
            save_u.append(values[k, ...])
            k += 1
    return isave


def _progress_bar(t0: float, t1: float) -> Any:
    from tqdm.auto import tqdm  # imported only when a progress bar is asked for

    return tqdm(
        total=abs(t1 - t0),
        desc=f"solve t in [{t0:g}, {t1:g}]",
        unit="t",
        bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]",
    )
