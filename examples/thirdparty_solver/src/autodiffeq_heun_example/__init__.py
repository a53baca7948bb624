"""An example third-party autodiffeq plugin: one solver, ``"ExampleHeun"``.

The package advertises this module in the entry-point group ``autodiffeq`` (see
``pyproject.toml``); autodiffeq imports it the first time its plugin catalogue is needed and
calls the hook below. Only the public ``autodiffeq`` API is used.

Importing this module is cheap: the stepper class is imported only when a solve creates one.
"""

from __future__ import annotations

from typing import Any

import autodiffeq as ade

__version__ = "0.1.0"


def _make_stepper(rhs: ade.RHS, backend: ade.Backend, **options: Any) -> ade.Stepper:
    """``SolverSpec.factory``: called once per solve with the flat right-hand side."""
    from .stepper import HeunEulerStepper

    return HeunEulerStepper(rhs, backend, **options)


# The capabilities are data the registry, the default-solver choice and the conformance kit
# read; they must be true (the conformance suite measures order and dense_order).
EXAMPLE_HEUN = ade.SolverSpec(
    name="ExampleHeun",
    factory=_make_stepper,
    family="example",
    order=2,  # the trapezoidal (Heun) update is second order
    adaptive=True,  # it has an embedded error estimate ...
    error_order=1,  # ... from the first-order Euler solution
    dense_order=2,  # cubic Hermite dense output, limited by the order-2 end values
    fsal=False,  # its last stage is not f(u_new); f(u_new) is computed at acceptance
    stiff=False,
    options=(),  # no solver options: solve(prob, "ExampleHeun", foo=1) is rejected
    default_priority=0,  # never picked when solve() is called without alg
    description="Heun's method (explicit trapezoidal rule) with an embedded Euler 2(1) error "
    "estimate and cubic Hermite dense output (example third-party plugin).",
    reference="K. Heun, Z. Math. Phys. 45 (1900) 23-38; Hairer, Norsett & Wanner, Solving "
    "ODEs I, Sect. II.1 and II.6.",
)


@ade.hookimpl
def autodiffeq_register_solvers(register: Any) -> None:
    register(EXAMPLE_HEUN)
