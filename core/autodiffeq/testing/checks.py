"""Conformance checks, usable with or without pytest.

Each ``check_*`` function takes a solver (name or spec), a backend name and optionally a
registry, runs one property against mathematics (analytic solutions, convergence orders), and
either returns a :class:`CheckReport` or raises :class:`ConformanceError` (an
``AssertionError``) saying what was measured and what was declared.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedCombination
from ..registry import Registry
from ..registry import registry as default_registry
from ..solve import solve
from ..specs import SolverSpec
from .problems import (
    ANALYTIC_PROBLEMS,
    ARRAY_LINEAR,
    LOGISTIC,
    SCALAR_LINEAR,
    AnalyticProblem,
)

ORDER_TOLERANCE = 0.25


class ConformanceError(AssertionError):
    """A plugin does not do what its capabilities declare."""


@dataclass
class CheckReport:
    """What a passing check measured."""

    check: str
    solver: str
    backend: str
    problem: str = ""
    measured: dict[str, Any] = field(default_factory=dict)


def _setup(solver: str | SolverSpec, backend: str, reg: Registry | None) -> tuple:
    reg = reg if reg is not None else default_registry()
    spec = reg.solver(solver)
    be = reg.get_backend(backend)
    return reg, spec, be


def _host(be: Any, x: Any) -> np.ndarray:
    return np.asarray(be.to_host(x), dtype=np.float64)


def _error(be: Any, u: Any, exact: np.ndarray) -> float:
    return float(np.max(np.abs(_host(be, u) - exact)))


def _fmt(values: Sequence[float], spec: str) -> list[str]:
    return [format(v, spec) for v in values]


def fit_order(steps: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of log(error) against log(step)."""
    x = np.log(np.asarray(steps, dtype=float))
    y = np.log(np.asarray(errors, dtype=float))
    return float(np.polyfit(x, y, 1)[0])


def _asymptotic_slope(
    run: Callable[[float], float], base: float, floor: float, max_halvings: int = 13
) -> tuple[list[float], list[float], float]:
    """Halve the step from ``base`` until the error falls below ``floor`` (rounding error) or
    three successive local slopes agree within 0.05; the order is the slope between the two
    smallest steps whose errors are both in ``[floor, 0.1]``: the pair nearest the asymptotic
    regime that rounding leaves intact."""
    steps: list[float] = []
    errors: list[float] = []
    h = base
    for _ in range(max_halvings):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # coarse steps may overflow: that is measured
            err = run(h)
        steps.append(h)
        errors.append(err)
        if err < floor:
            break
        if len(errors) >= 4 and all(floor <= e <= 1e-1 for e in errors[-4:]):
            slopes = [math.log2(errors[k] / errors[k + 1]) for k in range(-4, -1)]
            if max(slopes) - min(slopes) < 0.05:  # local slopes settled: asymptotic regime
                break
        h /= 2
    usable = [i for i, e in enumerate(errors) if floor <= e <= 1e-1 and math.isfinite(e)]
    pairs = [i for i in usable if i + 1 in usable]
    if not pairs:
        raise ConformanceError(
            f"could not measure an order: errors {_fmt(errors, '.2e')} for steps "
            f"{_fmt(steps, '.3g')} (need two successive ones in [{floor:.0e}, 0.1])"
        )
    i = pairs[-1]
    sel_s, sel_e = steps[i : i + 2], errors[i : i + 2]
    return steps, errors, fit_order(sel_s, sel_e)


def check_convergence_order(
    solver: str | SolverSpec,
    backend: str = "numpy",
    problem: AnalyticProblem = SCALAR_LINEAR,
    registry: Registry | None = None,
) -> CheckReport:
    """Fixed-step solves with halving ``dt``: the global error at ``t1`` must fall like
    ``dt**order`` with the declared order (slope within ``ORDER_TOLERANCE``)."""
    reg, spec, be = _setup(solver, backend, registry)
    prob = problem.make(be, np.float64, strict_input=True)
    t0, t1 = prob.tspan
    exact = problem.exact(t1)

    def run(h: float) -> float:
        n = max(1, round((t1 - t0) / h))
        sol = solve(
            prob, spec, dt=(t1 - t0) / n, adaptive=False, saveat=[t1], dense=False,
            backend=be.name, registry=reg,
        )
        if sol.retcode != "Success":
            return math.inf
        return _error(be, sol.u[-1, ...], exact)

    base = (t1 - t0) / 4
    scale = max(1.0, float(np.max(np.abs(exact))))
    steps, errors, slope = _asymptotic_slope(run, base, floor=3e-14 * scale)
    report = CheckReport("convergence", spec.name, be.name, problem.name,
                         {"order": slope, "steps": steps, "errors": errors})
    if abs(slope - spec.order) > ORDER_TOLERANCE:
        raise ConformanceError(
            f"{spec.name} on {be.name}, problem {problem.name}: measured convergence order "
            f"{slope:.2f} but the spec declares order {spec.order} (errors "
            f"{_fmt(errors, '.2e')} at dt {_fmt(steps, '.3g')})"
        )
    return report


