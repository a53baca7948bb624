"""Plugin: the continuous adjoint sensitivity methods ``BacksolveAdjoint``,
``InterpolatingAdjoint`` and ``QuadratureAdjoint`` (see :mod:`.methods`).

They work with any ODE solver family (each backward solve uses the forward solver) and any
backend (they use only the backend's array operations and :class:`autodiffeq.RHSDerivatives`).
``InterpolatingAdjoint`` is the reverse-mode fallback where ``DiscreteAdjoint`` does not apply
(Rosenbrock and stiffness-switching solvers); ``BacksolveAdjoint`` declares stiff problems
unsupported (re-integrating ``u`` backwards is unstable there) and is never chosen by default.
"""

from __future__ import annotations

from collections.abc import Callable

from autodiffeq import SensitivitySpec, hookimpl

from .methods import BacksolveAdjoint, ContinuousAdjoint, InterpolatingAdjoint, QuadratureAdjoint

_COMMON = ("abstol", "reltol", "autojacvec")
_SOURCES = (
    "Cao, Li, Petzold & Serban 2003, SIAM J. Sci. Comput. 24(3); Chen et al. 2018, Neural "
    "ODEs; SciMLSensitivity.jl"
)


@hookimpl
def autodiffeq_register_sensitivities(register: Callable[..., None]) -> None:
    register(
        SensitivitySpec(
            name="BacksolveAdjoint",
            factory=BacksolveAdjoint,
            mode="reverse",
            stiff=False,
            mass_matrix=False,
            options=(*_COMMON, "checkpointing"),
            default_priority=0,
            problem_types=("ODE", "SDE"),
            description="continuous adjoint re-solving u backwards with lambda and mu "
            "(augmented [u, lambda, mu]); unstable on stiff problems; on SDEs the stochastic "
            "adjoint on the same Brownian path (Li et al. 2020)",
            reference="Chen, Rubanova, Bettencourt & Duvenaud 2018 (Neural ODEs); "
            "SciMLSensitivity.jl BacksolveAdjoint",
        )
    )
    register(
        SensitivitySpec(
            name="InterpolatingAdjoint",
            factory=InterpolatingAdjoint,
            mode="reverse",
            stiff=True,
            mass_matrix=False,
            options=(*_COMMON, "checkpointing"),
            default_priority=8,
            description="continuous adjoint [lambda, mu] backwards with u(t) from the forward "
            "dense output (optionally checkpointed: stretches re-solved on demand)",
            reference=_SOURCES,
        )
    )
    register(
        SensitivitySpec(
            name="QuadratureAdjoint",
            factory=QuadratureAdjoint,
            mode="reverse",
            stiff=True,
            mass_matrix=False,
            options=_COMMON,
            default_priority=6,
            description="continuous adjoint lambda backwards with interpolated u(t), then "
            "dL/dp by Gauss-Legendre quadrature of lambda^T df/dp over both step grids",
            reference=_SOURCES,
        )
    )


__all__ = [
    "BacksolveAdjoint",
    "ContinuousAdjoint",
    "InterpolatingAdjoint",
    "QuadratureAdjoint",
]
