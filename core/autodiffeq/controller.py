"""Error control: the weighted RMS error norm, the PI step-size controller and Hairer's
initial step size, with OrdinaryDiffEq's defaults so step counts are comparable with Julia.

Error norm (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4, eq. 4.11):

    EEst = sqrt( mean_i ( err_i / (atol_i + rtol_i * max(|u_old,i|, |u_new,i|)) )**2 )

and a step is accepted when ``EEst <= 1``. PI control (Gustafsson 1991; Hairer & Wanner,
*Solving ODEs II*, IV.2) with ``k`` the order of the error estimate:

    q = EEst**beta1 / EEst_prev**beta2 / safety,   clipped to [1/qmax, 1/qmin]
    dt_new = dt / q,   beta1 = 0.7 / k,  beta2 = 0.4 / k,  safety = 0.9, qmin = 0.2, qmax = 10

A stepper may ask for another controller with a ``controller_class`` attribute: the
Rosenbrock methods use :class:`PredictiveController` (Gustafsson's, as in Hairer's RODAS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PIController:
    """PI step-size controller constants (OrdinaryDiffEq defaults, scaled by ``k``)."""

    beta1: float
    beta2: float
    safety: float = 0.9
    qmin: float = 0.2
    qmax: float = 10.0
    qoldinit: float = 1e-4

    @classmethod
    def for_order(cls, k: int, **overrides: float) -> PIController:
        """Constants for an error estimate of order ``k`` (local error ``O(dt**k)``)."""
        return cls(beta1=0.7 / k, beta2=0.4 / k, **overrides)


@dataclass(frozen=True)
class PredictiveController:
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

    k: int
    safety: float = 0.9
    qmin: float = 0.2
    qmax: float = 6.0

    @classmethod
    def for_order(cls, k: int, **overrides: float) -> PredictiveController:
        """Constants for an error estimate of order ``k``."""
        return cls(k=k, **overrides)


def rms_norm(xp: Any, x: Any, n: int) -> float:
    """Root-mean-square norm of the 1-D backend array ``x`` of length ``n``."""
    return math.sqrt(float(x @ x) / n)


def initial_step(
    f: Callable[[Any, float], Any],
    xp: Any,
    t0: float,
    u0: Any,
    f0: Any,
    tdir: float,
    order: int,
    rtol: Any,
    atol: Any,
    span: float,
    dtmax: float,
    n_err: int | None = None,
) -> float:
    """Hairer's starting step size (*Solving ODEs I*, II.4, p. 169), magnitude only.

    Uses one extra evaluation of ``f``. ``order`` is the order of the method. The norms use
    the first ``n_err`` entries of the state (default: all; ``rtol``/``atol`` are scalars or
    cover those entries).
    """
    n = u0.shape[0] if n_err is None else n_err
    f0 = xp.asarray(f0, copy=True)  # f may reuse its output buffer
    u0_e, f0_e = (u0, f0) if n == u0.shape[0] else (u0[:n], f0[:n])
    sc = atol + xp.abs(u0_e) * rtol
    d0 = rms_norm(xp, u0_e / sc, n)
    d1 = rms_norm(xp, f0_e / sc, n)
    if d0 < 1e-5 or d1 < 1e-5 or not (math.isfinite(d0) and math.isfinite(d1)):
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    h0 = min(h0, span, dtmax)
    u1 = u0 + (tdir * h0) * f0
    f1 = f(u1, t0 + tdir * h0)
    if n != u0.shape[0]:
        f1 = f1[:n]
    d2 = rms_norm(xp, (f1 - f0_e) / sc, n) / h0
    dmax = max(d1, d2)
    if not math.isfinite(dmax):
        h1 = h0 * 1e-3
    elif dmax <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / dmax) ** (1.0 / (order + 1))
    return min(100 * h0, h1, span, dtmax)
