"""Conformance checks for SDE solvers, on any backend, against SDEs with exact solutions on the
kit's own :class:`~autodiffeq.BrownianPath`.

Problems (exact solutions in terms of ``W(t)`` on the path; many independent paths as the
components of one state, so one solve measures a mean over paths; array-API operations only):

- ``gbm`` (diagonal, Itô): ``du = mu u dt + sigma u dW``, ``u(t) = u0 exp((mu - sigma^2/2) t +
  sigma W(t))`` (Stratonovich: without the ``- sigma^2/2``);
- ``gbm_scalar`` (scalar noise): the same with one ``W`` for all components, measured over
  independent seeds;
- ``additive`` (additive, time-dependent): ``du = (b/(1+t) - u/(1+t)) dt + b/(1+t) dW``,
  ``u(t) = (u0 + b t + b W(t))/(1 + t)`` (Kloeden & Platen 1992, (4.4.3));
- ``linear_general`` (general noise, two Wiener processes, commuting): ``du = A u dt +
  sum_j B_j u dW_j`` with diagonal ``A``, ``B_j``: ``u(t) = exp((A - sum_j B_j^2/2) t + sum_j
  B_j W_j(t)) u0``.

Checks: the strong order on fixed steps (the least-squares slope of the mean error over paths
against ``dt``, at least the declared order for the noise kind minus :data:`ORDER_TOLERANCE`),
the weak order on the mean (the bias ``E[u_h(T)] - E[u(T)]`` estimated on the same paths),
adaptive solves getting more accurate as the tolerance tightens, determinism under ``seed``
and reuse of ``sol.W``, path consistency (an adaptive solve equals fine fixed steps on its path
as ``dt -> 0``), float32, and ``UnsupportedCombination`` for undeclared noise kinds and
interpretations. On test-only backends ``f`` and ``g`` refuse host arrays (no host leaks).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..brownian import BrownianPath
from ..errors import UnsupportedCombination
from ..problems import INTERPRETATIONS, NOISE_KINDS, SDEProblem
from ..registry import Registry
from ..solve import solve
from ..specs import SolverSpec
from .checks import CheckReport, ConformanceError, _fmt, _setup, fit_order

#: the measured strong or weak order may fall short of the declared one by this much
ORDER_TOLERANCE = 0.2
#: errors below this are rounding: the method is exact on the problem
ROUNDING_FLOOR = 1e-12
#: independent paths (state components) per solve
PATHS = 2000
#: scalar and general noise drive every component with one W: independent paths are
#: separate solves, one per seed. The fitted order's sampling spread shrinks like
#: 1/sqrt(seeds); at 16 seeds SRIW1's scalar-noise order scattered by about +-0.15 between
#: random streams (1.29 to 1.43 for a declared 1.5), at 64 seeds within the tolerance.
SCALAR_SEEDS = 64
GENERAL_SEEDS = 16
MU, SIGMA = 1.5, 0.5
ADDITIVE_B = 0.7
GENERAL_A = (-1.0, 0.5, -0.3)
GENERAL_B = ((0.3, 0.1), (0.2, 0.4), (0.5, 0.25))


def _guard(be: Any, strict: bool, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    if not strict:
        return fn

    def guarded(u: Any, p: Any, t: float) -> Any:
        if not be.is_native(u):
            raise TypeError(f"host leak: the solver passed a {type(u).__name__} to {name} on "
                            f"backend {be.name!r}")
        return fn(u, p, t)

    return guarded


def sde_problem(kind: str, be: Any, dtype: Any = np.float64, paths: int = PATHS,
                interpretation: str = "ito", strict: bool = False) -> SDEProblem:
    """The kit's problem for a noise kind (module docstring), on backend ``be``."""
    xp = be.xp
    dt_ = be.dtype(np.dtype(dtype))
    if kind in ("diagonal", "scalar"):
        u0 = be.asarray(np.linspace(0.5, 1.5, paths).astype(dtype), dtype=dt_)

        def f(u: Any, p: Any, t: float) -> Any:
            return MU * u

        def g(u: Any, p: Any, t: float) -> Any:
            return SIGMA * u
    elif kind == "additive":
        u0 = be.asarray(np.linspace(-1.0, 1.0, paths).astype(dtype), dtype=dt_)

        def f(u: Any, p: Any, t: float) -> Any:
            return (ADDITIVE_B - u) / (1.0 + t)

        def g(u: Any, p: Any, t: float) -> Any:
            return xp.full(u.shape, ADDITIVE_B / (1.0 + t), dtype=u.dtype)
    elif kind == "general":
        u0 = be.asarray(np.ones(len(GENERAL_A)).astype(dtype), dtype=dt_)
        a = be.asarray(np.asarray(GENERAL_A, dtype=dtype), dtype=dt_)
        b = be.asarray(np.asarray(GENERAL_B, dtype=dtype), dtype=dt_)

        def f(u: Any, p: Any, t: float) -> Any:
            return a * u

        def g(u: Any, p: Any, t: float) -> Any:
            return b * u[:, None]
    else:
        raise ValueError(f"no kit problem for noise {kind!r}")
    return SDEProblem(_guard(be, strict, f, "f"), _guard(be, strict, g, "g"), u0, (0.0, 1.0),
                      noise=kind, noise_dim=2 if kind == "general" else None,
                      interpretation=interpretation)