def check_dense_order(
    solver: str | SolverSpec,
    backend: str = "numpy",
    problem: AnalyticProblem = LOGISTIC,
    registry: Registry | None = None,
    theta: float = 0.37,
) -> CheckReport:
    """One step of size ``h`` from the exact initial value; ``sol(t0 + theta h)`` must differ
    from the exact solution by ``O(h**(dense_order + 1))`` (the local order of the
    interpolant), measured by halving ``h``. The check is one-sided: an interpolant more
    accurate than declared passes (high-order interpolants often are, on smooth problems)."""
    reg, spec, be = _setup(solver, backend, registry)
    base_prob = problem.make(be, np.float64, strict_input=True)
    t0 = base_prob.tspan[0]

    def run(h: float) -> float:
        prob = base_prob.remake(tspan=(t0, t0 + h))
        sol = solve(prob, spec, dt=h, adaptive=False, backend=be.name, registry=reg,
                    dense=True)
        t = t0 + theta * h
        return _error(be, sol(t), problem.exact(t))

    steps, errors, slope = _asymptotic_slope(run, 1.0, floor=1e-13)
    expected = spec.dense_order + 1
    report = CheckReport("dense_order", spec.name, be.name, problem.name,
                         {"local_order": slope, "steps": steps, "errors": errors})
    if slope < expected - ORDER_TOLERANCE:
        raise ConformanceError(
            f"{spec.name} on {be.name}: the dense output's local error falls like "
            f"h^{slope:.2f}, but dense_order={spec.dense_order} declares h^{expected} "
            f"(errors {_fmt(errors, '.2e')} at h {_fmt(steps, '.3g')})"
        )
    return report


def check_adaptive_tolerance(
    solver: str | SolverSpec,
    backend: str = "numpy",
    problem: AnalyticProblem = LOGISTIC,
    registry: Registry | None = None,
) -> CheckReport:
    """Adaptive solves reach the accuracy their tolerances ask for, and tightening the
    tolerance by 10**4 improves the error by at least 10**2."""
    reg, spec, be = _setup(solver, backend, registry)
    if not spec.adaptive:
        raise UnsupportedCombination(f"{spec.name} is not adaptive")
    prob = problem.make(be, np.float64, strict_input=True)
    t1 = prob.tspan[1]
    exact = problem.exact(t1)
    scale = float(np.max(np.abs(exact)))
    tols = (1e-3, 1e-5, 1e-7)
    errors = []
    for tol in tols:
        sol = solve(prob, spec, rtol=tol, atol=tol * 1e-2, saveat=[t1], dense=False,
                    backend=be.name, registry=reg)
        if sol.retcode != "Success":
            raise ConformanceError(f"{spec.name}: retcode {sol.retcode} at rtol={tol}")
        err = _error(be, sol.u[-1, ...], exact)
        errors.append(err)
        if err > 100 * tol * scale:
            raise ConformanceError(
                f"{spec.name} on {be.name}: error {err:.2e} at rtol={tol:g} is more than 100x "
                f"the tolerance (problem {problem.name})"
            )
    if not errors[-1] <= errors[0] * 1e-2:
        raise ConformanceError(
            f"{spec.name} on {be.name}: tightening rtol from 1e-3 to 1e-7 only improved the "
            f"error from {errors[0]:.2e} to {errors[-1]:.2e}"
        )
    return CheckReport("adaptive_tolerance", spec.name, be.name, problem.name,
                       {"tolerances": tols, "errors": errors})


def _solve_options(spec: SolverSpec, span: float, digits: float = 8.0) -> dict[str, Any]:
    """Options for an accurate but affordable solve: adaptive solvers get
    ``rtol = 10**-min(digits, 2 order)``; fixed-step ones a step giving about 3 digits."""
    if spec.adaptive:
        rtol = 10.0 ** -min(digits, 2.0 * spec.order)
        return {"rtol": rtol, "atol": rtol * 1e-2}
    return {"adaptive": False, "dt": span * min(0.02, 10 ** (-3.0 / max(spec.order, 1)))}


