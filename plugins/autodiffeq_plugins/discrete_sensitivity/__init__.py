"""Plugin: sensitivity methods on the discrete solution — ``ReverseMode``, ``ForwardMode``
and ``DiscreteAdjoint`` (see :mod:`.methods`)."""

from __future__ import annotations

from collections.abc import Callable

from autodiffeq import SensitivitySpec, hookimpl

from .methods import DiscreteAdjoint, ForwardMode, ReverseMode

#: solver families whose steppers provide a traceable step map (Stepper.functional_step)
FAMILIES = ("explicit_rk", "rosenbrock")
#: DiscreteAdjoint also differentiates composites of those (the stiffness-switching solvers,
#: whose steppers name the component that made each step: ``components``, ``stepped``)
COMPOSITE_FAMILIES = ("autoswitch",)


@hookimpl
def autodiffeq_register_sensitivities(register: Callable[..., None]) -> None:
    register(
        SensitivitySpec(
            name="ReverseMode",
            factory=ReverseMode,
            mode="reverse",
            backends=("numpy",),
            solver_families=FAMILIES,
            description="autograd's tape through every step of the solve (traceable f)",
            reference="Rackauckas & Innes 2019 (DiffEqFlux.jl), reverse mode through solvers",
        )
    )
    register(
        SensitivitySpec(
            name="ForwardMode",
            factory=ForwardMode,
            mode="forward",
            backends=("numpy",),
            solver_families=FAMILIES,
            default_priority=5,
            description="autograd's forward mode through every step of the solve (traceable f)",
            reference="Rackauckas & Innes 2019 (DiffEqFlux.jl), forward mode",
        )
    )
    register(
        SensitivitySpec(
            name="DiscreteAdjoint",
            factory=DiscreteAdjoint,
            mode="reverse",
            solver_families=FAMILIES + COMPOSITE_FAMILIES,
            options=("checkpoint_every", "autojacvec"),
            default_priority=10,
            autograd_families=("rosenbrock", *COMPOSITE_FAMILIES),
            description="exact gradient of the discrete solution by transposed steps "
            "(tableau-derived for explicit RK; per-step autograd VJPs of the exact-Jacobian "
            "step for Rosenbrock), checkpointed, no global tape",
            reference="Sandu 2006, On the properties of Runge-Kutta discrete adjoints",
        )
    )


__all__ = ["COMPOSITE_FAMILIES", "DiscreteAdjoint", "ForwardMode", "ReverseMode", "FAMILIES"]