def sde_exact(prob: SDEProblem, W: BrownianPath, t: float) -> np.ndarray:
    """The exact solution of a kit problem at ``t`` on the path ``W`` (host, float64)."""
    be = W.backend
    w = np.asarray(be.to_host(W(t)), dtype=np.float64)
    u0 = np.asarray(be.to_host(prob.u0), dtype=np.float64)
    ito = prob.interpretation == "ito"
    if prob.noise in ("diagonal", "scalar"):
        return u0 * np.exp((MU - (0.5 * SIGMA ** 2 if ito else 0.0)) * t + SIGMA * w)
    if prob.noise == "additive":
        return (u0 + ADDITIVE_B * t + ADDITIVE_B * w) / (1.0 + t)
    a = np.asarray(GENERAL_A)
    b = np.asarray(GENERAL_B)
    drift = a - (0.5 * np.sum(b ** 2, axis=1) if ito else 0.0)
    return u0 * np.exp(drift * t + b @ w)


def _interpretation(spec: SolverSpec) -> str:
    return "ito" if "ito" in spec.interpretations else spec.interpretations[0]


def _kinds(spec: SolverSpec) -> list[str]:
    return [k for k in NOISE_KINDS if k in spec.noise_types]


STEPS = [2.0 ** -k for k in range(3, 9)]


#: the weak order is measured at coarse steps, where the bias is far above the Monte Carlo
#: error of its estimate on WEAK_PATHS paths
WEAK_STEPS = [2.0 ** -k for k in range(1, 6)]
WEAK_PATHS = 20_000
#: weak orders above this are beyond the statistical floor of WEAK_PATHS paths
WEAK_ORDER_CAP = 2.0


def _errors(spec: SolverSpec, be: Any, reg: Registry, kind: str, strict: bool,
            weak: bool = False) -> tuple[list[float], list[float]]:
    """Mean (strong) or mean signed (weak) errors at ``t = 1`` over paths, per step."""
    seeds = (range(SCALAR_SEEDS) if kind == "scalar" and not weak
             else range(GENERAL_SEEDS) if kind == "general" and not weak else (0,))
    steps = WEAK_STEPS if weak else STEPS
    per_step = np.zeros(len(steps))
    for seed in seeds:
        paths = WEAK_PATHS if weak else (8 if kind == "scalar" else PATHS)
        prob = sde_problem(kind, be, interpretation=_interpretation(spec), strict=strict,
                           paths=paths)
        W = BrownianPath(prob.tspan, prob.noise_shape, seed=seed, backend=be)
        exact = sde_exact(prob, W, 1.0)
        for i, h in enumerate(steps):
            sol = solve(prob, spec, dt=h, adaptive=False, brownian=W, saveat=[1.0],
                        backend=be.name, registry=reg)
            if sol.retcode != "Success":
                raise ConformanceError(f"{spec.name}: retcode {sol.retcode} at dt={h}")
            diff = np.asarray(be.to_host(sol.u[-1, ...]), dtype=np.float64) - exact
            per_step[i] += abs(float(np.mean(diff))) if weak else float(np.mean(np.abs(diff)))
    return steps, list(per_step / len(seeds))


