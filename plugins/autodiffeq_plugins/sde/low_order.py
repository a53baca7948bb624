"""Low-order SDE methods: Euler–Maruyama, the stochastic Heun method and the derivative-free
Runge–Kutta Milstein method.

References: P. E. Kloeden and E. Platen, *Numerical Solution of Stochastic Differential
Equations*, Springer 1992 — §9.1 (Euler–Maruyama, strong order 0.5, 1.0 for additive noise),
§10.3 and §11.1 (Milstein and its derivative-free Runge–Kutta form, strong order 1.0 for
diagonal and scalar noise); W. Rümelin, "Numerical treatment of stochastic differential
equations", SIAM J. Numer. Anal. 19 (1982) (the Heun method for Stratonovich SDEs, strong order
1.0 for commutative noise, 0.5 in general).
"""

from __future__ import annotations

import math
from typing import Any

from .base import SDEStepper


class EulerMaruyama(SDEStepper):
    """Euler–Maruyama (Itô): ``u_new = u + f(u, t) h + g(u, t) dW``.

    Strong order 0.5 (1.0 for additive noise), weak order 1; every noise kind; no error
    estimate (fixed steps)."""

    def formula(self, f: Any, g: Any, u: Any, p: Any, t: float, dt: float,
                noise: tuple[Any, Any], want_error: bool) -> tuple[Any, Any]:
        dw = noise[0]
        return u + dt * f(u, p, t) + self.times_dw(g(u, p, t), dw), None


class EulerHeun(SDEStepper):
    """The stochastic Heun method (Stratonovich)::

        ub = u + f(u, t) h + g(u, t) dW
        u_new = u + (f(u, t) + f(ub, t + h)) h/2 + (g(u, t) + g(ub, t + h)) dW/2

    Strong order 1.0 for commutative noise (diagonal with ``g_i`` depending on ``u_i``,
    scalar, additive), 0.5 for general noise; weak order 1; no error estimate."""

    def formula(self, f: Any, g: Any, u: Any, p: Any, t: float, dt: float,
                noise: tuple[Any, Any], want_error: bool) -> tuple[Any, Any]:
        dw = noise[0]
        f0, g0 = f(u, p, t), g(u, p, t)
        ub = u + dt * f0 + self.times_dw(g0, dw)
        t1 = t + dt
        return (u + (0.5 * dt) * (f0 + f(ub, p, t1))
                + self.times_dw(0.5 * (g0 + g(ub, p, t1)), dw)), None


class RKMil(SDEStepper):
    """The derivative-free Runge–Kutta Milstein method (Kloeden & Platen 1992, (11.1.5)),
    diagonal and scalar noise, Itô or Stratonovich (the problem's interpretation)::

        K = u + f h,   ub = K + g sqrt(h) (Itô)  or  u + g sqrt(h) (Stratonovich)
        u_new = K + g dW + (g(ub) - g) / sqrt(h) * I,
        I = (dW^2 - h)/2 (Itô)  or  dW^2/2 (Stratonovich)

    Strong order 1.0, weak order 1. Error estimate (as StochasticDiffEq.jl's RKMil): the
    difference of the drift's trapezoidal and Euler parts plus the Milstein correction,
    ``h (f(K, t + h) - f)/2 + (g(ub) - g)/sqrt(h) I``."""

    def formula(self, f: Any, g: Any, u: Any, p: Any, t: float, dt: float,
                noise: tuple[Any, Any], want_error: bool) -> tuple[Any, Any]:
        dw = noise[0]
        sq = math.sqrt(dt)
        f0, g0 = f(u, p, t), g(u, p, t)
        k = u + dt * f0
        if self.rhs.interpretation == "ito":
            ub = k + sq * g0
            iterated = 0.5 * (dw * dw - dt)
        else:
            # from u, not K: (g(K + g sqrt(h)) - g)/sqrt(h) carries g' f sqrt(h), whose product
            # with dW^2/2 has mean g' f h^1.5 per step (a bias of order 0.5 over the solve)
            ub = u + sq * g0
            iterated = 0.5 * (dw * dw)
        correction = ((g(ub, p, t) - g0) / sq) * iterated
        u_new = k + g0 * dw + correction
        if not want_error:
            return u_new, None
        err = (0.5 * dt) * (f(k, p, t + dt) - f0) + correction
        return u_new, err
