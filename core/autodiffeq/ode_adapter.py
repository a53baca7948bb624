"""The ODE problem type: ``M du/dt = f(u, p, t)`` (:class:`~autodiffeq.ODEProblem`).

The adapter the registry holds for ``"ODE"`` problems: what they ask of solvers and sensitivity
methods (a mass matrix, as :class:`~autodiffeq.specs.Requirement` data), and the preparation of
a solve: the first call of ``f`` (checked for shape, dtype and array type), a consistent
initial state for mass-matrix problems (:mod:`autodiffeq.dae`) and the flat right-hand side
(:class:`~autodiffeq.stepper.RHS`).
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import Backend, parameters_on_backend
from .callbacks import time_first
from .errors import InvalidType, ShapeMismatch, SolverWarning
from .problems import ODEProblem
from .request import PreparedSolve, SolveRequest
from .specs import ProblemTypeSpec, Requirement
from .stepper import RHS
from .validation import array_namespace_of, contains_traced, is_traced

logger = logging.getLogger("autodiffeq")

_MASS_MATRIX = Requirement("mass_matrix", "a mass matrix (ODEProblem(mass_matrix=...))")
_MASS_MATRIX_SENS = Requirement("mass_matrix", "mass-matrix problems (DAEs)")


class ODEAdapter:
    """Prepares solves of :class:`~autodiffeq.ODEProblem` (see the module docstring)."""

    name = "ODE"

    def requirements(self, prob: Any) -> tuple[Requirement, ...]:
        return (_MASS_MATRIX,) if getattr(prob, "mass_matrix", None) is not None else ()

    def sensitivity_requirements(self, prob: Any) -> tuple[Requirement, ...]:
        return (_MASS_MATRIX_SENS,) if getattr(prob, "mass_matrix", None) is not None else ()

    def traced(self, prob: Any) -> bool:
        return is_traced(prob.u0) or contains_traced(prob.p)

    def prepare(self, request: SolveRequest) -> PreparedSolve:
        prob, be, dtype, shape = request.prob, request.backend, request.dtype, request.shape
        t0 = request.t0
        u0 = request.u0
        _warn_time_first(prob.f, shape)
        p = parameters_on_backend(prob.p, be)
        f0, convert = first_call(prob, u0, shape, be, dtype, t0, p)
        derivative = None
        if prob.mass_matrix is not None:
            from .dae import start_of_mass_matrix_problem

            u0_consistent, derivative = start_of_mass_matrix_problem(
                prob, be, dtype, u0, request.rtol, request.atol
            )
            if u0_consistent is not None:
                logger.info("mass-matrix problem: u0's algebraic components corrected to make "
                            "it consistent")
                u0 = u0_consistent
                f0, convert = first_call(prob, u0, shape, be, dtype, t0, p)
        rhs = RHS(prob.f, p, shape, dtype, be, prob, convert_output=convert,
                  registry=request.registry)
        return PreparedSolve(rhs=rhs, u0=u0, f0=f0, derivative=derivative)


_warned_time_first: set[int] = set()


def _warn_time_first(f: Any, shape: tuple[int, ...]) -> None:
    """SciPy/torchdiffeq order ``f(t, y, ...)`` passed where ``f(u, p, t)`` is expected solves
    another equation without an error (with a scalar state, ``u`` and ``t`` are both numbers):
    warn once per function when the first parameter is named like a time."""
    key = id(f)
    if key in _warned_time_first:
        return
    if time_first(f):
        _warned_time_first.add(key)
        params = list(inspect.signature(f).parameters)
        warnings.warn(
            f"f's first parameter is named {params[0]!r}: autodiffeq calls f(u, p, t) (SciML "
            "order: state, parameters, time), not f(t, y, ...) as SciPy and torchdiffeq do; "
            "reorder the parameters if f expects the time first",
            SolverWarning,
            stacklevel=6,
        )


ODE_PROBLEM_TYPE = ProblemTypeSpec(
    name="ODE",
    problem_class=ODEProblem,
    adapter=ODEAdapter(),
    description="ordinary differential equations M du/dt = f(u, p, t) (M: identity or a "
                "constant, possibly singular, mass matrix)",
    plugin="autodiffeq (core)",
)


def first_call(
    prob: Any, u0_flat: Any, shape: Sequence[int], be: Backend, dtype: Any, t0: float,
    p: Any = None, call: str = "f(u0, p, t0)",
) -> tuple[Any, bool]:
    """Call ``f(u0, p, t0)`` once and check what it returns; returns (f0_flat, convert).
    ``call`` is how an exception's note names the call (another problem type's form)."""
    xp = be.xp
    u0_shaped = u0_flat if len(shape) == 1 else xp.reshape(u0_flat, tuple(shape))
    try:
        out = prob.f(u0_shaped, prob.p if p is None else p, t0)
    except Exception as exc:
        exc.add_note(f"autodiffeq: raised by {call}, the first call of the right-hand side")
        raise
    convert = False
    if out is None:
        raise InvalidType(
            "f returned None; f(u, p, t) must return du/dt as an array (autodiffeq's "
            "right-hand sides are out-of-place)"
        )
    if is_traced(out):
        raise InvalidType(
            "f returned a value traced by autograd through a variable other than u0 and p "
            "(e.g. one captured from an enclosing function): solve differentiates with "
            "respect to u0 and p only, so pass that variable through p"
        )
    if not be.is_native(out):
        if isinstance(out, (np.ndarray, np.generic)) or array_namespace_of(out) is not None:
            raise InvalidType(
                f"f returned a {type(out).__module__}.{type(out).__name__} but backend "
                f"{be.name!r} works with {be.array_type_name()}; compute f with the array "
                "namespace of its input (xp = ade.array_namespace(u))"
            )
        try:
            host = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidType(
                f"f must return an array of numbers, got {type(out).__name__}: {out!r}"
            ) from None
        if host.shape != tuple(shape):
            raise ShapeMismatch(
                f"f returned shape {host.shape} but the state u0 has shape {tuple(shape)}"
            )
        convert = True
        return be.asarray(host.reshape(-1), dtype=dtype), convert
    got_shape = tuple(out.shape)
    if got_shape != tuple(shape):
        raise ShapeMismatch(
            f"f returned shape {got_shape} but the state u0 has shape {tuple(shape)}"
        )
    if out.dtype != dtype:
        raise ShapeMismatch(
            f"f returned dtype {be.host_dtype(out.dtype)} but the state has dtype "
            f"{be.host_dtype(dtype)}; f must return du/dt with u's dtype"
        )
    n = u0_flat.shape[0]
    return (out if len(shape) == 1 else xp.reshape(out, (n,))), convert
