"""Conformance checks for delay equations: any ODE solver the method of steps accepts, on any
backend, against delay equations with exact solutions.

Problems (both with exact solutions, every operation array-API only, so they run on NumPy,
CuPy and ``array_api_strict``):

- ``oscillatory``: ``u' = a u + B u(t - 1)`` for ``u = (Re z, Im z)``, the real form of
  ``z' = a z + b z(t - 1)`` with the history ``z(s) = exp(lam s)``, where ``lam = a + b
  exp(-lam)`` (``a = -1``, ``lam = -0.2 + 2i``, ``B`` the 2 x 2 matrix of multiplying by
  ``b``): the solution is ``exp(lam t)`` for every ``t``, smooth across ``t0``, so the
  convergence orders are the methods' own (a real exponential shows the pre-asymptotic
  slopes of Tsit5 and Vern7, 5.3 and 7.5, at every measurable step);
- ``polynomial``: ``u' = -u(t - 1)`` with ``h = 1``: the solution is the polynomial
  ``sum_{k=0}^{n} (-1)^k (t - k + 1)^k / k!`` on ``[n - 1, n]``, whose ``k``-th derivative jumps
  at ``t = k - 1``: the discontinuities the solver must step onto.

``check_dde_*`` functions raise :class:`~autodiffeq.testing.ConformanceError` or return a
:class:`~autodiffeq.testing.CheckReport`; :func:`dde_cases` lists them for the suite.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UnsupportedCombination
from ..problems import DDEProblem
from ..registry import Registry
from ..solve import solve
from ..specs import SolverSpec
from .checks import (
    ORDER_TOLERANCE,
    CheckReport,
    ConformanceError,
    _asymptotic_slope,
    _error,
    _fmt,
    _setup,
    _solve_options,
    _tolerance_for,
)

LAM = complex(-0.2, 2.0)
A_COEF = -1.0
_B = (LAM - A_COEF) * cmath.exp(LAM)  # lam = a + b exp(-lam)
B_MATRIX = ((_B.real, -_B.imag), (_B.imag, _B.real))


def _guarded(backend: Any, strict: bool, fn: Callable[..., Any]) -> Callable[..., Any]:
    if not strict:
        return fn

    def guarded(u: Any, h: Any, p: Any, t: float) -> Any:
        if not backend.is_native(u):
            raise TypeError(f"host leak: the solver passed a {type(u).__name__} to f on "
                            f"backend {backend.name!r}")
        got = fn(u, h, p, t)
        return got

    return guarded


def oscillatory_problem(backend: Any, dtype: Any = np.float64, t1: float = 4.0,
                        strict: bool = False) -> DDEProblem:
    """``u' = a u + B u(t-1)``, history ``exp(lam s)`` as a real pair; exact for all ``t``
    (module doc)."""
    xp = backend.xp
    dt = backend.dtype(np.dtype(dtype))
    B = xp.asarray(B_MATRIX, dtype=dt)

    def f(u: Any, h: Any, p: Any, t: float) -> Any:
        return A_COEF * u + B @ h(p, t - 1.0)

    def hist(p: Any, s: float) -> Any:
        return xp.asarray(oscillatory_exact(s).tolist(), dtype=dt)

    return DDEProblem(_guarded(backend, strict, f), None, hist, (0.0, t1), constant_lags=[1.0])


def oscillatory_exact(t: float) -> np.ndarray:
    z = cmath.exp(LAM * t)
    return np.array([z.real, z.imag])


def polynomial_problem(backend: Any, dtype: Any = np.float64, t1: float = 5.0,
                       strict: bool = False) -> DDEProblem:
    """``u' = -u(t-1)``, ``h = 1`` (module doc)."""
    xp = backend.xp
    dt = backend.dtype(np.dtype(dtype))

    def f(u: Any, h: Any, p: Any, t: float) -> Any:
        return -h(p, t - 1.0)

    def hist(p: Any, s: float) -> Any:
        return xp.ones((1,), dtype=dt)

    return DDEProblem(_guarded(backend, strict, f), None, hist, (0.0, t1), constant_lags=[1.0])


def polynomial_exact(t: float) -> np.ndarray:
    n = max(1, math.ceil(t))
    return np.array([sum((-1) ** k * (t - k + 1) ** k / math.factorial(k)
                         for k in range(n + 1))])


