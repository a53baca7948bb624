"""Test problems with analytic solutions, built on any backend.

Every right-hand side uses only arithmetic, ``@`` and Python-float functions of ``t``, so it
runs unchanged on NumPy, CuPy and ``array_api_strict``; with ``strict_input=True`` it also
checks that the solver hands it arrays of the backend's own type (no host leaks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..problems import ODEProblem


@dataclass(frozen=True)
class AnalyticProblem:
    """An ODE with a known solution.

    Attributes:
        name: identifier used in test ids.
        build: ``build(backend, dtype, strict_input) -> ODEProblem`` for ``tspan``.
        exact: ``exact(t) -> host ndarray`` of the solution (shape of ``u0``).
        tspan: default interval.
        description: the equation.
    """

    name: str
    build: Callable[..., ODEProblem]
    exact: Callable[[float], np.ndarray]
    tspan: tuple[float, float]
    description: str

    def make(
        self,
        backend: Any,
        dtype: Any = np.float64,
        tspan: tuple[float, float] | None = None,
        strict_input: bool = False,
    ) -> ODEProblem:
        """The problem on ``backend`` (a :class:`~autodiffeq.Backend`) with state ``dtype``."""
        prob = self.build(backend, np.dtype(dtype), strict_input)
        if tspan is not None:
            prob = prob.remake(tspan=tspan)
        return prob


def _guard(backend: Any, strict_input: bool, f: Callable[..., Any]) -> Callable[..., Any]:
    if not strict_input:
        return f

    def guarded(u: Any, p: Any, t: float) -> Any:
        if not backend.is_native(u):
            raise TypeError(
                f"host leak: the solver passed a {type(u).__module__}.{type(u).__name__} to f "
                f"on backend {backend.name!r}"
            )
        if not isinstance(t, float):
            raise TypeError(f"the solver passed t as {type(t).__name__}, expected float")
        return f(u, p, t)

    return guarded


# u' = lam u + sin(2t), u(0) = 1   (scalar, linear, non-autonomous)
_LAM = -1.3


def _scalar_linear(backend: Any, dtype: np.dtype, strict_input: bool) -> ODEProblem:
    def f(u: Any, p: Any, t: float) -> Any:
        return _LAM * u + math.sin(2.0 * t)

    u0 = backend.asarray(np.asarray(1.0, dtype=dtype), dtype=backend.dtype(dtype))
    return ODEProblem(_guard(backend, strict_input, f), u0, (0.0, 2.0))


def _scalar_linear_exact(t: float) -> np.ndarray:
    # particular solution -(lam sin 2t + 2 cos 2t) / (lam^2 + 4) plus the homogeneous part
    denom = _LAM**2 + 4.0
    particular = -(_LAM * math.sin(2 * t) + 2 * math.cos(2 * t)) / denom
    return np.asarray((1.0 + 2.0 / denom) * math.exp(_LAM * t) + particular)


SCALAR_LINEAR = AnalyticProblem(
    name="scalar_linear",
    build=_scalar_linear,
    exact=_scalar_linear_exact,
    tspan=(0.0, 2.0),
    description="u' = -1.3 u + sin(2t), u(0) = 1 (scalar, linear, non-autonomous)",
)


# Manufactured nonlinear scalar problem: u' = g(u) - g(v(t)) + v'(t) with g(u) = -u^3 and
# v(t) = 1 + sin(2t)/2, whose solution is u = v (every elementary differential of g appears).
def _v(t: float) -> float:
    return 1.0 + 0.5 * math.sin(2.0 * t)


def _scalar_nonlinear(backend: Any, dtype: np.dtype, strict_input: bool) -> ODEProblem:
    def f(u: Any, p: Any, t: float) -> Any:
        v = _v(t)
        return -(u * u * u) + (v * v * v + math.cos(2.0 * t))

    u0 = backend.asarray(np.asarray(1.0, dtype=dtype), dtype=backend.dtype(dtype))
    return ODEProblem(_guard(backend, strict_input, f), u0, (0.0, 2.0))


SCALAR_NONLINEAR = AnalyticProblem(
    name="scalar_nonlinear",
    build=_scalar_nonlinear,
    exact=lambda t: np.asarray(_v(t)),
    tspan=(0.0, 2.0),
    description="u' = -u^3 + v^3 + v', v = 1 + sin(2t)/2, u(0) = 1 (nonlinear; u = v)",
)

_A = np.array(
    [
        [-0.5, 1.0, 0.0, 0.2],
        [-1.0, -0.5, 0.3, 0.0],
        [0.0, -0.3, -0.2, 0.7],
        [0.1, 0.0, -0.7, -0.3],
    ]
)
_U0_ARRAY = np.array([[1.0, -0.5], [0.5, 0.25], [-1.0, 2.0], [0.3, 1.5]])


# u' = A u + sin(t) B,  u of shape (4, 2)  (array-shaped, non-autonomous, linear)
_B = np.array([[0.2, 0.0], [0.0, -0.3], [0.1, 0.1], [-0.2, 0.4]])


def _array_linear(backend: Any, dtype: np.dtype, strict_input: bool) -> ODEProblem:
    A = backend.asarray(_A.astype(dtype), dtype=backend.dtype(dtype))
    B = backend.asarray(_B.astype(dtype), dtype=backend.dtype(dtype))

    def f(u: Any, p: Any, t: float) -> Any:
        return A @ u + math.sin(t) * B

    u0 = backend.asarray(_U0_ARRAY.astype(dtype), dtype=backend.dtype(dtype))
    return ODEProblem(_guard(backend, strict_input, f), u0, (0.0, 2.0))


def _array_linear_exact(t: float) -> np.ndarray:
    # u(t) = e^{tA} u0 + int_0^t e^{(t-s)A} sin(s) B ds, with the integral in closed form:
    # int_0^t e^{(t-s)A} sin(s) ds = (A^2 + I)^{-1} (e^{tA} - cos(t) I - sin(t) A)
    from scipy.linalg import expm, solve

    eye = np.eye(4)
    E = expm(t * _A)
    forced = solve(_A @ _A + eye, E - math.cos(t) * eye - math.sin(t) * _A) @ _B
    return E @ _U0_ARRAY + forced


ARRAY_LINEAR = AnalyticProblem(
    name="array_linear",
    build=_array_linear,
    exact=_array_linear_exact,
    tspan=(0.0, 2.0),
    description="u' = A u + sin(t) B with u of shape (4, 2)",
)


# logistic u' = r u (1 - u), u(0) = 0.1, r = 2 -> u = 1 / (1 + 9 e^{-r t})   (scalar, nonlinear)
def _logistic(backend: Any, dtype: np.dtype, strict_input: bool) -> ODEProblem:
    def f(u: Any, p: Any, t: float) -> Any:
        return p * u * (1.0 - u)

    u0 = backend.asarray(np.asarray([0.1, 0.3], dtype=dtype), dtype=backend.dtype(dtype))
    return ODEProblem(_guard(backend, strict_input, f), u0, (0.0, 3.0), 2.0)


def _logistic_exact(t: float) -> np.ndarray:
    u0 = np.array([0.1, 0.3])
    return 1.0 / (1.0 + (1.0 / u0 - 1.0) * math.exp(-2.0 * t))


LOGISTIC = AnalyticProblem(
    name="logistic",
    build=_logistic,
    exact=_logistic_exact,
    tspan=(0.0, 3.0),
    description="u' = 2 u (1 - u), u(0) = [0.1, 0.3] (nonlinear)",
)

#: the problems of the convergence-order check (the issue's scalar linear, 4x2 array linear and
#: nonlinear scalar cases)
CONVERGENCE_PROBLEMS: tuple[AnalyticProblem, ...] = (
    SCALAR_LINEAR,
    ARRAY_LINEAR,
    SCALAR_NONLINEAR,
)
ANALYTIC_PROBLEMS: tuple[AnalyticProblem, ...] = (*CONVERGENCE_PROBLEMS, LOGISTIC)
