"""The contract between SDE steppers and the rest of autodiffeq.

An SDE solver's factory receives an :class:`SDERHS`: the drift as for an ODE (``rhs.f``,
``rhs.fp``) and

* ``rhs.g(u, t)`` / ``rhs.gp(u, p, t)``: the diffusion on the flat state, shape ``(n,)`` for
  diagonal, scalar and additive noise, ``(n, m)`` for general noise;
* ``rhs.noise`` (``"diagonal"``, ``"scalar"``, ``"additive"``, ``"general"``),
  ``rhs.interpretation`` (``"ito"``, ``"stratonovich"``) and ``rhs.m``, the size of ``W``
  (``n``, ``1`` or ``noise_dim``);
* ``rhs.path``: the solve's :class:`~autodiffeq.BrownianPath`. A step from ``t`` of size
  ``dt`` reads ``rhs.increments(t, dt)``: ``(dW, I_(1,0))`` on ``[t, t + dt]`` as flat arrays
  of the state's dtype. The path is fixed for the solve, so a rejected step's retry, the dense
  output and a gradient's replay read the same noise; the driver needs to know nothing of it.

Steppers also provide ``functional_sde_step(f, g, u, p, t, dt, noise)`` — the step map with
the noise ``(dW, I_(1,0))`` given and ``f(u, p, t)``, ``g(u, p, t)`` explicit in ``p``, written
with operators autograd can trace — for the pathwise gradient methods.
"""

from __future__ import annotations

from typing import Any

from .backend import Backend
from .stepper import RHS


class SDERHS(RHS):
    """The drift and diffusion of an SDE on the flat state (module docstring)."""

    __slots__ = ("g", "gp", "user_g", "noise", "interpretation", "m", "path")

    def __init__(self, user_f: Any, user_g: Any, p: Any, shape: tuple[int, ...], dtype: Any,
                 backend: Backend, problem: Any, path: Any, *, convert_f: bool = False,
                 convert_g: bool = False, registry: Any = None) -> None:
        super().__init__(user_f, p, shape, dtype, backend, problem, convert_output=convert_f,
                         registry=registry)
        self.user_g = user_g
        self.noise = problem.noise
        self.interpretation = problem.interpretation
        self.path = path
        self.m = 1 if self.noise == "scalar" else (
            int(problem.noise_dim) if self.noise == "general" else self.n)
        self.gp = flat_diffusion(user_g, shape, self.n, self.noise == "general" and self.m,
                                 dtype, backend, convert_g)
        gp = self.gp

        def g(u: Any, t: float) -> Any:
            return gp(u, p, t)

        self.g = g

    def increments(self, t: float, dt: float) -> tuple[Any, Any]:
        """``(dW, I_(1,0))`` on ``[t, t + dt]`` (flat, the state's dtype)."""
        return self.path.increment_and_integral(t, t + dt, self.dtype)


def flat_diffusion(g: Any, shape: tuple[int, ...], n: int, m: int | bool, dtype: Any,
                   backend: Backend, convert: bool) -> Any:
    """``g(u_flat, p, t)`` on the flat state: ``(n,)``, or ``(n, m)`` for general noise."""
    xp = backend.xp
    out_shape = (n, int(m)) if m else (n,)
    if len(shape) == 1 and not convert:
        return g
    if not convert:
        def gp(u: Any, p: Any, t: float) -> Any:
            return xp.reshape(g(xp.reshape(u, shape), p, t), out_shape)
    else:
        def gp(u: Any, p: Any, t: float) -> Any:
            return xp.reshape(xp.asarray(g(xp.reshape(u, shape), p, t), dtype=dtype),
                              out_shape)
    return gp
