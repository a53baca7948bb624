"""The delay-equation plugin: :class:`autodiffeq.DDEProblem` solved by the method of steps
around any registered ODE solver with dense output (explicit Runge–Kutta, Rosenbrock, the
stiffness-switching default, third-party ones), with discontinuity tracking.

``ade.solve(dde_prob, "Tsit5")``, ``"Vern7"``, ``"Rodas5P"`` or ``ade.solve(dde_prob)`` (the
default solver) all work: the problem type declares that it wraps ODE solvers
(``ProblemTypeSpec.wraps``) and needs their dense output. See docs/dde.md.
"""

from __future__ import annotations

from typing import Any

import autodiffeq as ade

from .adapter import DDEAdapter

DDE_PROBLEM_TYPE = ade.ProblemTypeSpec(
    name="DDE",
    problem_class=ade.DDEProblem,
    adapter=DDEAdapter(),
    description="delay differential equations du/dt = f(u, h, p, t) with constant and "
                "state-dependent lags (method of steps over ODE solvers with dense output)",
    wraps=("ODE",),
)


@ade.hookimpl
def autodiffeq_register_problem_types(register: Any) -> None:
    register(DDE_PROBLEM_TYPE)


__all__ = ["DDE_PROBLEM_TYPE", "DDEAdapter"]
