"""Plugin: sensitivity methods on the discrete solution — ``ReverseMode``, ``ForwardMode``
and ``DiscreteAdjoint`` (see :mod:`.methods`)."""

from __future__ import annotations

from collections.abc import Callable

from autodiffeq import SensitivitySpec, hookimpl

from .methods import DiscreteAdjoint, ForwardMode, ReverseMode

#: solver families whose steppers provide a traceable step map (Stepper.functional_step);
#: composite solvers (SolverSpec.composite) are differentiated when all their components
#: are of these families (the registry checks the components: nothing is named here), each
#: step by the component the driver recorded as having made it; SDE steppers are replayed
#: on the forward solve's Brownian path (:mod:`.sde_replay`)
FAMILIES = ("explicit_rk", "rosenbrock", "stochastic_rk")


@hookimpl
def autodiffeq_register_sensitivities(register: Callable[..., None]) -> None:
    register(
        SensitivitySpec(
            name="ReverseMode",
            factory=ReverseMode,
            mode="reverse",
            solver_families=FAMILIES,
            autograd_families=FAMILIES,  # traces every step: backends with "autograd" only
            problem_types=("ODE", "DDE", "SDE"),
            description="autograd's tape through every step of the solve (traceable f)",
            reference="Rackauckas & Innes 2019 (DiffEqFlux.jl), reverse mode through solvers",
        )
    )
    register(
        SensitivitySpec(
            name="ForwardMode",
            factory=ForwardMode,
            mode="forward",
            solver_families=FAMILIES,
            autograd_families=FAMILIES,  # traces every step: backends with "autograd" only
            default_priority=5,
            problem_types=("ODE", "DDE", "SDE"),
            description="autograd's forward mode through every step of the solve (traceable f)",
            reference="Rackauckas & Innes 2019 (DiffEqFlux.jl), forward mode",
        )
    )
    register(
        SensitivitySpec(
            name="DiscreteAdjoint",
            factory=DiscreteAdjoint,
            mode="reverse",
            solver_families=FAMILIES,
            options=("checkpoint_every", "autojacvec"),
            default_priority=10,
            autograd_families=("rosenbrock", "stochastic_rk"),
            events=True,
            problem_types=("ODE", "DDE", "SDE"),
            description="exact gradient of the discrete solution by transposed steps "
            "(tableau-derived for explicit RK; per-step autograd VJPs of the exact-Jacobian "
            "step for Rosenbrock), checkpointed, no global tape",
            reference="Sandu 2006, On the properties of Runge-Kutta discrete adjoints",
        )
    )


__all__ = ["DiscreteAdjoint", "ForwardMode", "ReverseMode", "FAMILIES"]
