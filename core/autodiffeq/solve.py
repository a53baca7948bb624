"""``solve``: one entry point for every problem type.

It only dispatches: a problem whose inputs autograd is differentiating goes to the gradient
interface (:mod:`autodiffeq.sensitivity`), any other through the pipeline
(:mod:`autodiffeq.request` validates, the problem type's adapter prepares,
:mod:`autodiffeq.driver` integrates; see :mod:`autodiffeq.pipeline`).
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidArgument, SolverWarning, StiffnessWarning
from .pipeline import solve_request
from .registry import Registry
from .request import SOLVE_OPTIONS, problem_type_of, resolve_registry
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
    trajectories: int | None = None,
    ensemble: str | None = None,
    batch_size: int | None = None,
    registry: Registry | None = None,
    **alg_options: Any,
) -> Any:
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
        trajectories, ensemble, batch_size: for an :class:`~autodiffeq.EnsembleProblem`
            (only): the number of trajectories, the executor's name (default
            ``"serial"``; ``autodiffeq plugins`` lists them) and the trajectories per batch
            (default: one batch); see :mod:`autodiffeq.ensemble`. The solve then returns an
            :class:`~autodiffeq.EnsembleSolution`; ``seed`` is the ensemble's root seed.
        registry: the :class:`Registry` to resolve names in (default: :func:`registry`).
        **alg_options: options of the solver (listed in its spec's ``options``), and of the
            ensemble executor (its spec's ``options``, e.g. ``client=`` for ``"dask"``).

    Returns:
        a :class:`Solution` (an :class:`~autodiffeq.EnsembleSolution` for an ensemble).
    """
    from .ensemble import EnsembleProblem, solve_ensemble

    options = dict(
        rtol=rtol, atol=atol, dt=dt, adaptive=adaptive, saveat=saveat, tstops=tstops,
        dense=dense, maxiters=maxiters, dtmin=dtmin, dtmax=dtmax, backend=backend,
        sensealg=sensealg, seed=seed, progress=progress, error_components=error_components,
        callback=callback, controller=controller, internalnorm=internalnorm,
        observers=observers, brownian=brownian,
    )
    if isinstance(prob, EnsembleProblem):
        if trajectories is None:
            raise InvalidArgument("solving an EnsembleProblem needs trajectories=N (the "
                                  "number of trajectories)")
        per_trajectory = {k: v for k, v in options.items() if k not in ("seed", "progress")}
        return solve_ensemble(prob, alg, trajectories, "serial" if ensemble is None
                              else ensemble, batch_size, seed, progress, per_trajectory,
                              dict(alg_options), registry)
    for name, value in (("trajectories", trajectories), ("ensemble", ensemble),
                        ("batch_size", batch_size)):
        if value is not None:
            raise InvalidArgument(f"{name}= is an option of ensemble solves: wrap the problem "
                                  f"in ade.EnsembleProblem(prob, ...) to solve many "
                                  f"trajectories")
    reg = resolve_registry(registry)
    ptype = problem_type_of(reg, prob)
    if ptype.adapter.traced(prob):
        from .sensitivity import solve_traced

        return solve_traced(prob, alg, options, alg_options, reg)
    return solve_request(prob, alg, options, alg_options, reg)