def check_dde_convergence(solver: str | SolverSpec, backend: str = "numpy",
                          registry: Registry | None = None) -> CheckReport:
    """Fixed steps ``dt = 1/m`` (the lag a multiple of them) on ``oscillatory``: the error at
    ``t1`` falls like ``dt**order`` (slope within ``ORDER_TOLERANCE`` of the declared
    order): the method of steps keeps the wrapped method's order."""
    reg, spec, be = _setup(solver, backend, registry)
    prob = oscillatory_problem(be, strict=True)
    t1 = prob.tspan[1]
    exact = oscillatory_exact(t1)

    def run(h: float) -> float:
        m = max(1, round(1.0 / h))
        sol = solve(prob, spec, dt=1.0 / m, adaptive=False, saveat=[t1], dense=False,
                    backend=be.name, registry=reg)
        if sol.retcode != "Success":
            return math.inf
        return _error(be, sol.u[-1, ...], exact)

    steps, errors, slope = _asymptotic_slope(run, 0.5, floor=3e-13)
    if abs(slope - spec.order) > ORDER_TOLERANCE:
        raise ConformanceError(
            f"{spec.name} on {be.name}, delay equation: measured order {slope:.2f} but the "
            f"spec declares {spec.order} (errors {_fmt(errors, '.2e')} at dt "
            f"{_fmt(steps, '.3g')})")
    return CheckReport("dde_convergence", spec.name, be.name, "oscillatory",
                       {"order": slope, "steps": steps, "errors": errors})


def check_dde_accuracy(solver: str | SolverSpec, backend: str = "numpy",
                       registry: Registry | None = None) -> CheckReport:
    """An accurate solve of ``polynomial`` (adaptive solvers at a tolerance their order
    affords, fixed-step ones at a small step) meets the accuracy asked for at every saved
    point, and ``sol.t`` contains the discontinuities ``t = 1, 2, ...`` up to the method's
    order (the solver stepped onto them)."""
    reg, spec, be = _setup(solver, backend, registry)
    prob = polynomial_problem(be, strict=True)
    t1 = prob.tspan[1]
    opts = _solve_options(spec, 1.0)
    sol = solve(prob, spec, backend=be.name, registry=reg, **opts)
    if sol.retcode != "Success":
        raise ConformanceError(f"{spec.name}: retcode {sol.retcode} on a delay equation")
    host = np.asarray(be.to_host(sol.u), dtype=np.float64)
    err = max(float(np.max(np.abs(host[k] - polynomial_exact(t))))
              for k, t in enumerate(sol.t))
    tol = _tolerance_for(spec, opts)
    if err > tol:
        raise ConformanceError(f"{spec.name} on {be.name}: delay-equation error {err:.2e} > "
                               f"{tol:.0e} ({opts})")
    wanted = [float(k) for k in range(1, min(int(t1), max(1, math.ceil(spec.order))) + 1)]
    missing = [t for t in wanted if not np.any(np.asarray(sol.t) == t)]
    if missing:
        raise ConformanceError(f"{spec.name}: sol.t lacks the discontinuities {missing} "
                               f"(t0 + k * lag up to the order {spec.order})")
    return CheckReport("dde_accuracy", spec.name, be.name, "polynomial",
                       {"error": err, "steps": len(sol.t) - 1})


def check_dde_saveat(solver: str | SolverSpec, backend: str = "numpy",
                     registry: Registry | None = None) -> CheckReport:
    """``saveat`` gives exactly the requested times, with accurate states, and a float32
    history and state give a float32 solution of float32 accuracy."""
    reg, spec, be = _setup(solver, backend, registry)
    times = np.array([0.0, 0.3, 1.0, 1.2345, 2.5, 4.0])
    for dtype, digits, floor in ((np.float64, 8.0, 0.0), (np.float32, 5.0, 2e-4)):
        prob = oscillatory_problem(be, dtype, strict=True)
        opts = _solve_options(spec, 1.0, digits)
        sol = solve(prob, spec, saveat=times, backend=be.name, registry=reg, **opts)
        if not np.array_equal(sol.t, times):
            raise ConformanceError(f"{spec.name}: saveat gave sol.t={sol.t.tolist()}")
        if sol.u.dtype != be.dtype(np.dtype(dtype)):
            raise ConformanceError(f"{spec.name}: a {np.dtype(dtype)} delay equation gave "
                                   f"sol.u of dtype {sol.u.dtype}")
        host = np.asarray(be.to_host(sol.u), dtype=np.float64)
        tol = max(floor, _tolerance_for(spec, opts))
        for k, t in enumerate(times):
            err = float(np.max(np.abs(host[k] - oscillatory_exact(t))))
            if err > tol:
                raise ConformanceError(f"{spec.name}: saved state at t={t} ({np.dtype(dtype)})"
                                       f" has error {err:.2e} > {tol:.0e}")
    return CheckReport("dde_saveat", spec.name, be.name, "oscillatory")


DDE_CHECKS: dict[str, Callable[..., CheckReport]] = {
    "dde_convergence": check_dde_convergence,
    "dde_accuracy": check_dde_accuracy,
    "dde_saveat": check_dde_saveat,
}


def dde_compatible(reg: Registry, spec: SolverSpec, backend: str) -> bool:
    """Whether the registry solves delay equations with ``spec`` on ``backend``."""
    if "DDE" not in {p.name for p in reg.problem_types()}:
        return False
    if reg.backend(backend).unavailable_reason() is not None:
        # a backend not usable here (no GPU): decided from its declared capabilities
        return bool(reg.compatible(spec, backend, None, "DDE"))
    try:
        prob = oscillatory_problem(reg.get_backend(backend))
    except UnsupportedCombination:
        return False
    return bool(reg.compatible(spec, backend, None, prob))