def _tolerance_for(spec: SolverSpec, opts: Mapping[str, Any]) -> float:
    """The error a solve with :func:`_solve_options` must meet (generous: global error)."""
    if spec.adaptive:
        return 200.0 * opts["rtol"]
    return 2e-2


def check_saveat(
    solver: str | SolverSpec, backend: str = "numpy", registry: Registry | None = None
) -> CheckReport:
    """``sol.t`` is exactly the requested ``saveat`` times, and the saved states are accurate,
    both for an array of irregular times and for a spacing."""
    reg, spec, be = _setup(solver, backend, registry)
    problem = SCALAR_LINEAR
    prob = problem.make(be, np.float64, strict_input=True)
    t0, t1 = prob.tspan
    opts = _solve_options(spec, t1 - t0)
    tol = _tolerance_for(spec, opts)
    times = np.array([0.0, 0.1234567, 0.5, 1.0 / 3.0, 1.7, 2.0])
    times = np.sort(times)
    for request in (times, 0.3):
        sol = solve(prob, spec, saveat=request, backend=be.name, registry=reg, **opts)
        wanted = times if not np.isscalar(request) else np.append(np.arange(0, 2.0, 0.3), 2.0)
        if not np.array_equal(sol.t, wanted):
            raise ConformanceError(
                f"{spec.name}: saveat={request!r} gave sol.t={sol.t.tolist()}, "
                f"expected exactly {wanted.tolist()}"
            )
        host = _host(be, sol.u)
        for k, t in enumerate(wanted):
            err = float(np.max(np.abs(host[k] - problem.exact(t))))
            if err > tol:
                raise ConformanceError(
                    f"{spec.name}: saved state at t={t} has error {err:.2e} (> {tol:.0e})"
                )
    return CheckReport("saveat", spec.name, be.name, problem.name)


def check_backward(
    solver: str | SolverSpec, backend: str = "numpy", registry: Registry | None = None
) -> CheckReport:
    """Integration with ``t1 < t0`` reaches the exact value at ``t1``; times decrease."""
    reg, spec, be = _setup(solver, backend, registry)
    problem = ARRAY_LINEAR
    start = 2.0
    u_start = problem.exact(start)
    base = problem.make(be, np.float64, strict_input=True)
    prob = base.remake(
        u0=be.asarray(u_start, dtype=be.dtype(np.float64)), tspan=(start, 0.0)
    )
    opts = _solve_options(spec, start)
    sol = solve(prob, spec, backend=be.name, registry=reg, **opts)
    if sol.retcode != "Success":
        raise ConformanceError(f"{spec.name}: backward solve failed with {sol.retcode}")
    if not np.all(np.diff(sol.t) < 0) or sol.t[-1] != 0.0:
        raise ConformanceError(f"{spec.name}: backward solve times are not decreasing to 0")
    err = _error(be, sol.u[-1, ...], ARRAY_LINEAR.exact(0.0))
    tol = _tolerance_for(spec, opts)
    if err > tol:
        raise ConformanceError(f"{spec.name}: backward solve error {err:.2e} > {tol:.0e}")
    if sol.dense:
        mid = _error(be, sol(1.1), ARRAY_LINEAR.exact(1.1))
        if mid > tol:
            raise ConformanceError(f"{spec.name}: backward dense output error {mid:.2e}")
    return CheckReport("backward", spec.name, be.name, problem.name, {"error": err})


def check_float32(
    solver: str | SolverSpec, backend: str = "numpy", registry: Registry | None = None
) -> CheckReport:
    """A float32 ``u0`` gives a float32 solution (and dense output) of float32 accuracy."""
    reg, spec, be = _setup(solver, backend, registry)
    problem = LOGISTIC
    prob = problem.make(be, np.float32, strict_input=True)
    t1 = prob.tspan[1]
    opts = _solve_options(spec, t1, digits=5.0)
    sol = solve(prob, spec, backend=be.name, registry=reg, **opts)
    want = be.dtype(np.float32)
    if sol.u.dtype != want:
        raise ConformanceError(f"{spec.name}: float32 u0 gave sol.u of dtype {sol.u.dtype}")
    if sol.dense and sol(0.5 * t1).dtype != want:
        raise ConformanceError(f"{spec.name}: float32 dense output has dtype "
                               f"{sol(0.5 * t1).dtype}")
    err = _error(be, sol.u[-1, ...], problem.exact(t1))
    limit = max(2e-4, _tolerance_for(spec, opts))
    if err > limit:
        raise ConformanceError(f"{spec.name}: float32 solve error {err:.2e} > {limit}")
    return CheckReport("float32", spec.name, be.name, problem.name, {"error": err})


