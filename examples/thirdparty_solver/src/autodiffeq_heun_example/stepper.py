"""Heun's method with an embedded Euler error estimate, as an :class:`autodiffeq.Stepper`.

One step of size ``dt`` from ``(t, u)`` with ``k1 = f(u, t)``::

    k2    = f(u + dt k1, t + dt)
    u_new = u + dt/2 (k1 + k2)              # trapezoidal rule (Heun), order 2
    err   = u_new - (u + dt k1)             # minus the embedded Euler solution, order 1
          = dt/2 (k2 - k1)

The autodiffeq driver owns everything else (error norm, step-size control, saveat, tstops,
retcodes); the stepper only attempts steps. ``f(u_new)`` is evaluated when a step is accepted:
it is the next step's ``k1`` and the end-point slope of the cubic Hermite dense output.

All arithmetic goes through the backend's array namespace ``xp`` (never bare NumPy), so the
same code runs on NumPy, on CuPy and on the ``array_api_strict`` test backend.
"""

from __future__ import annotations

from typing import Any

import autodiffeq as ade


class HeunEulerStepper(ade.Stepper):
    """Heun 2(1) pair: second-order steps, first-order (Euler) error estimate."""

    order = 2
    error_order = 1

    def __init__(self, rhs: ade.RHS, backend: ade.Backend, **options: Any) -> None:
        super().__init__(rhs, backend, **options)  # the base class rejects unknown options
        xp = self.xp
        n, dtype = rhs.n, rhs.dtype
        # Buffers, allocated once per solve. K holds the rows [u, k1, k2] of the current step,
        # so that each stage sum is a single product with a row of coefficients.
        self.K = xp.zeros((3, n), dtype=dtype)
        # C @ K gives [stage state u + dt k1, u_new, err]: column 0 is the weight of u (fixed),
        # columns 1: are the weights of k1 and k2 (scaled by dt at each step).
        self.C = backend.asarray([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                                 dtype=dtype)
        self._weights = backend.asarray([[1.0, 0.0], [0.5, 0.5], [-0.5, 0.5]], dtype=dtype)
        self._dot = backend.dot
        self._f_new: Any = None  # f(u_new, t_new) of the last accepted step
        self._shift = False  # whether _f_new must become k1 before the next step

    def init(self, t0: float, u0: Any, f0: Any) -> None:
        self.K[1, ...] = f0  # f(u0, t0), already evaluated by the driver
        self._f_new = f0
        self._shift = False

    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        K, C = self.K, self.C
        if self._shift:  # first attempt after an accepted step: k1 = f(u_n)
            K[1, ...] = self._f_new
            self._shift = False
        K[0, ...] = u
        C[:, 1:] = self._weights * dt
        y = self._dot(C[0, :2], K[:2, ...])  # u + dt k1
        K[2, ...] = self.rhs.fp(y, self.rhs.p, t + dt)  # k2
        self.nf += 1
        update = self._dot(C[1:, :], K)  # (2, n), a fresh array: rows u_new and err
        return update[0, ...], update[1, ...]

    def accept(self, t_new: float, u_new: Any) -> None:
        self._f_new = self.rhs.fp(u_new, self.rhs.p, t_new)
        self.nf += 1
        self._shift = True

    def dense_data(self) -> Any:
        # [f(u_n), f(u_{n+1})] of the step just accepted; stack() returns a new array, which
        # the driver keeps (the buffers are overwritten by the next step).
        return self.xp.stack([self.K[1, ...], self._f_new])

    def interpolate(self, theta: Any, dt: Any, u0: Any, u1: Any, data: Any) -> Any:
        """Cubic Hermite interpolation from the values and slopes at both ends of each step
        (Hairer, Norsett & Wanner I, II.6). Vectorised over ``m`` steps at once."""
        th = theta[:, None]
        h = dt[:, None]
        th2 = th * th
        th3 = th2 * th
        f0 = data[:, 0, :]
        f1 = data[:, 1, :]
        return (
            u0
            + (3.0 * th2 - 2.0 * th3) * (u1 - u0)
            + h * ((th - 2.0 * th2 + th3) * f0 + (th3 - th2) * f1)
        )
