"""Error control: error norms, step-size controllers and Hairer's starting step, with
OrdinaryDiffEq's defaults so step counts are comparable with Julia.

**Error norm** (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4, eq. 4.11)::

    EEst = sqrt( mean_i ( err_i / (atol_i + rtol_i * max(|u_old,i|, |u_new,i|)) )**2 )

and a step is accepted when ``EEst <= 1``. A norm is an object (:class:`ErrorNorm`): ``start(u)``
at the start and after every jump of the state, ``__call__(u_new, err) -> EEst`` for an attempt
and ``accept()`` when the attempt is accepted. :class:`WeightedRMSNorm` is the default; its
``components`` argument restricts it to a prefix of the flat state (augmented systems such as
forward sensitivities, ``solve(..., error_components=k)``). A user may pass any object with
those three methods as ``solve(..., internalnorm=...)``.

**Controllers** are objects too (:class:`Controller`): ``init(k)`` with ``k`` the order of the
error estimate (local error ``O(dt**k)``; a float, so methods of fractional order fit), then
``adapt(eest, dt) -> (accept, dt_next)`` after every attempt. Two implementations:

- :class:`PIController` (Gustafsson 1991; Hairer & Wanner, *Solving ODEs II*, IV.2)::

      q = EEst**beta1 / EEst_prev**beta2 / safety,   clipped to [1/qmax, 1/qmin]
      dt_new = dt / q,   beta1 = 0.7 / k,  beta2 = 0.4 / k,  safety = 0.9, qmin = 0.2, qmax = 10

- :class:`PredictiveController` (Gustafsson, *ACM TOMS* 20, 1994; Hairer's RODAS).

A stepper may ask for a controller with a ``controller_class`` attribute (a class with
``for_order(k)``); ``solve(..., controller=...)`` overrides it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from .errors import InvalidArgument


# --------------------------------------------------------------------------- norms
class ErrorNorm:
    """The protocol of error norms (see the module docstring)."""

    def start(self, u: Any) -> None:
        """The state the next attempt starts from (at the start, and after a jump)."""

    def __call__(self, u_new: Any, err: Any) -> float:
        """The scaled error of an attempt ending at ``u_new`` with estimate ``err``."""
        raise TypeError(f"{type(self).__name__} must implement __call__(u_new, err)")

    def accept(self) -> None:
        """The last attempt was accepted: its end state is the new start state."""


class WeightedRMSNorm(ErrorNorm):
    """The weighted RMS norm above over the first ``components`` entries of the flat state
    (all of them by default). ``rtol``/``atol`` are backend scalars (0-d) or arrays of the
    state's length."""

    def __init__(self, xp: Any, rtol: Any, atol: Any, n: int, components: int | None = None,
                 dot: Callable[[Any, Any], Any] | None = None) -> None:
        self.xp = xp
        self.m = n if components is None else min(int(components), n)
        self.part = self.m < n
        self.rtol = _prefix(rtol, self.m) if self.part else rtol
        self.atol = _prefix(atol, self.m) if self.part else atol
        self.dot = dot if dot is not None else (lambda a, b: a @ b)
        self._au: Any = None
        self._au_new: Any = None

    def start(self, u: Any) -> None:
        self._au = self.xp.abs(u[: self.m] if self.part else u)

    def __call__(self, u_new: Any, err: Any) -> float:
        xp = self.xp
        if self.part:
            au_new = xp.abs(u_new[: self.m])
            err = err[: self.m]
        else:
            au_new = xp.abs(u_new)
        self._au_new = au_new
        sc = xp.maximum(self._au, au_new)
        sc = sc * self.rtol + self.atol
        e = err / sc
        return math.sqrt(float(self.dot(e, e)) / self.m)

    def accept(self) -> None:
        self._au = self._au_new


