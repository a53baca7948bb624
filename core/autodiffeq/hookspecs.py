"""The pluggy hook specifications of autodiffeq.

A plugin is any module or object with functions marked ``@autodiffeq.hookimpl`` whose names are
the hooks below. Each registration hook receives a ``register`` callback; call it once per spec::

    import autodiffeq as ade

    @ade.hookimpl
    def autodiffeq_register_solvers(register):
        register(ade.SolverSpec(name="MyEuler", factory=MyEuler, order=1))

Built-in plugins are registered exactly like third-party ones: an entry point in the group
``"autodiffeq"`` naming the module.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "autodiffeq"
ENTRY_POINT_GROUP = "autodiffeq"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def autodiffeq_register_solvers(register: Callable[..., None]) -> None:
    """Register solvers: call ``register(SolverSpec(...))`` for each."""


@hookspec
def autodiffeq_register_backends(register: Callable[..., None]) -> None:
    """Register array backends: call ``register(BackendSpec(...))`` for each."""


@hookspec
def autodiffeq_register_sensitivities(register: Callable[..., None]) -> None:
    """Register sensitivity methods: call ``register(SensitivitySpec(...))`` for each."""


@hookspec
def autodiffeq_register_ensembles(register: Callable[..., None]) -> None:
    """Register ensemble executors: call ``register(EnsembleSpec(...))`` for each."""


@hookspec
def autodiffeq_register_problem_types(register: Callable[..., None]) -> None:
    """Register problem types: call ``register(ProblemTypeSpec(...))`` for each."""


REGISTRATION_HOOKS = {
    "solver": "autodiffeq_register_solvers",
    "backend": "autodiffeq_register_backends",
    "sensitivity": "autodiffeq_register_sensitivities",
    "ensemble": "autodiffeq_register_ensembles",
    "problem_type": "autodiffeq_register_problem_types",
}
