"""Automatic stiffness switching: composite solvers such as ``AutoTsit5Rodas5P`` that run a
non-stiff method while the problem is non-stiff and a stiff one while it is stiff (the idea of
OrdinaryDiffEq's ``AutoSwitch``; Shampine 1977 for the stiffness test).

The components are ordinary registered solvers, looked up by name in the registry of the solve
(``rhs.registry``), so this plugin uses only the core's contracts. A composite registers even
when a component is missing; solving with it then raises :class:`UnsupportedCombination`.
"""

from __future__ import annotations

import functools
from typing import Any

import autodiffeq as ade

FAMILY = "autoswitch"

#: (name, non-stiff component, stiff component, order, error order, dense order): components of
#: equal order, so the composite's declared orders hold whichever component is active
COMPOSITES = (("AutoTsit5Rodas5P", "Tsit5", "Rodas5P", 5, 4, 4),)


def _make_stepper(nonstiff: str, stiff: str, rhs: Any, backend: Any, **options: Any) -> Any:
    from .stepper import AutoSwitchStepper

    return AutoSwitchStepper(nonstiff, stiff, rhs, backend, **options)


@ade.hookimpl
def autodiffeq_register_solvers(register: Any) -> None:
    for name, nonstiff, stiff, order, error_order, dense_order in COMPOSITES:
        register(
            ade.SolverSpec(
                name=name,
                factory=functools.partial(_make_stepper, nonstiff, stiff),
                family=FAMILY,
                order=order,
                adaptive=True,
                error_order=error_order,
                dense_order=dense_order,
                stiff=True,
                mass_matrix=True,
                needs_jacobian=True,
                requires=("lu",),
                options=("maxstiffstep", "maxnonstiffstep", "jac_mode"),
                default_priority=0,
                description=f"{nonstiff} while non-stiff, {stiff} while stiff (auto-switching)",
                reference="Shampine 1977; OrdinaryDiffEq.jl AutoSwitch",
            )
        )