class ScalarRMSNorm(ErrorNorm):
    """:class:`WeightedRMSNorm` in Python floats, for tiny NumPy states with scalar tolerances:
    one ``tolist`` per array instead of six array operations per step (same formula)."""

    __slots__ = ("rtol", "atol", "m", "part", "_au", "_au_new")

    def __init__(self, rtol: float, atol: float, n: int, components: int | None = None) -> None:
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.m = n if components is None else min(int(components), n)
        self.part = self.m < n
        self._au: list[float] = []
        self._au_new: list[float] = []

    def start(self, u: Any) -> None:
        self._au = list(map(abs, (u[: self.m] if self.part else u).tolist()))

    def __call__(self, u_new: Any, err: Any) -> float:
        if self.part:
            m = self.m
            u_new, err = u_new[:m], err[:m]
        au_new = self._au_new = list(map(abs, u_new.tolist()))
        rtol, atol = self.rtol, self.atol
        acc = 0.0
        for a_old, a_new, e_i in zip(self._au, au_new, err.tolist()):
            q_i = e_i / ((a_old if a_old > a_new else a_new) * rtol + atol)
            acc += q_i * q_i
        return math.sqrt(acc / len(au_new))

    def accept(self) -> None:
        self._au = self._au_new


#: states up to this size (NumPy, scalar tolerances) get the error norm in Python floats
SCALAR_NORM_MAX = 8


def default_norm(xp: Any, u0: Any, rtol: Any, atol: Any, components: int | None,
                 dot: Callable[[Any, Any], Any] | None = None) -> ErrorNorm:
    """The default norm for a state like ``u0``: :class:`ScalarRMSNorm` for tiny NumPy states
    with scalar tolerances, else :class:`WeightedRMSNorm`."""
    import numpy as np

    n = int(u0.shape[0])
    m = n if components is None else min(int(components), n)
    if (m <= SCALAR_NORM_MAX and type(u0) is np.ndarray and np.ndim(rtol) == 0
            and np.ndim(atol) == 0):
        return ScalarRMSNorm(float(rtol), float(atol), n, components)
    return WeightedRMSNorm(xp, rtol, atol, n, components, dot)


def _prefix(tol: Any, m: int) -> Any:
    """The first ``m`` entries of a per-component tolerance (a scalar stays as it is)."""
    return tol[:m] if getattr(tol, "ndim", 0) else tol


# --------------------------------------------------------------------------- controllers
class Controller:
    """The protocol of step-size controllers (see the module docstring).

    ``adapt`` receives the scaled error ``eest`` (``inf`` or ``nan`` for a non-finite attempt)
    and the signed step ``dt`` that was attempted, and returns ``(accept, dt_next)``: whether
    to accept the attempt and the signed step to try next. ``jumped()`` is called when the
    state jumps (an event): history-based controllers forget the previous steps.
    """

    def init(self, k: float) -> None:
        """Prepare for a solve whose error estimate is of order ``k``."""

    def adapt(self, eest: float, dt: float) -> tuple[bool, float]:
        raise TypeError(f"{type(self).__name__} must implement adapt(eest, dt)")

    def jumped(self) -> None:
        """The state jumped (an event): start afresh from the next step."""

    @classmethod
    def for_order(cls, k: float, **overrides: Any) -> Controller:
        """A fresh controller for an error estimate of order ``k``."""
        ctrl = cls(**overrides)
        ctrl.init(k)
        return ctrl

    def fresh(self, k: float) -> Controller:
        """A copy of this (configured) controller, initialised for order ``k``: every solve
        gets its own state."""
        ctrl = copy.copy(self)
        ctrl.init(k)
        return ctrl