def check_no_host_leak(
    solver: str | SolverSpec, backend: str = "array_api_strict",
    registry: Registry | None = None,
) -> CheckReport:
    """On a strict backend, every array the solver hands to ``f`` and returns is the
    backend's own (the problem's ``f`` raises otherwise), through stepping, ``saveat``
    interpolation and dense output."""
    reg, spec, be = _setup(solver, backend, registry)
    for problem in ANALYTIC_PROBLEMS:
        prob = problem.make(be, np.float64, strict_input=True)
        t0, t1 = prob.tspan
        opts = _solve_options(spec, t1 - t0, digits=4.0)
        for kwargs in ({}, {"saveat": np.linspace(t0, t1, 7)}):
            sol = solve(prob, spec, backend=be.name, registry=reg, **opts, **kwargs)
            if not be.is_native(sol.u):
                raise ConformanceError(f"{spec.name}: sol.u is a {type(sol.u).__name__}, "
                                       f"not a {be.name} array")
            if sol.dense:
                value = sol(np.array([t0, 0.5 * (t0 + t1), t1]))
                if not be.is_native(value):
                    raise ConformanceError(f"{spec.name}: sol(t) returned {type(value)}")
    return CheckReport("no_host_leak", spec.name, be.name)


def check_unsupported(
    solver: str | SolverSpec, backend: str = "numpy", registry: Registry | None = None
) -> CheckReport:
    """What the spec declares unsupported raises :class:`UnsupportedCombination`: backends
    outside ``spec.backends`` or lacking required capabilities, problems with a mass matrix
    when ``mass_matrix=False``, and adaptive stepping without an error estimate."""
    reg, spec, be = _setup(solver, backend, registry)
    prob = SCALAR_LINEAR.make(be, np.float64)
    attempts: list[tuple[str, dict[str, Any], Any]] = []
    if not reg.compatible(spec, be.name, None, prob):
        attempts.append((f"backend {be.name}", {"dt": 0.1}, prob))
    if not spec.mass_matrix:
        n = 1
        mm = prob.remake(mass_matrix=np.eye(n))
        attempts.append(("mass matrix", {"dt": 0.1}, mm))
    if not spec.adaptive:
        attempts.append(("adaptive=True", {"adaptive": True, "dt": 0.1}, prob))
    for what, kwargs, problem in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                solve(problem, spec, backend=be.name, registry=reg, **kwargs)
        except UnsupportedCombination:
            continue
        raise ConformanceError(
            f"{spec.name}: {what} is declared unsupported but solve() did not raise "
            "UnsupportedCombination"
        )
    return CheckReport("unsupported", spec.name, be.name, measured={"checked": len(attempts)})


