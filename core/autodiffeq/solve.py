"""``solve``: one entry point for every problem type.

It only dispatches: a problem whose inputs autograd is differentiating goes to the gradient
interface (:mod:`autodiffeq.sensitivity`), any other through the pipeline
(:mod:`autodiffeq.request` validates, the problem type's adapter prepares,
:mod:`autodiffeq.driver` integrates; see :mod:`autodiffeq.pipeline`).
"""

from __future__ import annotations

from typing import Any

from .errors import SolverWarning, StiffnessWarning
from .pipeline import solve_request
from .registry import Registry
from .request import SOLVE_OPTIONS, problem_type_of, resolve_registry
from .solution import Solution
from .specs import SolverSpec

__all__ = ["solve", "SolverWarning", "StiffnessWarning", "SOLVE_OPTIONS"]


def solve(
    prob: Any,
    alg: str | SolverSpec | None = None,
    *,
    rtol: Any = 1e-3,
    atol: Any = 1e-6,
    dt: float | None = None,
    adaptive: bool | None = None,
    saveat: Any = None,
    tstops: Any = (),
    dense: bool | None = None,
    maxiters: int = 1_000_000,
    dtmin: float | None = None,
    dtmax: float | None = None,
    backend: str | None = None,
    sensealg: Any = None,
    seed: int | None = None,
    progress: bool = False,
    error_components: int | None = None,
    callback: Any = None,
    controller: Any = None,
    internalnorm: Any = None,
    observers: Any = (),
    brownian: Any = None,
    registry: Registry | None = None,
    **alg_options: Any,
) -> Solution:
    """Solve a differential-equation problem.

    Args:
        prob: the problem (:class:`~autodiffeq.ODEProblem`, or a problem type a plugin
            registers).
        alg: a registered solver name (``"Tsit5"``, ``"Vern7"``, ...), a
            :class:`~autodiffeq.SolverSpec`, or ``None`` for a default chosen by the
            problem and the tolerances.
        rtol, atol: relative and absolute tolerances (scalars or arrays of ``u0``'s shape).
        dt: initial step (adaptive) or the step (``adaptive=False``).
        adaptive: adaptive step-size control; default: whether the solver has an error
            estimate.
        saveat: a number (save every ``saveat`` from ``t0``, and at ``t1``) or an array of
            times inside ``tspan``, monotone in the direction of integration; ``sol.t`` is then
            exactly these times. Default: save every step.
        tstops: times the integrator must step to exactly (discontinuities).
        dense: keep dense output for ``sol(t)``; default ``saveat is None``.
        maxiters: maximum number of step attempts (then ``retcode="MaxIters"``).
        dtmin, dtmax: bounds on ``|dt|``.
        backend: array backend name (overrides :func:`config_context`, :func:`set_config`
            and ``AUTODIFFEQ_BACKEND``).
        sensealg: sensitivity method for gradients through the solve.
        seed: random seed (stochastic problems): an SDE solve draws its
            :class:`~autodiffeq.BrownianPath` from the backend's generator seeded with it, so
            the same seed gives the same solution bit for bit.
        progress: show a tqdm progress bar.
        error_components: the step-size control (error norm and starting step) uses only
            the first ``error_components`` entries of the flat state; the others are
            integrated on the steps those choose (default ``None``: all entries). For
            augmented systems such as forward sensitivities (``S' = J S + F_p`` carried along
            ``u`` on ``u``'s steps).
        callback: a :class:`~autodiffeq.ContinuousCallback`, a
            :class:`~autodiffeq.DiscreteCallback`, a :class:`~autodiffeq.CallbackSet` or a list
            of them (events; ``sol.t_events``/``sol.u_events`` record them).
        controller: the step-size controller: ``None`` (the solver's preference, else PI),
            ``"PI"``, ``"predictive"``, or a :class:`~autodiffeq.controller.Controller` class
            or instance.
        internalnorm: the error norm, an :class:`~autodiffeq.controller.ErrorNorm` (default:
            the weighted RMS norm over ``error_components`` entries).
        observers: step observers, objects with ``on_step(t, t_new, u, u_new, stepper,
            component)`` (and optionally ``on_jump(t, u_minus, u_plus, event)``), told of
            every accepted step (see :mod:`autodiffeq.driver`).
        brownian: an SDE solve's :class:`~autodiffeq.BrownianPath` (e.g. ``sol.W`` of an
            earlier solve): the solve reads its noise from it, whatever the solver and steps.
        registry: the :class:`Registry` to resolve names in (default: :func:`registry`).
        **alg_options: options of the solver (listed in its spec's ``options``).
    """
    reg = resolve_registry(registry)
    ptype = problem_type_of(reg, prob)
    options = dict(
        rtol=rtol, atol=atol, dt=dt, adaptive=adaptive, saveat=saveat, tstops=tstops,
        dense=dense, maxiters=maxiters, dtmin=dtmin, dtmax=dtmax, backend=backend,
        sensealg=sensealg, seed=seed, progress=progress, error_components=error_components,
        callback=callback, controller=controller, internalnorm=internalnorm,
        observers=observers, brownian=brownian,
    )
    if ptype.adapter.traced(prob):
        from .sensitivity import solve_traced

        return solve_traced(prob, alg, options, alg_options, reg)
    return solve_request(prob, alg, options, alg_options, reg)