class PIController(Controller):
    """PI step-size control with OrdinaryDiffEq's defaults (``beta1 = 0.7/k``,
    ``beta2 = 0.4/k`` unless given)."""

    def __init__(self, beta1: float | None = None, beta2: float | None = None, *,
                 safety: float = 0.9, qmin: float = 0.2, qmax: float = 10.0,
                 qoldinit: float = 1e-4) -> None:
        if (beta1, beta2, safety, qmin, qmax, qoldinit) != (None, None, 0.9, 0.2, 10.0, 1e-4):
            _check_limits(safety, qmin, qmax)  # (the defaults are valid: no per-solve cost)
            if beta1 is not None and not _positive(beta1):
                raise InvalidArgument(f"beta1 must be a positive number, got {beta1!r}")
            if beta2 is not None and not (_positive(beta2) or beta2 == 0):
                raise InvalidArgument(f"beta2 must be a non-negative number, got {beta2!r}")
            if not _positive(qoldinit):
                raise InvalidArgument(f"qoldinit must be a positive number, got {qoldinit!r}")
        self.beta1_given, self.beta2_given = beta1, beta2
        self.safety, self.qmin, self.qmax, self.qoldinit = safety, qmin, qmax, qoldinit
        self.init(1.0)

    def init(self, k: float) -> None:
        self.k = float(k)
        self.beta1 = 0.7 / k if self.beta1_given is None else float(self.beta1_given)
        self.beta2 = 0.4 / k if self.beta2_given is None else float(self.beta2_given)
        self.qold = self.qoldinit
        self._inv_qmin, self._inv_qmax = 1.0 / self.qmin, 1.0 / self.qmax

    def jumped(self) -> None:
        self.qold = self.qoldinit

    def adapt(self, eest: float, dt: float) -> tuple[bool, float]:
        if eest <= 1.0:
            inv_qmax, inv_qmin = self._inv_qmax, self._inv_qmin
            if eest == 0.0:
                q = inv_qmax
            else:
                q = eest**self.beta1 / self.qold**self.beta2 / self.safety
                q = inv_qmax if q < inv_qmax else (inv_qmin if q > inv_qmin else q)
            self.qold = eest if eest > self.qoldinit else self.qoldinit
            return True, dt / q
        if eest != eest or eest == math.inf:
            return False, dt * self.qmin
        return False, dt / min(self._inv_qmin, eest**self.beta1 / self.safety)

    def __repr__(self) -> str:
        b1 = "0.7/k" if self.beta1_given is None else f"{self.beta1_given:g}"
        b2 = "0.4/k" if self.beta2_given is None else f"{self.beta2_given:g}"
        return (f"PIController(beta1={b1}, beta2={b2}, safety={self.safety}, "
                f"qmin={self.qmin}, qmax={self.qmax})")


class PredictiveController(Controller):
    """Gustafsson's predictive step-size controller, as in Hairer's RODAS and RADAU5.

    With ``err_n`` the scaled error of the accepted step ``h_n`` and ``k`` the order of the
    error estimate (local error ``O(h**k)``), the new step is ``h_n / fac`` with::

        fac = max(fac_I, fac_G),   fac_I = err_n**(1/k) / safety,
        fac_G = (h_acc / h_n) * (err_n**2 / err_acc)**(1/k) / safety,

    ``h_acc``, ``err_acc = max(err, 1e-2)`` from the previous accepted step, each factor kept in
    ``[1/qmax, 1/qmin]``, and no growth on the step right after a rejection (Gustafsson,
    *ACM TOMS* 20, 1994; Hairer & Wanner, *Solving ODEs II*, IV.8, eq. (8.21) and the code
    RODAS). It anticipates the step-size decrease where the error grows from step to step,
    such as the fast transitions of relaxation oscillations.
    """

    def __init__(self, *, safety: float = 0.9, qmin: float = 0.2, qmax: float = 6.0) -> None:
        if (safety, qmin, qmax) != (0.9, 0.2, 6.0):
            _check_limits(safety, qmin, qmax)
        self.safety, self.qmin, self.qmax = safety, qmin, qmax
        self.init(1.0)

    def init(self, k: float) -> None:
        self.k = float(k)
        self.expo = 1.0 / self.k
        self._inv_qmin, self._inv_qmax = 1.0 / self.qmin, 1.0 / self.qmax
        self.jumped()

    def jumped(self) -> None:
        self.dt_acc: float | None = None
        self.err_acc = 1.0
        self.last_rejected = False

    def adapt(self, eest: float, dt: float) -> tuple[bool, float]:
        expo, safety = self.expo, self.safety
        inv_qmin, inv_qmax = self._inv_qmin, self._inv_qmax
        if not eest <= 1.0:
            self.last_rejected = True
            if eest != eest or eest == math.inf:
                return False, dt * self.qmin
            return False, dt / min(inv_qmin, eest**expo / safety)
        q = eest**expo / safety if eest > 0.0 else inv_qmax
        q = inv_qmax if q < inv_qmax else (inv_qmin if q > inv_qmin else q)
        if self.dt_acc is not None and eest > 0.0:
            q_g = (self.dt_acc / dt) * (eest * eest / self.err_acc) ** expo / safety
            q_g = inv_qmax if q_g < inv_qmax else (inv_qmin if q_g > inv_qmin else q_g)
            q = q if q > q_g else q_g
        if self.last_rejected and q < 1.0:
            q = 1.0  # no growth right after a rejection
        self.dt_acc = dt
        self.err_acc = eest if eest > 1e-2 else 1e-2
        self.last_rejected = False
        return True, dt / q

    def __repr__(self) -> str:
        return f"PredictiveController(safety={self.safety}, qmin={self.qmin}, qmax={self.qmax})"


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _check_limits(safety: Any, qmin: Any, qmax: Any) -> None:
    """``0 < safety <= 1``, ``0 < qmin <= 1 <= qmax``: a controller outside them can shrink
    every step for ever or step against the direction of integration."""
    if not (_positive(safety) and safety <= 1):
        raise InvalidArgument(f"safety must be in (0, 1], got {safety!r}")
    if not (_positive(qmin) and qmin <= 1):
        raise InvalidArgument(f"qmin (the smallest step ratio) must be in (0, 1], got {qmin!r}")
    if not (_positive(qmax) and qmax >= 1):
        raise InvalidArgument(f"qmax (the largest step ratio) must be >= 1, got {qmax!r}")


