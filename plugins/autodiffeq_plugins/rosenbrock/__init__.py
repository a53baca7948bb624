"""The Rosenbrock family plugin: linearly implicit methods for stiff ODEs and index-1 DAEs
``M u' = f(u, t)`` (constant, possibly singular mass matrix).

Shipped methods (tableau-driven, see :mod:`.tableaus`): ``Rosenbrock23`` (Shampine & Reichelt
1997, MATLAB's ode23s), ``Rodas3P`` (Steinebach 2024), ``Rodas4`` (Hairer & Wanner 1996) and
``Rodas5P`` (Steinebach 2023). Each step factors ``W = M / (gamma dt) - J`` once; ``J`` comes
from ``ODEProblem(jac=...)``, autograd or finite differences, dense or compressed by the
colouring of ``ODEProblem(jac_prototype=...)`` (option ``jac_mode``, see :mod:`.jacobian`);
``df/dt`` from ``ODEProblem(tgrad=...)``, differences, or not at all for an autonomous ``f``
(option ``autonomous``).

Sparse linear algebra (declared by :data:`SPARSE_LINEAR_ALGEBRA`): on a backend with
capability ``"sparse"`` a sparse Jacobian (a ``scipy.sparse`` ``jac``, or differences with a
``jac_prototype``) gives a sparse ``W`` factored by SuperLU; on a backend without it
(``array_api_strict``) the solvers *fall back to dense*: the same colour-compressed
differences fill a dense ``J`` and ``W`` is factored by the dense LU. Nothing raises; only the
cost differs. The solvers therefore require only ``"lu"``.

Public API for other packages: :func:`tableau_solver_spec` turns a :class:`RosenbrockTableau`
into a :class:`autodiffeq.SolverSpec`, so adding a Rosenbrock method is adding a table.
Importing this module imports neither SciPy nor the tableaux.
"""

from __future__ import annotations

import functools
from typing import Any

import autodiffeq as ade

from .tableau import RosenbrockTableau, dense_from_rodas_H

FAMILY = "rosenbrock"
OPTIONS = ("jac_mode", "autonomous")
#: what a sparse Jacobian does per backend capability: SuperLU with "sparse", else dense LU
SPARSE_LINEAR_ALGEBRA = {"sparse": "sparse LU (scipy.sparse.linalg.splu)", "": "dense fallback"}
_SPARSE_NOTE = (" Sparse Jacobians (jac_prototype or a scipy.sparse jac): sparse LU on backends "
                "with capability 'sparse', dense LU elsewhere.")


def _make_stepper(tableau: RosenbrockTableau, rhs: Any, backend: Any, **options: Any) -> Any:
    from .stepper import RosenbrockStepper

    return RosenbrockStepper(tableau, rhs, backend, **options)


def tableau_solver_spec(tableau: RosenbrockTableau, **fields: Any) -> ade.SolverSpec:
    """A :class:`~autodiffeq.SolverSpec` for the Rosenbrock method given by ``tableau``.

    Capabilities are read from the tableau; ``fields`` override or add spec fields.
    """
    values: dict[str, Any] = {
        "name": tableau.name,
        "factory": functools.partial(_make_stepper, tableau),
        "family": FAMILY,
        "order": tableau.order,
        "adaptive": tableau.adaptive,
        "error_order": tableau.error_order,
        "dense_order": tableau.dense_order if tableau.dense is not None else 1,
        "fsal": tableau.fsal_stage is not None,
        "stiff": True,
        "mass_matrix": True,
        "needs_jacobian": True,
        "requires": ("lu",),
        "options": OPTIONS,
        "default_priority": 0,
        "description": tableau.description + _SPARSE_NOTE,
        "reference": tableau.source,
    }
    values.update(fields)
    return ade.SolverSpec(**values)


@ade.hookimpl
def autodiffeq_register_solvers(register: Any) -> None:
    from .tableaus import TABLEAUS

    for tableau in TABLEAUS.values():
        register(tableau_solver_spec(tableau))


__all__ = ["FAMILY", "OPTIONS", "SPARSE_LINEAR_ALGEBRA", "RosenbrockTableau",
           "dense_from_rodas_H", "tableau_solver_spec"]