def check_events(
    solver: str | SolverSpec, backend: str = "numpy", registry: Registry | None = None
) -> CheckReport:
    """Events: the harmonic oscillator ``x' = v, v' = -x`` from ``(0, 1)`` with a continuous
    callback on ``x`` whose affect flips the state (``u -> -u``). The exact solution is
    ``(-1)^k (sin t, cos t)`` after the k-th event, and the events are at ``k pi`` (after a
    flip ``x`` only touches zero and turns back, so each root fires once). Checks the event
    times, the states recorded before each affect, the state at the end, the saved duplicate
    time, and a terminal event (``retcode == "Terminated"`` at ``2 pi``)."""
    from ..callbacks import ContinuousCallback

    reg, spec, be = _setup(solver, backend, registry)
    xp = be.xp
    dtype = be.dtype(np.float64)
    t_end = 7.0

    def f(u: Any, p: Any, t: float) -> Any:
        return xp.stack([u[1], -u[0]])

    from ..problems import ODEProblem

    prob = ODEProblem(f, be.asarray(np.array([0.0, 1.0]), dtype=dtype), (0.0, t_end))
    opts = _solve_options(spec, 2.0)  # fixed steps as on the other checks' span
    tol = _tolerance_for(spec, opts)
    flip = ContinuousCallback(lambda u, t: u[0], lambda u, t: -u)
    sol = solve(prob, spec, backend=be.name, registry=reg, callback=flip, **opts)
    exact_t = np.pi * np.arange(1, int(t_end / np.pi) + 1)
    got = np.asarray(sol.t_events[0])
    if sol.retcode != "Success" or got.shape != exact_t.shape:
        raise ConformanceError(
            f"{spec.name}: events at {got.tolist()} ({sol.retcode}), expected {len(exact_t)} "
            f"at k*pi"
        )
    err_t = float(np.max(np.abs(got - exact_t)))
    states = _host(be, sol.u_events[0])
    k = np.arange(len(exact_t))
    exact_states = np.stack([np.zeros_like(exact_t), np.cos(exact_t)], axis=1) * (
        (-1.0) ** k)[:, None]
    err_u = float(np.max(np.abs(states - exact_states)))
    final = _host(be, sol.u[-1, ...])
    sign = (-1.0) ** len(exact_t)
    err_end = float(np.max(np.abs(final - sign * np.array([np.sin(t_end), np.cos(t_end)]))))
    if max(err_t, err_u, err_end) > tol:
        raise ConformanceError(
            f"{spec.name}: event times off by {err_t:.2e}, event states by {err_u:.2e}, the "
            f"final state by {err_end:.2e} (> {tol:.0e})"
        )
    first = np.flatnonzero(sol.t == got[0])
    if len(first) != 2:
        raise ConformanceError(f"{spec.name}: the first event time is saved {len(first)} "
                               "times (expected twice: before and after the affect)")
    terminal = ContinuousCallback(lambda u, t: u[0], direction=1, terminal=True)
    sol = solve(prob, spec, backend=be.name, registry=reg, callback=terminal, **opts)
    if sol.retcode != "Terminated" or abs(float(sol.t[-1]) - 2 * np.pi) > tol:
        raise ConformanceError(
            f"{spec.name}: a terminal upward crossing of sin t should end the solve at 2 pi "
            f"with 'Terminated'; got {sol.retcode} at t={float(sol.t[-1])!r}"
        )
    return CheckReport("events", spec.name, be.name, "oscillator",
                       {"time_error": err_t, "state_error": err_u, "final_error": err_end})


def check_event_gradient(
    solver: str | SolverSpec, sensitivity: str, backend: str = "numpy",
    registry: Registry | None = None,
) -> CheckReport:
    """The derivative of an event time: ``u' = -p u``, ``u(0) = u0``, terminal event at
    ``u = 1/2`` is at ``t* = log(2 u0) / p``, so ``dt*/dp = -t*/p`` and
    ``dt*/du0 = 1/(p u0)``. ``autograd.grad`` of ``sol.t_events[0][0]`` through ``solve``
    with ``sensealg=sensitivity`` must match them to the solve's accuracy."""
    import autograd
    import autograd.numpy as anp

    from ..callbacks import ContinuousCallback
    from ..problems import ODEProblem

    reg, spec, be = _setup(solver, backend, registry)
    p0, u00 = 1.3, 1.7
    opts = _solve_options(spec, 2.0)
    if spec.adaptive:
        opts = {"rtol": 1e-8, "atol": 1e-10}
    tol = 50 * _tolerance_for(spec, opts)
    cb = ContinuousCallback(lambda u, t: u[0] - 0.5, terminal=True)

    def event_time(x: Any) -> Any:
        prob = ODEProblem(lambda u, p, t: -p[0] * u, anp.reshape(x[0:1], (1,)), (0.0, 2.0),
                          anp.reshape(x[1:2], (1,)))
        sol = solve(prob, spec, backend=be.name, registry=reg, callback=cb,
                    sensealg=sensitivity, **opts)
        return sol.t_events[0][0]

    x = np.array([u00, p0])
    got = np.asarray(autograd.grad(event_time)(x), dtype=np.float64)
    t_star = math.log(2 * u00) / p0
    exact = np.array([1.0 / (p0 * u00), -t_star / p0])
    err = float(np.max(np.abs(got - exact) / np.abs(exact)))
    if not err <= tol:
        raise ConformanceError(
            f"{spec.name} with {sensitivity}: d t*/d(u0, p) = {got.tolist()}, exact "
            f"{exact.tolist()} (relative error {err:.2e} > {tol:.0e})"
        )
    return CheckReport("event_gradient", spec.name, be.name, sensitivity, {"error": err})
