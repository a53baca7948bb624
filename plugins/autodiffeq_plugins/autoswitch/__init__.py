"""Automatic stiffness switching: composite solvers that run a non-stiff method while the
problem is non-stiff and a stiff one while it is stiff (the idea of OrdinaryDiffEq.jl's
``AutoSwitch`` and of its default algorithm; Shampine 1977 for the stiffness test).

``AutoTsit5Rodas5P`` (moderate tolerances) and ``AutoVern7Rodas5P`` (tight tolerances) are what
``solve(prob)`` picks when no ``alg`` is given and the backend can factor matrices (they declare
``default_priority`` above the plain explicit methods; see
:func:`autodiffeq.solve.choose_default_solver`).

The components are ordinary registered solvers, looked up by name in the registry of the solve
(``rhs.registry``), so this plugin uses only the core's contracts. A composite registers even
when a component is missing; it declares its components (``SolverSpec.components``), so such a
registry reports it incompatible, the default choice passes it over, and solving with it
raises :class:`UnsupportedCombination`.

Declared capabilities: ``order`` and ``error_order`` are the non-stiff component's, the
component that integrates non-stiff problems (and the conformance kit's analytic problems),
from start to end; on stiff stretches the stiff component (Rodas5P, order 5) runs instead.
``dense_order`` is the lower of the two components', so it holds whichever made a step.
"""

from __future__ import annotations

import functools
from typing import Any

import autodiffeq as ade

FAMILY = "autoswitch"

#: preference over the plain explicit methods (priority 10) when solve() picks a default
DEFAULT_PRIORITY = 20

#: (name, non-stiff component, stiff component, order, error order, dense order)
COMPOSITES = (
    ("AutoTsit5Rodas5P", "Tsit5", "Rodas5P", 5, 4, 4),
    ("AutoVern7Rodas5P", "Vern7", "Rodas5P", 7, 6, 4),
)

OPTIONS = (
    "maxstiffstep", "maxnonstiffstep", "nonstifftol", "stifftol", "stiffness_ratio", "jac_mode"
)


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
                components=(nonstiff, stiff),
                composite=True,
                options=OPTIONS,
                default_priority=DEFAULT_PRIORITY,
                description=(
                    f"{nonstiff} while non-stiff (order {order}), {stiff} while stiff "
                    "(auto-switching on an eigenvalue estimate against the explicit "
                    "method's stability boundary; mass-matrix problems run stiff)"
                ),
                reference=(
                    "Shampine 1977; Hairer & Wanner II, IV.2; OrdinaryDiffEq.jl AutoSwitch "
                    "(Rackauckas & Nie 2017)"
                ),
            )
        )


__all__ = ["COMPOSITES", "DEFAULT_PRIORITY", "FAMILY", "OPTIONS"]
