"""Plugin: ``ForwardSensitivity``, the forward sensitivity equations solved together with the
state by the same solver (any family, every backend, stiff solvers included); see
:mod:`.method`. It also powers :func:`autodiffeq.local_sensitivities`."""

from __future__ import annotations

from collections.abc import Callable

from autodiffeq import SensitivitySpec, hookimpl

from .method import AugmentedSystem, ForwardSensitivity


@hookimpl
def autodiffeq_register_sensitivities(register: Callable[..., None]) -> None:
    register(
        SensitivitySpec(
            name="ForwardSensitivity",
            factory=ForwardSensitivity,
            mode="forward",
            solver_families=None,
            backends=None,
            stiff=True,
            options=("autojacvec", "error_control"),
            default_priority=10,
            events=True,
            problem_types=("ODE", "DDE", "SDE"),
            description="forward sensitivity equations M S' = J S + df/dp solved with the "
            "state by the same solver and error control (exact augmented Jacobian for stiff "
            "solvers)",
            reference="Hairer, Nørsett & Wanner I.14; SciMLSensitivity ForwardSensitivity",
        )
    )


__all__ = ["AugmentedSystem", "ForwardSensitivity"]
