"""The SDE plugin: :class:`autodiffeq.SDEProblem` as a problem type and its solvers.

Solvers (strong order / weak order; noise kinds; interpretation):

* ``EM`` — Euler–Maruyama: 0.5 (1.0 additive) / 1; every noise kind; Itô; fixed steps.
* ``EulerHeun`` — stochastic Heun: 1.0 on commutative noise (diagonal, scalar, additive), 0.5
  general / 1; every noise kind; Stratonovich; fixed steps.
* ``RKMil`` — derivative-free Runge–Kutta Milstein: 1.0 / 1; diagonal, scalar, additive; Itô or
  Stratonovich; adaptive.
* ``SRIW1``, ``SOSRI`` (and ``SRIW2``, ``SOSRI2``) — Rößler SRI: 1.5 / 2 (SRIW2: 3); diagonal,
  scalar, additive; Itô; adaptive. ``SOSRI`` is the default for diagonal and scalar noise.
* ``SRA1``, ``SOSRA`` (and ``SRA2``, ``SOSRA2``) — Rößler SRA: 1.5 / 2; additive noise (any
  shape); Itô = Stratonovich; adaptive. ``SOSRA`` is the default for
  additive noise.

See docs/sde.md.
"""

from __future__ import annotations

from typing import Any

import autodiffeq as ade

from .adapter import SDEAdapter
from .low_order import EulerHeun, EulerMaruyama, RKMil
from .rossler import sra_method, sri_method
from .tableaus import SOSRA, SOSRA2, SOSRI, SOSRI2, SRA1, SRA2, SRIW1, SRIW2

FAMILY = "stochastic_rk"

SDE_PROBLEM_TYPE = ade.ProblemTypeSpec(
    name="SDE",
    problem_class=ade.SDEProblem,
    adapter=SDEAdapter(),
    description="stochastic differential equations du = f(u, p, t) dt + g(u, p, t) dW (Itô or "
                "Stratonovich; diagonal, scalar, additive or general noise)",
    options=("brownian",),
)

_ALL = ("diagonal", "scalar", "additive", "general")
_COMMUTATIVE = ("diagonal", "scalar", "additive")
_KLOEDEN_PLATEN = ("P. E. Kloeden and E. Platen, Numerical Solution of Stochastic Differential "
                   "Equations, Springer 1992")


def _spec(name: str, factory: Any, **fields: Any) -> ade.SolverSpec:
    fields.setdefault("family", FAMILY)
    fields.setdefault("problem_types", ("SDE",))
    fields.setdefault("dense_order", 1)
    return ade.SolverSpec(name=name, factory=factory, **fields)


def _sri_spec(tab: Any, priority: int, delta: float = 1.0) -> ade.SolverSpec:
    return _spec(tab.name, sri_method(tab, delta), order=tab.order, weak_order=tab.weak_order,
                 adaptive=True, error_order=1.5, noise_types=_COMMUTATIVE,
                 interpretations=("ito",), default_priority=priority,
                 description=f"Rößler SRI method {tab.name}: strong order 1.5 for diagonal "
                 "and scalar Itô noise, with an embedded error estimate",
                 reference=tab.reference)


def _sra_spec(tab: Any, priority: int) -> ade.SolverSpec:
    return _spec(tab.name, sra_method(tab), order=tab.order, weak_order=tab.weak_order,
                 adaptive=True, error_order=2.0, noise_types=("additive",),
                 interpretations=("ito", "stratonovich"), default_priority=priority,
                 description=f"Rößler SRA method {tab.name} for additive noise: strong order "
                 "1.5, with an embedded error estimate", reference=tab.reference)


SOLVERS = (
    _spec("EM", EulerMaruyama, order=0.5, weak_order=1.0, strong_orders={"additive": 1.0},
          noise_types=_ALL, interpretations=("ito",), default_priority=1,
          description="Euler–Maruyama", reference=_KLOEDEN_PLATEN + ", §9.1"),
    _spec("EulerHeun", EulerHeun, order=0.5, weak_order=1.0,
          strong_orders={k: 1.0 for k in _COMMUTATIVE}, noise_types=_ALL,
          interpretations=("stratonovich",), default_priority=1,
          description="stochastic Heun method (Stratonovich)",
          reference="W. Rümelin, SIAM J. Numer. Anal. 19 (1982) 604–613"),
    _spec("RKMil", RKMil, order=1.0, weak_order=1.0, adaptive=True, error_order=1.0,
          noise_types=_COMMUTATIVE, interpretations=("ito", "stratonovich"),
          default_priority=5, description="derivative-free Runge–Kutta Milstein method",
          reference=_KLOEDEN_PLATEN + ", (11.1.5)"),
    _sri_spec(SRIW1, 10, delta=1.0 / 6.0),
    _sri_spec(SRIW2, 0),
    _sri_spec(SOSRI, 15),
    _sri_spec(SOSRI2, 0),
    _sra_spec(SRA1, 10),
    _sra_spec(SRA2, 0),
    _sra_spec(SOSRA, 20),
    _sra_spec(SOSRA2, 0),
)


@ade.hookimpl
def autodiffeq_register_problem_types(register: Any) -> None:
    register(SDE_PROBLEM_TYPE)


@ade.hookimpl
def autodiffeq_register_solvers(register: Any) -> None:
    for spec in SOLVERS:
        register(spec)


__all__ = ["SDE_PROBLEM_TYPE", "SDEAdapter", "SOLVERS", "FAMILY"]
