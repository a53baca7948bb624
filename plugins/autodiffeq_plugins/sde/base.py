"""What every SDE stepper shares: reading the step's noise from the path, counting the
diffusion evaluations, applying ``g`` to ``dW`` for each noise kind, and the one step formula
that serves both the solve and the pathwise gradients (see :mod:`autodiffeq.sde_terms`)."""

from __future__ import annotations

from typing import Any

from autodiffeq import Stepper


class SDEStepper(Stepper):
    """Base of the SDE steppers. A method implements :meth:`formula`: the step written with
    arithmetic operators only (so autograd can trace it for the pathwise gradients), from
    ``f(u, p, t)``, ``g(u, p, t)``, the parameters and the noise ``(dW, I_(1,0))``."""

    #: whether the method reads ``I_(1,0)`` (order-1.5 methods)
    uses_area = False

    def __init__(self, rhs: Any, backend: Any, **options: Any) -> None:
        super().__init__(rhs, backend, **options)
        self.general = rhs.noise == "general"
        self.stats["ng"] = 0
        self.want_error = True  #: compute the error estimate (adaptive solves)

    # ------------------------------------------------------------------ driver contract
    def step(self, t: float, u: Any, dt: float) -> tuple[Any, Any]:
        rhs = self.rhs
        noise = rhs.increments(t, dt)
        u_new, err = self.formula(self._count_f, self._count_g, u, rhs.p, t, dt, noise,
                                  self.want_error)
        return u_new, err

    def _count_f(self, u: Any, p: Any, t: float) -> Any:
        self.nf += 1
        return self.rhs.fp(u, p, t)

    def _count_g(self, u: Any, p: Any, t: float) -> Any:
        self.stats["ng"] += 1
        return self.rhs.gp(u, p, t)

    # ------------------------------------------------------------------ gradients
    def functional_sde_step(self, f: Any, g: Any, u: Any, p: Any, t: float, dt: float,
                            noise: tuple[Any, Any]) -> Any:
        """The step map ``u_new = Phi(u, p; t, dt, noise)`` with ``f(u, p, t)`` and
        ``g(u, p, t)`` given (flat), traceable by autograd; the same ``u_new`` as
        :meth:`step` on the same noise."""
        return self.formula(f, g, u, p, t, dt, noise, False)[0]

    # ------------------------------------------------------------------ helpers
    def formula(self, f: Any, g: Any, u: Any, p: Any, t: float, dt: float,
                noise: tuple[Any, Any], want_error: bool) -> tuple[Any, Any]:
        raise TypeError(f"{type(self).__name__} must implement formula()")

    def times_dw(self, gval: Any, dw: Any) -> Any:
        """``g dW``: elementwise for diagonal, scalar and additive noise, a matrix-vector
        product for general noise."""
        return gval @ dw if self.general else gval * dw