def resolve_controller(controller: Any, stepper: Any, k: float) -> Controller:
    """The controller of one solve: ``solve``'s ``controller`` (an instance, a class, or
    ``"PI"``/``"predictive"``), else the stepper's ``controller_class``, else PI."""
    from .errors import InvalidType

    if controller is None:
        preferred = getattr(stepper, "controller_class", None)
        return (preferred or PIController).for_order(k)
    if isinstance(controller, str):
        names = {"pi": PIController, "predictive": PredictiveController}
        cls = names.get(controller.lower())
        if cls is None:
            from .errors import UnknownName

            raise UnknownName("controller", controller, ["PI", "predictive"])
        return cls.for_order(k)
    if isinstance(controller, type) and issubclass(controller, Controller):
        return controller.for_order(k)
    if isinstance(controller, Controller):
        return controller.fresh(k)
    if callable(getattr(controller, "adapt", None)) and callable(getattr(controller, "init", None)):
        ctrl = copy.copy(controller)
        ctrl.init(k)
        return ctrl
    raise InvalidType(
        "controller must be None, 'PI', 'predictive', a Controller class or instance, or an "
        f"object with init(k) and adapt(eest, dt); got {type(controller).__name__}"
    )


def rms_norm(x: Any, n: int) -> float:
    """Root-mean-square norm of the 1-D backend array ``x`` of length ``n``."""
    return math.sqrt(float(x @ x) / n)


def initial_step(
    f: Callable[[Any, float], Any],
    xp: Any,
    t0: float,
    u0: Any,
    f0: Any,
    tdir: float,
    order: float,
    rtol: Any,
    atol: Any,
    span: float,
    dtmax: float,
    n_err: int | None = None,
) -> float:
    """Hairer's starting step size (*Solving ODEs I*, II.4, p. 169), magnitude only.

    Uses one extra evaluation of ``f``. ``order`` is the order of the method. The norms use
    the first ``n_err`` entries of the state (default: all; ``rtol``/``atol`` are scalars or
    cover those entries). The estimate is bounded below by what the time can resolve at
    ``t0`` (64 eps |t0|) and by a tiny fraction of the span: a start late in time (or a
    restart after an event) with a near-zero state would otherwise get a step the time
    cannot represent.
    """
    n = u0.shape[0] if n_err is None else n_err
    f0 = xp.asarray(f0, copy=True)  # f may reuse its output buffer
    u0_e, f0_e = (u0, f0) if n == u0.shape[0] else (u0[:n], f0[:n])
    sc = atol + xp.abs(u0_e) * rtol
    d0 = rms_norm(u0_e / sc, n)
    d1 = rms_norm(f0_e / sc, n)
    if d0 < 1e-5 or d1 < 1e-5 or not (math.isfinite(d0) and math.isfinite(d1)):
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    floor = min(span, max(64 * _EPS * abs(t0), 1e-12 * _EPS * span))
    h0 = max(min(h0, span, dtmax), floor)
    u1 = u0 + (tdir * h0) * f0
    f1 = f(u1, t0 + tdir * h0)
    if n != u0.shape[0]:
        f1 = f1[:n]
    d2 = rms_norm((f1 - f0_e) / sc, n) / h0
    dmax = max(d1, d2)
    if not math.isfinite(dmax):
        h1 = h0 * 1e-3
    elif dmax <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / dmax) ** (1.0 / (order + 1))
    return max(min(100 * h0, h1, span, dtmax), floor)


_EPS = 2.220446049250313e-16