def check_sde_strong_order(solver: str | SolverSpec, backend: str = "numpy",
                           registry: Registry | None = None) -> CheckReport:
    """For every noise kind the solver declares: fixed steps ``dt = 2^-3 .. 2^-8`` on the
    kit's problem and path; the mean error at ``t = 1`` falls at least like
    ``dt**(strong order - ORDER_TOLERANCE)``."""
    reg, spec, be = _setup(solver, backend, registry)
    measured = {}
    for kind in _kinds(spec):
        steps, errors = _errors(spec, be, reg, kind, be.name == "array_api_strict")
        if max(errors) < ROUNDING_FLOOR:  # exact on this problem (Heun on linear drift)
            measured[kind] = math.inf
            continue
        slope = fit_order(steps, errors)
        declared = spec.strong_order(kind)
        if slope < declared - ORDER_TOLERANCE:
            raise ConformanceError(
                f"{spec.name} on {be.name}, {kind} noise: measured strong order {slope:.2f} "
                f"but the spec declares {declared} (mean errors {_fmt(errors, '.2e')} at dt "
                f"{_fmt(steps, '.3g')})")
        measured[kind] = slope
    return CheckReport("sde_strong_order", spec.name, be.name, ",".join(measured), measured)


def check_sde_weak_order(solver: str | SolverSpec, backend: str = "numpy",
                         registry: Registry | None = None) -> CheckReport:
    """On ``gbm`` (or ``additive`` for additive-only solvers): the bias of the mean,
    ``|mean(u_h(1) - u(1))|`` over 20,000 paths at ``dt = 2^-1 .. 2^-5``, falls between the two
    smallest steps at least like ``dt**(min(weak order, 2) - ORDER_TOLERANCE)``. The bias is
    estimated on the same paths as the exact solution, so the Monte Carlo error is that of the
    difference, not of the mean itself; weak orders above 2 (SRIW2's 3) are beyond what that
    resolves and are checked as 2."""
    reg, spec, be = _setup(solver, backend, registry)
    kind = "diagonal" if "diagonal" in spec.noise_types else _kinds(spec)[0]
    steps, errors = _errors(spec, be, reg, kind, False, weak=True)
    if max(errors) < ROUNDING_FLOOR:
        return CheckReport("sde_weak_order", spec.name, be.name, kind, {"order": math.inf})
    slope = fit_order(steps[-2:], errors[-2:])
    if spec.weak_order is not None and slope < min(spec.weak_order,
                                                   WEAK_ORDER_CAP) - ORDER_TOLERANCE:
        raise ConformanceError(
            f"{spec.name} on {be.name}: measured weak order {slope:.2f} but the spec declares "
            f"{spec.weak_order} (biases {_fmt(errors, '.2e')} at dt {_fmt(steps, '.3g')})")
    return CheckReport("sde_weak_order", spec.name, be.name, kind, {"order": slope})


def check_sde_adaptive(solver: str | SolverSpec, backend: str = "numpy",
                       registry: Registry | None = None) -> CheckReport:
    """Adaptive solves at ``rtol = atol = 1e-2, 1e-3`` on one path: the mean error falls
    with the tolerance (by at least 2x over the decade), and fine fixed steps on the path the
    adaptive solves refined (with their rejections) meet the exact solution on it (path
    consistency: every step, accepted or retried, read one path)."""
    reg, spec, be = _setup(solver, backend, registry)
    kind = "diagonal" if "diagonal" in spec.noise_types else _kinds(spec)[0]
    prob = sde_problem(kind, be, paths=50, interpretation=_interpretation(spec))
    W = BrownianPath(prob.tspan, prob.noise_shape, seed=5, backend=be)
    exact = sde_exact(prob, W, 1.0)
    errors = []
    for tol in (1e-2, 1e-3):
        sol = solve(prob, spec, rtol=tol, atol=tol, brownian=W, backend=be.name, registry=reg)
        if sol.retcode != "Success":
            raise ConformanceError(f"{spec.name}: adaptive retcode {sol.retcode} at rtol {tol}")
        got = np.asarray(be.to_host(sol.u[-1, ...]), dtype=np.float64)
        errors.append(float(np.mean(np.abs(got - exact))))
    if not errors[-1] * 2 < errors[0]:
        raise ConformanceError(
            f"{spec.name} on {be.name}: adaptive errors {_fmt(errors, '.2e')} at rtol 1e-2 and "
            "1e-3 do not fall with the tolerance")
    fine = solve(prob, spec, dt=2.0 ** -10, adaptive=False, brownian=W, saveat=[1.0],
                 backend=be.name, registry=reg)
    gap = float(np.mean(np.abs(np.asarray(be.to_host(fine.u[-1, ...])) - exact)))
    if gap > errors[-1] and gap > 1e-3:
        raise ConformanceError(
            f"{spec.name}: fine fixed steps on the adaptive solve's path miss the exact "
            f"solution by {gap:.2e}: the path the steps read is not one path")
    return CheckReport("sde_adaptive", spec.name, be.name, kind, {"errors": errors})


