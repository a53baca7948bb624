"""The explicit Runge–Kutta family plugin: Euler, Midpoint, Heun, Ralston, RK4, BS3, DP5,
Tsit5 and Vern7, each a Butcher tableau run by one stepper.

Public API for other packages: :func:`tableau_solver_spec` turns a :class:`ButcherTableau` into
a :class:`autodiffeq.SolverSpec`, so adding an explicit method is adding a table.
"""

from __future__ import annotations

import functools
from typing import Any

import autodiffeq as ade

from .tableau import ButcherTableau, ExtraStages

FAMILY = "explicit_rk"

#: default-choice preference among methods of equal suitability (0: never the default)
_DEFAULT_PRIORITY = {"Tsit5": 10, "Vern7": 10, "DP5": 5}


def _make_stepper(tableau: ButcherTableau, rhs: Any, backend: Any, **options: Any) -> Any:
    from .stepper import ExplicitRKStepper

    return ExplicitRKStepper(tableau, rhs, backend, **options)


def tableau_solver_spec(tableau: ButcherTableau, **fields: Any) -> ade.SolverSpec:
    """A :class:`~autodiffeq.SolverSpec` for an explicit method given by ``tableau``.

    Capabilities (order, adaptivity, dense-output order, FSAL) are read from the tableau;
    ``fields`` override or add spec fields (``default_priority``, ``description``, ...).
    """
    dense_order = tableau.dense_order
    if dense_order is None:
        dense_order = min(tableau.order, 3)
    options = ("stiffness_detection", "stiffness_check_every")
    values: dict[str, Any] = {
        "name": tableau.name,
        "factory": functools.partial(_make_stepper, tableau),
        "family": FAMILY,
        "order": tableau.order,
        "adaptive": tableau.b_error is not None,
        "error_order": tableau.error_order,
        "dense_order": dense_order,
        "fsal": tableau.fsal,
        "options": options,
        "description": tableau.description,
        "reference": tableau.source,
    }
    values.update(fields)
    return ade.SolverSpec(**values)


@ade.hookimpl
def autodiffeq_register_solvers(register: Any) -> None:
    from .tableaus import TABLEAUS

    for name, tableau in TABLEAUS.items():
        register(tableau_solver_spec(tableau, default_priority=_DEFAULT_PRIORITY.get(name, 0)))


__all__ = ["ButcherTableau", "ExtraStages", "tableau_solver_spec", "FAMILY"]
