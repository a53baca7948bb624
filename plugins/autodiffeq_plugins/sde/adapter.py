"""The SDE problem type: preparing a solve of :class:`autodiffeq.SDEProblem` for the driver.

``prepare`` checks ``f`` and ``g`` on their first call (``g``'s shape against the noise kind),
builds or validates the :class:`~autodiffeq.BrownianPath` (``solve(..., seed=...)`` or
``solve(..., brownian=W)``), and hands the steppers an :class:`~autodiffeq.sde_terms.SDERHS`.
The driver steps it like any other problem: the noise of a step is read from the path by the
stepper, so rejected steps and saves need nothing from the driver. The path is returned as
``sol.W``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from autodiffeq import BrownianPath, ODEProblem, Requirement
from autodiffeq.backend import parameters_on_backend
from autodiffeq.errors import InvalidArgument, InvalidType, ShapeMismatch
from autodiffeq.ode_adapter import first_call
from autodiffeq.request import PreparedSolve, SolveRequest
from autodiffeq.sde_terms import SDERHS
from autodiffeq.validation import array_namespace_of, contains_traced, is_traced

_NOISE = {
    kind: Requirement("noise_types", f"{kind} noise (SDEProblem(noise={kind!r}))", kind)
    for kind in ("diagonal", "scalar", "additive", "general")
}
_INTERPRETATION = {
    kind: Requirement("interpretations", f"the {kind.capitalize()} interpretation "
                      f"(SDEProblem(interpretation={kind!r}))", kind)
    for kind in ("ito", "stratonovich")
}


def _check_signature(fn: Any, name: str) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(None, None, None)
    except TypeError as exc:
        raise InvalidType(
            f"{name} must be callable as {name}(u, p, t) ({exc}); an SDE is "
            "du = f(u, p, t) dt + g(u, p, t) dW") from None


def first_diffusion(prob: Any, u0_flat: Any, shape: tuple[int, ...], be: Any, dtype: Any,
                    t0: float, p: Any) -> bool:
    """Call ``g(u0, p, t0)`` once and check its shape against the noise kind; returns whether
    its output must be converted to the backend."""
    xp = be.xp
    u0 = u0_flat if len(shape) == 1 else xp.reshape(u0_flat, shape)
    try:
        out = prob.g(u0, p, t0)
    except Exception as exc:
        exc.add_note("autodiffeq: raised by g(u0, p, t0), the first call of the diffusion")
        raise
    expected = prob.g_shape
    why = {"general": "(*u.shape, noise_dim) for noise='general'",
           "scalar": "u's shape for noise='scalar' (one Wiener process scales g)",
           }.get(prob.noise, f"u's shape for noise={prob.noise!r}")
    if out is None:
        raise InvalidType("g returned None; g(u, p, t) must return the diffusion as an array")
    if is_traced(out):
        raise InvalidType(
            "g returned a value traced by autograd through a variable other than u0 and p; "
            "pass that variable through p")
    convert = not be.is_native(out)
    if convert:
        if isinstance(out, (np.ndarray, np.generic)) or array_namespace_of(out) is not None:
            raise InvalidType(
                f"g returned a {type(out).__module__}.{type(out).__name__} but backend "
                f"{be.name!r} works with {be.array_type_name()}; compute g with the array "
                "namespace of its input (xp = ade.array_namespace(u))")
        try:
            out = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidType(f"g must return an array of numbers, got {out!r}") from None
    got = tuple(out.shape)
    if got != tuple(expected):
        raise ShapeMismatch(
            f"g returned shape {got}, expected {tuple(expected)}: {why}")
    if not convert and out.dtype != dtype:
        raise ShapeMismatch(
            f"g returned dtype {be.host_dtype(out.dtype)} but the state has dtype "
            f"{be.host_dtype(dtype)}; g must return u's dtype")
    return convert


def brownian_for(request: SolveRequest) -> BrownianPath:
    """The solve's path: ``brownian=`` checked against the problem, or a new one from
    ``seed``."""
    prob, be = request.prob, request.backend
    path = request.extra.get("brownian")
    shape = prob.noise_shape
    if path is None:
        return BrownianPath(prob.tspan, shape, seed=request.seed, backend=be)
    if not isinstance(path, BrownianPath):
        raise InvalidType(
            f"brownian must be an autodiffeq.BrownianPath (e.g. sol.W), got "
            f"{type(path).__name__}")
    if not path.covers(prob.tspan):
        raise InvalidArgument(
            f"brownian: the path spans {path.tspan}, which does not cover the problem's "
            f"tspan {prob.tspan}")
    if tuple(path.shape) != tuple(shape):
        raise ShapeMismatch(
            f"brownian: the path has shape {tuple(path.shape)}, but noise={prob.noise!r} "
            f"needs W of shape {tuple(shape)}")
    if path.backend.name != be.name:
        raise InvalidArgument(
            f"brownian: the path lives on backend {path.backend.name!r}, the solve on "
            f"{be.name!r}; make the path with backend={be.name!r}")
    if request.seed is not None:
        raise InvalidArgument("pass either seed= or brownian=, not both: the path fixes the "
                              "noise")
    return path


class SDEAdapter:
    """Prepares solves of :class:`~autodiffeq.SDEProblem` (module docstring)."""

    #: solves draw from a seeded Brownian path (ensembles give trajectory i the seed (seed, i))
    stochastic = True

    name = "SDE"

    def requirements(self, prob: Any) -> tuple[Requirement, ...]:
        return (_NOISE[prob.noise], _INTERPRETATION[prob.interpretation])

    def sensitivity_requirements(self, prob: Any) -> tuple[Requirement, ...]:
        return ()

    def traced(self, prob: Any) -> bool:
        return is_traced(prob.u0) or contains_traced(prob.p)

    def gradient_options(self, prob: Any, options: dict[str, Any], backend: Any
                         ) -> dict[str, Any]:
        """The options of a differentiated solve: without ``seed`` or ``brownian``, one path
        is made here, so that every solve the gradient method runs reads the same noise
        (pathwise derivatives)."""
        if options.get("brownian") is None and options.get("seed") is None:
            options = dict(options)
            options["brownian"] = BrownianPath(prob.tspan, prob.noise_shape, backend=backend)
        return options

    def prepare(self, request: SolveRequest) -> PreparedSolve:
        prob, be, dtype, shape = request.prob, request.backend, request.dtype, request.shape
        t0 = request.t0
        _check_signature(prob.f, "f")
        _check_signature(prob.g, "g")
        p = parameters_on_backend(prob.p, be)
        drift = ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
        f0, convert_f = first_call(drift, request.u0, shape, be, dtype, t0, p)
        convert_g = first_diffusion(prob, request.u0, shape, be, dtype, t0, p)
        path = brownian_for(request)
        rhs = SDERHS(prob.f, prob.g, p, shape, dtype, be, prob, path, convert_f=convert_f,
                     convert_g=convert_g, registry=request.registry)
        adaptive = request.adaptive

        def configure(stepper: Any) -> Any:
            if hasattr(stepper, "want_error"):  # fixed steps: no error estimate to compute
                stepper.want_error = adaptive
            return stepper

        saves = () if request.saveat is None else tuple(float(t) for t in request.saveat)

        def step_onto_saves(schedule: Any) -> None:
            # a saved state is a step's end, never an interpolation between steps (which
            # would not be a sample of the solution on the path)
            for t in saves:
                schedule.add(t, t0)

        return PreparedSolve(rhs=rhs, u0=request.u0, f0=f0, wrap_stepper=configure,
                             stop_consumers=(step_onto_saves,) if saves else (),
                             solution_attrs={"W": path})
