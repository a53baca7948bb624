"""The solve pipeline: a validated :class:`~autodiffeq.request.SolveRequest` in, a
:class:`~autodiffeq.solution.Solution` out.

    request = build_request(...)                    # autodiffeq.request: validation
    prepared = request.problem_type.adapter.prepare(request)   # per problem type
    stepper = request.solver.factory(prepared.rhs, backend, **options)
    result = integrate(stepper, t0, t1, u0, f0, DriverOptions(...))   # autodiffeq.driver
    Solution(...)

Nothing here depends on the problem type: ODEs, and the types plugins register (SDE, DDE),
run through the same steps.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from .callbacks import EventHandler
from .driver import DriverOptions, IntegrationResult, integrate
from .errors import InvalidArgument, SolverWarning, StiffnessWarning
from .registry import Registry
from .request import PreparedSolve, SolveRequest, build_request, problem_type_of
from .solution import Solution, Stats

logger = logging.getLogger("autodiffeq")


def solve_request(prob: Any, alg: Any, options: dict[str, Any], alg_options: dict[str, Any],
                  reg: Registry) -> Solution:
    """Validate and run a solve whose inputs are plain values (not traced by autograd)."""
    return run(build_request(prob, alg, options, alg_options, reg, problem_type_of(reg, prob)))


def make_stepper(request: SolveRequest, prepared: PreparedSolve) -> Any:
    """The solver's stepper for a prepared solve (its ``rng`` seeded from ``request.seed``)."""
    spec, be = request.solver, request.backend
    try:
        stepper = spec.factory(prepared.rhs, be, **prepared.stepper_options,
                               **request.alg_options)
    except TypeError as exc:
        raise InvalidArgument(f"solver {spec.name!r} rejected its options: {exc}") from exc
    if request.seed is not None and "rng" in getattr(be, "capabilities", ()):
        stepper.rng = be.rng(request.seed)  # else made unseeded if a stepper draws
    if prepared.wrap_stepper is not None:
        stepper = prepared.wrap_stepper(stepper)
    return stepper


def run(request: SolveRequest) -> Solution:
    """Run a validated request through its problem type's adapter and the driver."""
    prepared = request.problem_type.adapter.prepare(request)
    stepper = make_stepper(request, prepared)
    events = None
    if request.callbacks:
        events = EventHandler(request.callbacks, request.shape, request.prob.p,
                              request.backend, request.dtype)
    opts = DriverOptions(
        rtol=request.rtol_b,
        atol=request.atol_b,
        adaptive=request.adaptive,
        dt=request.dt,
        dtmin=request.dtmin,
        dtmax=request.dtmax,
        maxiters=request.maxiters,
        saveat=request.saveat,
        tstops=request.tstops,
        save_everystep=request.saveat is None,
        dense=request.dense,
        progress=request.progress,
        controller=request.controller,
        norm=request.internalnorm,
        error_components=request.error_components,
        derivative=prepared.derivative,
        observers=tuple(request.observers) + tuple(prepared.observers),
        events=events,
        history_consumers=prepared.history_consumers,
        stop_consumers=prepared.stop_consumers,
    )
    result = integrate(stepper, request.t0, request.t1, prepared.u0, prepared.f0, opts,
                       _stiffness_warning(request))
    sol = build_solution(request, stepper, result)
    for name, value in prepared.solution_attrs.items():
        setattr(sol, name, value)
    return sol


def _stiffness_warning(request: SolveRequest) -> Any:
    reg, spec = request.registry, request.solver
    ptypes = {request.problem_type.name, *getattr(request.problem_type, "wraps", ())}

    def on_stiffness(message: str, t: float) -> None:
        stiff = [s.name for s in reg.solvers()
                 if s.stiff and ptypes.intersection(s.problem_types)]
        advice = (
            "a stiff solver would be faster and more robust: " + ", ".join(stiff)
            if stiff
            else "no stiff solver is registered; install or register one (e.g. Rodas5P)"
        )
        warnings.warn(
            f"{spec.name}: the problem looks stiff at t={t:.6g} ({message}); {advice}",
            StiffnessWarning,
            stacklevel=6,
        )

    return on_stiffness


def build_solution(request: SolveRequest, stepper: Any, result: IntegrationResult) -> Solution:
    """The :class:`Solution` of a finished integration."""
    import numpy as np

    be, shape, spec = request.backend, request.shape, request.solver
    xp = be.xp
    t_saved = np.asarray(result.t, dtype=np.float64)
    if result.u:
        u_saved = xp.reshape(xp.stack(result.u), (len(result.u), *shape))
    else:
        u_saved = xp.zeros((0, *shape), dtype=request.dtype)
    stats = Stats(
        nf=result.nf + 1,
        nsteps=result.naccept + result.nreject,
        naccept=result.naccept,
        nreject=result.nreject,
    )
    for key, value in stepper.stats.items():
        if key in ("nf", "nsteps", "naccept", "nreject"):
            continue
        if key in stats.keys() and key not in stats.extra:
            setattr(stats, key, value)
        else:
            stats.extra[key] = value
    history = result.history if result.history is not None and len(result.history) else None
    t0, t1 = request.t0, request.t1
    if result.retcode not in ("Success", "Terminated"):
        warnings.warn(
            f"{spec.name}: solve stopped at t={result.t_final:.10g} of [{t0:.10g}, {t1:.10g}] "
            f"with retcode {result.retcode!r} after {stats.nsteps} steps"
            + (" (the problem looks stiff)" if result.stiffness else ""),
            SolverWarning,
            stacklevel=4,
        )
    logger.debug("solve %s on %s: %s, stats %s", spec.name, be.name, result.retcode, stats)
    sol = Solution(
        t=t_saved,
        u=u_saved,
        retcode=result.retcode,
        stats=stats,
        alg=spec,
        prob=request.prob,
        backend=be,
        shape=shape,
        dense_output=history,
        options={"rtol": request.rtol, "atol": request.atol, "adaptive": request.adaptive,
                 "alg_options": request.alg_options},
    )
    if result.events is not None:
        sol.t_events, sol.u_events = result.events.events_by_callback(be)
        sol.events = result.events.records
    return sol