def check_sde_determinism(solver: str | SolverSpec, backend: str = "numpy",
                          registry: Registry | None = None) -> CheckReport:
    """The same ``seed`` gives the same bits; ``brownian=sol.W`` reproduces the solve; float32
    stays float32 and meets float32 accuracy at a coarse step."""
    reg, spec, be = _setup(solver, backend, registry)
    kind = _kinds(spec)[0]
    interp = _interpretation(spec)
    prob = sde_problem(kind, be, paths=50, interpretation=interp)
    opts: dict[str, Any] = ({"rtol": 1e-3, "atol": 1e-3} if spec.adaptive
                            else {"dt": 2.0 ** -6, "adaptive": False})
    a = solve(prob, spec, seed=123, backend=be.name, registry=reg, **opts)
    b = solve(prob, spec, seed=123, backend=be.name, registry=reg, **opts)
    c = solve(prob, spec, brownian=a.W, backend=be.name, registry=reg, **opts)
    ha, hb, hc = (np.asarray(be.to_host(s.u)) for s in (a, b, c))
    if not (np.array_equal(a.t, b.t) and np.array_equal(ha, hb)):
        raise ConformanceError(f"{spec.name}: two solves with seed=123 differ")
    if not (np.array_equal(a.t, c.t) and np.array_equal(ha, hc)):
        raise ConformanceError(f"{spec.name}: a solve with brownian=sol.W differs from sol")
    p32 = sde_problem(kind, be, np.float32, paths=50, interpretation=interp)
    W = BrownianPath(p32.tspan, p32.noise_shape, seed=1, backend=be)
    s32 = solve(p32, spec, dt=2.0 ** -6, adaptive=False, brownian=W, saveat=[1.0],
                backend=be.name, registry=reg)
    if s32.u.dtype != be.dtype(np.dtype(np.float32)):
        raise ConformanceError(f"{spec.name}: a float32 SDE gave sol.u of dtype {s32.u.dtype}")
    p64 = sde_problem(kind, be, np.float64, paths=50, interpretation=interp)
    s64 = solve(p64, spec, dt=2.0 ** -6, adaptive=False, brownian=W, saveat=[1.0],
                backend=be.name, registry=reg)
    h32 = np.asarray(be.to_host(s32.u[-1, ...]), dtype=np.float64)
    h64 = np.asarray(be.to_host(s64.u[-1, ...]), dtype=np.float64)
    gap = float(np.max(np.abs(h32 - h64) / np.maximum(np.abs(h64), 1.0)))
    if not math.isfinite(gap) or gap > 1e-4:
        raise ConformanceError(f"{spec.name}: float32 and float64 solves on one path differ by "
                               f"{gap:.2e} (relative), beyond float32 rounding")
    return CheckReport("sde_determinism", spec.name, be.name, kind, {"float32_gap": gap})


def check_sde_unsupported(solver: str | SolverSpec, backend: str = "numpy",
                          registry: Registry | None = None) -> CheckReport:
    """Every noise kind and interpretation the solver does not declare raises
    :class:`UnsupportedCombination` naming solvers that fit."""
    reg, spec, be = _setup(solver, backend, registry)
    refused = []
    for kind in NOISE_KINDS:
        for interp in INTERPRETATIONS:
            if kind in spec.noise_types and interp in spec.interpretations:
                continue
            prob = sde_problem(kind, be, paths=4, interpretation=interp)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    solve(prob, spec, dt=0.1, adaptive=False, seed=1, backend=be.name,
                          registry=reg)
            except UnsupportedCombination:
                refused.append(f"{kind}/{interp}")
                continue
            raise ConformanceError(
                f"{spec.name} does not declare {kind} noise with the {interp} interpretation, "
                "but solving such a problem raised no UnsupportedCombination")
    return CheckReport("sde_unsupported", spec.name, be.name, "", {"refused": refused})


SDE_CHECKS: dict[str, Callable[..., CheckReport]] = {
    "sde_strong_order": check_sde_strong_order,
    "sde_weak_order": check_sde_weak_order,
    "sde_adaptive": check_sde_adaptive,
    "sde_determinism": check_sde_determinism,
    "sde_unsupported": check_sde_unsupported,
}


def sde_checks_for(spec: SolverSpec) -> dict[str, Callable[..., CheckReport]]:
    """The checks that apply to ``spec`` (the adaptive one only for adaptive solvers)."""
    return {name: fn for name, fn in SDE_CHECKS.items()
            if name != "sde_adaptive" or spec.adaptive}
